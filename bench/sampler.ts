/**
 * SequenceSampler.next() per token beside the floor of one pass over the logits (a plain max
 * loop), one machine-readable line per figure:
 *   sampler V=151936 case=floor us_per_token=...
 *   sampler V=151936 case=top_p us_per_token=... x_floor=... ms_per_step_64=...
 * The logits look like a language model's: normal with sd 2, one id in 2000 12 nats up (peaked),
 * except top_p_flat's (no peaks: the nucleus holds ~a quarter of the vocabulary). Each run
 * times 40 tokens of the case (cycling over 8 rows) right after 40 max passes over the same rows,
 * so x_floor (the median of the per-run ratios) holds up on a machine whose load varies;
 * us_per_token is the median over 15 runs. ms_per_step_64: 64 sequences of a batch. Every run
 * starts a new sampler (a 1000-token prompt), so the penalties case does not drift as its output
 * counts grow.
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

const CASES: [string, Partial<SamplingParams>, ('peaked' | 'flat')?][] = [
  ['greedy', { temperature: 0 }],
  ['sample', { temperature: 1 }],
  ['top_p', { temperature: 0.8, topP: 0.9 }],
  ['top_p_flat', { temperature: 1, topP: 0.9 }, 'flat'],
  ['top_k', { temperature: 1, topK: 50 }],
  ['min_p', { temperature: 1, minP: 0.05 }],
  ['logprobs', { temperature: 1, logprobs: true, topLogprobs: 5 }],
  ['top_p_logprobs', { temperature: 0.8, topP: 0.9, logprobs: true, topLogprobs: 5 }],
  ['top_p_penalties', { temperature: 0.8, topP: 0.9, repetitionPenalty: 1.1, frequencyPenalty: 0.5, presencePenalty: 0.5 }],
];

function rows(V: number, peaks: boolean): Float32Array[] {
  const rng = new Rng(1);
  return Array.from({ length: ROWS }, () => {
    const x = new Float32Array(V);
    for (let i = 0; i < V; i++) x[i] = 2 * rng.normal() + (peaks && rng.float() < 0.0005 ? 12 : 0);
    return x;
  });
}

/** The floor: one pass over the row, the least any sampler must do. */
function maxLogit(x: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > m) m = x[i]!;
  return m;
}

let sink = 0;

/** Microseconds per call of f over one run of PER_RUN calls. */
function run(xs: Float32Array[], f: (x: Float32Array) => void): number {
  const t0 = performance.now();
  for (let i = 0; i < PER_RUN; i++) f(xs[i % ROWS]!);
  return ((performance.now() - t0) * 1e3) / PER_RUN;
}

const floorOf = (x: Float32Array) => (sink += maxLogit(x));

for (const V of [16384, 151936]) {
  const xs = rows(V, true);
  const flat = rows(V, false);
  const floors: number[] = [];
  run(xs, floorOf);
  for (let r = 0; r < RUNS; r++) floors.push(run(xs, floorOf));
  console.log(`sampler V=${V} case=floor us_per_token=${median(floors).toFixed(1)}`);
  const prompt = Array.from({ length: 1000 }, (_, i) => (i * 7919) % V);
  for (const [name, p, logits] of CASES) {
    const rowsOf = logits === 'flat' ? flat : xs;
    let s = new SequenceSampler({ ...DEFAULT_PARAMS, ...p, seed: 1 }, prompt, V);
    const next = (x: Float32Array) => (sink += s.next(x).id);
    run(rowsOf, next);
    const times: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      s = new SequenceSampler({ ...DEFAULT_PARAMS, ...p, seed: r }, prompt, V);
      const floor = run(rowsOf, floorOf);
      const us = run(rowsOf, next);
      times.push(us);
      ratios.push(us / floor);
    }
    const us = median(times);
    console.log(`sampler V=${V} case=${name} us_per_token=${us.toFixed(1)} x_floor=${median(ratios).toFixed(1)} ms_per_step_64=${((us * 64) / 1e3).toFixed(2)}`);
  }
}
if (sink === 0.5) console.log(sink);
