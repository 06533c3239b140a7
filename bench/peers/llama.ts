/**
 * llama.cpp as a peer, through node-llama-cpp installed in bench/peers/llama-cpp (see
 * scripts/install-llama-peer.mjs): load a GGUF, evaluate token ids, decode greedily, time decode.
 * Not a dependency of skymoe: loaded by path, with the few types used here written out.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PEER_DIR = fileURLToPath(new URL('../../../bench/peers/llama-cpp/', import.meta.url));

interface LlamaSequence {
  evaluate(tokens: number[], o: { temperature: number }): AsyncGenerator<number>;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
interface LlamaModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  createContext(o: { contextSize: number; batchSize?: number; threads?: number; flashAttention?: boolean; experimentalKvCacheKeyType?: string; experimentalKvCacheValueType?: string }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface Llama {
  loadModel(o: { modelPath: string; useMmap?: boolean; vocabOnly?: boolean }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}

export interface LlamaPeer {
  llama: Llama;
  version: string;
}

/** The peer, or why it is unavailable. */
export async function loadLlamaPeer(): Promise<LlamaPeer | { unavailable: string }> {
  if (!existsSync(`${PEER_DIR}node_modules/node-llama-cpp`)) return { unavailable: `node-llama-cpp is not installed in ${PEER_DIR} (npm run peer:llama)` };
  try {
    const req = createRequire(`${PEER_DIR}package.json`);
    const mod = (await import(pathToFileURL(req.resolve('node-llama-cpp')).href)) as { getLlama: (o: object) => Promise<Llama> };
    const version = (JSON.parse(readFileSync(`${PEER_DIR}node_modules/node-llama-cpp/package.json`, 'utf8')) as { version: string }).version;
    const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
    return { llama, version };
  } catch (e) {
    return { unavailable: `node-llama-cpp failed to load: ${(e as Error).message.split('\n')[0]}` };
  }
}

/**
 * Greedy continuation of `prompt` (token ids) for `n` tokens, with the time of each generated token
 * (ms). `kvCache` 'F32' keeps keys and values in f32 as skymoe does (llama.cpp's default is F16,
 * which moves logits by ~1e-3: enough to flip a close argmax when outputs are compared).
 */
export async function llamaGreedy(peer: LlamaPeer, gguf: string, prompt: number[], n: number, threads: number, kvCache: 'F16' | 'F32' = 'F16'): Promise<{ ids: number[]; msPerToken: number[] }> {
  const model = await peer.llama.loadModel({ modelPath: gguf });
  const ctx = await model.createContext({
    contextSize: Math.max(64, prompt.length + n + 8),
    batchSize: Math.max(32, prompt.length),
    threads,
    experimentalKvCacheKeyType: kvCache,
    experimentalKvCacheValueType: kvCache,
    flashAttention: kvCache === 'F16' ? undefined : false,
  });
  try {
    const ids: number[] = [], ms: number[] = [];
    let t = performance.now();
    for await (const id of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
      const now = performance.now();
      ids.push(id);
      ms.push(now - t);
      t = now;
      if (ids.length >= n) break;
    }
    return { ids, msPerToken: ms };
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

/** llama.cpp's token ids for each text (the GGUF's vocabulary only; no bos added). */
export async function llamaTokenize(peer: LlamaPeer, gguf: string, texts: readonly string[], specialTokens = false): Promise<number[][]> {
  const model = await peer.llama.loadModel({ modelPath: gguf, vocabOnly: true });
  try {
    return texts.map((t) => Array.from(model.tokenize(t, specialTokens)));
  } finally {
    await model.dispose();
  }
}
