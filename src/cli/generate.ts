/**
 * `skymoe generate --model DIR --prompt "..."`: stream tokens as they come. With --tp N the model
 * is split over N tensor-parallel ranks and the prompt runs on the serving engine
 * (infer/tensor-parallel.ts): greedy output is the one-rank output; sampled output follows the
 * engine's per-request stream for the seed (as `serve` with that seed), not the one-rank loop's.
 */
import type { BackendName } from '../backend/backend.js';
import { startEngine } from '../infer/engine-worker.js';
import { generateTokens } from '../infer/generate.js';
import { SamplingError, validateSampling } from '../infer/sample.js';
import { validateParams } from '../infer/sampler.js';
import { DEFAULT_PARAMS } from '../infer/types.js';
import { checkTokenizerFitsModel, readConfig } from '../io/hf.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import type { LoadDType } from '../io/weights.js';
import { checkTensorParallelFlag, loadForInference, useBackend } from './common.js';

export interface GenerateCliOptions {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP?: number;
  topK?: number;
  seed: number;
  dtype?: LoadDType;
  backend?: BackendName;
  threads?: number;
  tp?: number;
  tpExperts?: 'edp' | 'etp';
}

export async function runGenerate(o: GenerateCliOptions): Promise<void> {
  checkTensorParallelFlag(o.model, o.tp, o.tpExperts);
  validateSampling({ temperature: o.temperature, topP: o.topP, topK: o.topK }); // before anything is printed
  if ((o.tp ?? 1) > 1) return generateOnRanks(o);
  const be = await useBackend(o);
  const tok = await loadTokenizer(o.model);
  checkTokenizerFitsModel(tok, readConfig(o.model), o.model);
  const model = loadForInference(o.model, be, o.dtype);
  const prompt = tok.encodePrompt(o.prompt);
  const stream = tok.decodeStream();
  process.stdout.write(o.prompt);
  const t0 = performance.now();
  let n = 0;
  const it = generateTokens(model, prompt, { maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, knownVocab: tok.vocabSize });
  let r = it.next();
  while (!r.done) {
    process.stdout.write(stream.push(r.value.id));
    n++;
    r = it.next();
  }
  process.stdout.write(stream.end() + '\n');
  report(n, t0, r.value.reason);
  model.dispose();
  await be.dispose();
}

function report(n: number, t0: number, reason: string): void {
  const s = (performance.now() - t0) / 1000;
  process.stderr.write(`[${n} tokens in ${s.toFixed(2)} s, ${(n / s).toFixed(1)} tokens/s, stopped by ${reason}]\n`);
}

/** One request on the tensor-parallel serving engine (one sequence's KV cache). */
async function generateOnRanks(o: GenerateCliOptions): Promise<void> {
  validateSampling(o);
  const params = { ...DEFAULT_PARAMS, temperature: o.temperature, topP: o.topP ?? 1, topK: o.topK ?? 0, seed: o.seed, maxTokens: o.maxTokens };
  const bad = validateParams(params); // the engine's bounds (temperature at most 2)
  if (bad) throw new SamplingError(`generate --tp: ${bad}`);
  const tok = await loadTokenizer(o.model);
  checkTokenizerFitsModel(tok, readConfig(o.model), o.model);
  const prompt = tok.encodePrompt(o.prompt);
  const engine = await startEngine({ model: o.model, dtype: o.dtype, backend: o.backend, threads: o.threads, tp: o.tp, tpExperts: o.tpExperts, maxNumSeqs: 1 });
  try {
    const room = engine.maxContext - prompt.length;
    if (room < 1) throw new RangeError(`generate: a prompt of ${prompt.length} tokens leaves no room within the context of ${engine.maxContext}`);
    params.maxTokens = Math.min(o.maxTokens, room);
    process.stdout.write(o.prompt);
    const t0 = performance.now();
    let n = 0, reason = 'length';
    for await (const ev of engine.generate({ id: 'generate', prompt, params })) {
      if (ev.type === 'error') throw new Error(ev.message);
      process.stdout.write(ev.text);
      if (ev.type === 'tokens') n += ev.ids.length;
      else reason = ev.reason;
    }
    process.stdout.write('\n');
    report(n, t0, reason);
  } finally {
    await engine.close();
  }
}
