/** Next-token sampling from a row of logits: temperature, top-k, top-p (nucleus), seeded. */
import { Rng } from '../tensor/random.js';

export interface SamplingOptions {
  /** 0: greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 or undefined: all). */
  topP?: number;
}

export class SamplingError extends Error {
  override name = 'SamplingError';
}

export function validateSampling(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new SamplingError(`temperature must be >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new SamplingError(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new SamplingError(`top-p must be in (0, 1], got ${o.topP}`);
}

/** Pick a token id from logits (one row). */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  const temperature = opts.temperature ?? 1;
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  // Candidates sorted by logit, descending (ties: lower id first).
  let ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (opts.topK && opts.topK < V) ids = ids.slice(0, opts.topK);
  const mx = logits[ids[0]!]!;
  const probs = ids.map((i) => Math.exp((logits[i]! - mx) / temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (opts.topP !== undefined && opts.topP < 1) {
    let acc = 0;
    let cut = probs.length;
    for (let i = 0; i < probs.length; i++) {
      acc += probs[i]! / total;
      if (acc >= opts.topP) {
        cut = i + 1;
        break;
      }
    }
    ids = ids.slice(0, cut);
    probs.length = cut;
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rng.float() * total;
  for (let i = 0; i < ids.length; i++) {
    r -= probs[i]!;
    if (r < 0) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}

/** log-softmax of one row, in float64. */
export function logSoftmax(row: Float32Array): Float64Array {
  let mx = -Infinity;
  for (const v of row) if (v > mx) mx = v;
  let s = 0;
  for (const v of row) s += Math.exp(v - mx);
  const lse = mx + Math.log(s);
  return Float64Array.from(row, (v) => v - lse);
}
