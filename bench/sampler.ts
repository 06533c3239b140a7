/**
 * SequenceSampler.next() per token beside the floor of one pass over the logits (a plain max
 * loop), one machine-readable line per figure:
 *   sampler V=151936 case=floor us_per_token=...
 *   sampler V=151936 case=top_p us_per_token=... x_floor=... ms_per_step_64=...
 * The logits look like a language model's: normal with sd 2, a few ids 12 nats up. Medians of 15
 * runs of 40 tokens, each token on one of 8 rows in turn. ms_per_step_64: 64 sequences of a batch.
 * Run: npm run bench:sampler
 */
import { performance } from 'node:perf_hooks';
import { SequenceSampler } from '../src/infer/sampler.js';
import { DEFAULT_PARAMS, type SamplingParams } from '../src/infer/types.js';
import { Rng } from '../src/tensor/random.js';
import { median } from './timing.js';

const ROWS = 8;
const RUNS = 15;
const PER_RUN = 40;

const CASES: [string, Partial<SamplingParams>][] = [
  ['greedy', { temperature: 0 }],
  ['sample', { temperature: 1 }],
  ['top_p', { temperature: 0.8, topP: 0.9 }],
  ['top_k', { temperature: 1, topK: 50 }],
  ['min_p', { temperature: 1, minP: 0.05 }],
  ['logprobs', { temperature: 1, logprobs: true, topLogprobs: 5 }],
  ['top_p_logprobs', { temperature: 0.8, topP: 0.9, logprobs: true, topLogprobs: 5 }],
  ['top_p_penalties', { temperature: 0.8, topP: 0.9, repetitionPenalty: 1.1, frequencyPenalty: 0.5, presencePenalty: 0.5 }],
];

function rows(V: number): Float32Array[] {
  const rng = new Rng(1);
  return Array.from({ length: ROWS }, () => {
    const x = new Float32Array(V);
    for (let i = 0; i < V; i++) x[i] = 2 * rng.normal() + (rng.float() < 0.0005 ? 12 : 0);
    return x;
  });
}

/** Median microseconds per call of f(row). */
function usPerToken(xs: Float32Array[], f: (x: Float32Array) => void): number {
  for (let i = 0; i < PER_RUN; i++) f(xs[i % ROWS]!);
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < PER_RUN; i++) f(xs[i % ROWS]!);
    times.push(((performance.now() - t0) * 1e3) / PER_RUN);
  }
  return median(times);
}

let sink = 0;
for (const V of [16384, 151936]) {
  const xs = rows(V);
  const floor = usPerToken(xs, (x) => {
    let m = -Infinity;
    for (let i = 0; i < V; i++) if (x[i]! > m) m = x[i]!;
    sink += m;
  });
  console.log(`sampler V=${V} case=floor us_per_token=${floor.toFixed(1)}`);
  const prompt = Array.from({ length: 1000 }, (_, i) => (i * 7919) % V);
  for (const [name, p] of CASES) {
    const s = new SequenceSampler({ ...DEFAULT_PARAMS, ...p, seed: 1 }, prompt, V);
    const us = usPerToken(xs, (x) => (sink += s.next(x).id));
    console.log(`sampler V=${V} case=${name} us_per_token=${us.toFixed(1)} x_floor=${(us / floor).toFixed(1)} ms_per_step_64=${((us * 64) / 1e3).toFixed(2)}`);
  }
}
if (sink === 0.5) console.log(sink);
