/**
 * Batch-1 decode against the memory roofline and llama.cpp, one machine-readable line per figure:
 *   bandwidth threads=2 gbs=...                       (all threads stream-reading 2 GiB, measured in this run)
 *   decode backend=native dtype=bf16 threads=2 model=bench tokens_per_s=... gb_per_token=... bw_gbs=... roofline_pct=...
 *   decode peer=llama.cpp type=bf16 threads=2 model=bench tokens_per_s=... ratio=...
 * The model is the `bench` preset (0.62B parameters, 0.2B active) in the Mixtral layout (no logit
 * normalization, so llama.cpp can run the same weights), written once with random weights as f32
 * and converted to bf16 and FP8 by `quantize` and to GGUF f32/f16/bf16/q8_0 by `export gguf`
 * (cached in SKYMOE_BENCH_DIR, default <tmpdir>/skymoe-bench-decode). Weights are memory-mapped.
 * gb_per_token counts the bytes a token reads: every layer's attention projections and router, k
 * experts' three matrices, lm_head, one embedding row, and the KV cache at the mean context;
 * roofline_pct = tokens_per_s x gb_per_token / bw_gbs. ratio = ours / llama.cpp on the matching
 * type (bf16 beside bf16 and f16, fp8 beside q8_0, f32 beside f32). Medians over the generated
 * tokens after a 64-token prefill that brings the weights into the page cache.
 * Run: npm run bench:decode [-- --tokens 48] [--dtypes f32,bf16,fp8] [--threads 1,2] [--no-peer]
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNativeBackend, nativeInfo } from '../src/backend/native/index.js';
import { exportGguf } from '../src/export/gguf.js';
import { loadModel } from '../src/io/hf.js';
import type { SkyworkMoE } from '../src/model/skywork-moe.js';
import * as T from '../src/tensor/index.js';
import { ensureBenchModels } from './make-checkpoint.js';
import { llamaGreedy, loadLlamaPeer } from './peers/llama.js';
import { median } from './timing.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const TOKENS = Number(arg('tokens') ?? 48);
const DTYPES = (arg('dtypes') ?? 'f32,bf16,fp8').split(',') as ('f32' | 'bf16' | 'fp8')[];
const THREADS = (arg('threads') ?? '1,2').split(',').map(Number);
const PEER = !process.argv.includes('--no-peer');
const DIR = process.env.SKYMOE_BENCH_DIR ?? join(tmpdir(), 'skymoe-bench-decode');
const PROMPT = Array.from({ length: 16 }, (_, i) => 1 + ((i * 977) % 8000));
const PEER_TYPES: Record<string, string[]> = { f32: ['f32'], bf16: ['bf16', 'f16'], fp8: ['q8_0'] };

const log = (m: string) => process.stderr.write(`${m}\n`);
const f1 = (x: number) => x.toFixed(1);

/** The checkpoints and GGUF files, made once. */
async function prepare(): Promise<void> {
  const f32 = join(DIR, 'f32');
  await ensureBenchModels(DIR, ['bf16', 'fp8'], (m) => log(`bench:decode: ${m}`));
  if (!PEER) return;
  for (const type of ['f32', 'f16', 'bf16', 'q8_0'] as const) {
    const file = join(DIR, `bench-${type}.gguf`);
    if (!existsSync(file)) {
      log(`bench:decode: export gguf --type ${type}`);
      await exportGguf(f32, file, { type });
    }
  }
}

/** Bytes one decode step reads at a context of `ctx` tokens. */
function bytesPerToken(m: SkyworkMoE, ctx: number): number {
  const c = m.config;
  const bytesOf = (p: T.Tensor | T.Weight | T.ExpertWeights): number =>
    p instanceof T.Tensor ? 4 * p.size : p instanceof T.Weight ? p.bytes : p.experts.reduce((s, w) => s + w.bytes, 0) / c.numExperts; // one expert
  let b = 0;
  for (const [name, p] of m.params) {
    if (name === 'model.embed_tokens.weight') b += bytesOf(p) / c.vocabSize; // one row
    else if (/\.experts\.w[123]$/.test(name)) b += c.topK * bytesOf(p);
    else b += bytesOf(p);
  }
  if (c.tieWordEmbeddings) b += bytesOf(m.params.get('model.embed_tokens.weight')!);
  return b + 2 * c.numLayers * ctx * c.numKvHeads * c.headDim * 4; // K and V
}

/** Median ms per generated token after a 64-token prefill (page cache warm), greedy. */
function decodeMs(m: SkyworkMoE, be: T.Tensor['backend']): number {
  const warm = m.newCache(1, 128);
  T.tidy(() => m.decode(T.tensor(Int32Array.from({ length: 64 }, (_, i) => 1 + ((i * 131) % 8000)), [1, 64], 'i32', be), warm));
  warm.dispose();
  const cache = m.newCache(1, PROMPT.length + TOKENS + 1);
  let logits = T.tidy(() => m.decode(T.tensor(Int32Array.from(PROMPT), [1, PROMPT.length], 'i32', be), cache).toFloat32());
  const V = m.config.vocabSize;
  const times: number[] = [];
  for (let i = 0; i < TOKENS; i++) {
    const row = logits.subarray(logits.length - V);
    let id = 0;
    for (let j = 1; j < V; j++) if (row[j]! > row[id]!) id = j;
    const t0 = performance.now();
    logits = T.tidy(() => m.decode(T.tensor(Int32Array.of(id), [1, 1], 'i32', be), cache).toFloat32());
    times.push(performance.now() - t0);
  }
  cache.dispose();
  return median(times);
}

async function main(): Promise<void> {
  const info = nativeInfo();
  if (!info.available) {
    console.log(`decode skipped: the native backend is needed to map weights (${info.reason})`);
    return;
  }
  await prepare();
  const peer = PEER ? await loadLlamaPeer() : { unavailable: '--no-peer' };
  if ('unavailable' in peer) log(`bench:decode: llama.cpp peer unavailable: ${peer.unavailable}`);
  for (const threads of THREADS) {
    const be = createNativeBackend({ threads });
    T.setBackend(be);
    const bw = be.measureStreamBandwidth(2 ** 31, 5);
    console.log(`bandwidth backend=native threads=${threads} gbs=${f1(bw)} buffer_gb=2.1`);
    const ours: Record<string, number> = {};
    for (const dtype of DTYPES) {
      const m = loadModel(join(DIR, dtype), be, { dtype: 'auto' });
      const ms = decodeMs(m, be);
      const gb = bytesPerToken(m, PROMPT.length + TOKENS / 2) / 1e9;
      ours[dtype] = 1000 / ms;
      console.log(`decode backend=native dtype=${dtype} threads=${threads} model=bench tokens_per_s=${f1(1000 / ms)} ms_per_token=${ms.toFixed(2)} gb_per_token=${gb.toFixed(3)} bw_gbs=${f1(bw)} roofline_pct=${f1((100 * gb * (1000 / ms)) / bw)}`);
      m.dispose();
    }
    await be.dispose();
    if ('unavailable' in peer) continue;
    for (const dtype of DTYPES)
      for (const type of PEER_TYPES[dtype]!) {
        const r = await llamaGreedy(peer, join(DIR, `bench-${type}.gguf`), PROMPT, TOKENS + 1, threads);
        const ms = median(r.msPerToken.slice(1)); // the first includes the prompt
        console.log(`decode peer=llama.cpp version=${peer.version} type=${type} threads=${threads} model=bench tokens_per_s=${f1(1000 / ms)} ms_per_token=${ms.toFixed(2)} ratio=${(ours[dtype]! / (1000 / ms)).toFixed(2)} vs=${dtype}`);
      }
  }
  if (!('unavailable' in peer)) await peer.llama.dispose();
}

await main();
