/**
 * The passes over a row of V logits that sampling makes per token: the softmax weights, the
 * nucleus (top_p) cut, the draw. Each pass is its own function so V8 optimizes each loop whole: one
 * function holding several hot loops was optimized on stack inside its first loop and deoptimized
 * at the next ("insufficient type feedback") on every call, costing ~2x.
 */
import { expNonPositive } from './exp.js';
import { idOfKey, rankKey } from './rank.js';

/** top_p first tries the nucleus within this many most likely ids (one heap pass, no sort of V). */
export const NUCLEUS_GUESS = 64;
/** Else a histogram of (max - x) / T locates it: 16 bins per nat up to 40 nats, one beyond. */
const BINS_PER_NAT = 16;
const LAST_BIN = 40 * BINS_PER_NAT;

/** Scratch of the sampling passes, grown to the largest V seen; no V-sized allocation per token. */
export class SamplingScratch {
  penalized = new Float32Array(0); // (V) penalized logits
  weights = new Float64Array(0); // (V) softmax weights, by id
  keys = new Float64Array(0); // (V) rank keys of candidates
  ids = new Int32Array(0); // (V) kept ids
  keptWeights = new Float64Array(0); // (V) their weights
  heap = new Int32Array(0); // (V)
  readonly hist = new Float64Array(LAST_BIN + 1);

  ensure(V: number): void {
    if (this.ids.length >= V) return;
    this.penalized = new Float32Array(V);
    this.weights = new Float64Array(V);
    this.keys = new Float64Array(V);
    this.ids = new Int32Array(V);
    this.keptWeights = new Float64Array(V);
    this.heap = new Int32Array(V);
  }
}

/**
 * What a step draws from: `dense`, weights[0, V) by id; otherwise ids[0, count) with keptWeights
 * (kept weights of 0 are never drawn). `total`: their sum. `mass`: the survivors' weight before
 * top_p; `max`: the logit the weights are relative to.
 */
export interface Kept {
  dense: boolean;
  count: number;
  total: number;
  max: number;
  mass: number;
}

export function maxOf(x: Float32Array, V: number): number {
  let m = -Infinity;
  for (let i = 0; i < V; i++) if (x[i]! > m) m = x[i]!;
  return m;
}

/**
 * w[i] = exp((x_i - max) / T), set to 0 where below minP (min_p); returns their sum (id order).
 * Below max + T ln(minP), less a margin far above rounding, the weight is 0 without an exp.
 */
export function softmaxWeights(x: Float32Array, V: number, max: number, T: number, minP: number, w: Float64Array): number {
  const invT = 1 / T;
  const cut = minP > 0 ? max + T * (Math.log(minP) - 1e-9) : -Infinity;
  let mass = 0;
  for (let i = 0; i < V; i++) {
    const v = x[i]!;
    let e = 0;
    if (v >= cut) {
      e = expNonPositive((v - max) * invT);
      if (e < minP) e = 0;
    }
    w[i] = e;
    mass += e;
  }
  return mass;
}

/** log sum_i exp(x_i) (the log-softmax's normalizer), given max = max_i x_i. */
export function logSumExp(x: Float32Array, V: number, max: number): number {
  let z = 0;
  for (let i = 0; i < V; i++) z += expNonPositive(x[i]! - max);
  return max + Math.log(z);
}

/**
 * top_p over dense weights (s.weights, summing to mass) without sorting V: the kept ids go to
 * s.ids and s.keptWeights. The cut is where the weights, summed in rank order, reach topP x mass.
 * First within the `guess` best ids, which s.ids[0, guess) holds in rank order (exact). Failing that, a histogram of the
 * weights by (max - x) / T, whose bins cut the rank order into consecutive runs: the bins before
 * the one where the mass reaches the target are kept whole and unsorted, and only that boundary
 * bin is sorted to place the cut (the bins' sums run in id order, so the cut is the definition's
 * up to float64 rounding).
 */
export function nucleus(x: Float32Array, V: number, max: number, T: number, topP: number, mass: number, guess: number, s: SamplingScratch): Kept {
  const target = topP * mass;
  let total = 0;
  for (let j = 0; j < guess; j++) {
    const wj = s.weights[s.ids[j]!]!;
    s.keptWeights[j] = wj;
    total += wj;
    if (total >= target) return { dense: false, count: j + 1, total, max, mass };
  }
  histogram(x, V, max, T, s.weights, s.hist);
  let edge = 0;
  for (let before = 0; edge < LAST_BIN && before + s.hist[edge]! < target; ) before += s.hist[edge++]!;
  const { count, boundary, sum } = keepBins(x, V, max, T, edge, s);
  total = sum;
  let c = count;
  s.keys.subarray(0, boundary).sort();
  for (let j = 0; j < boundary; j++) {
    const id = idOfKey(s.keys[j]!);
    s.ids[c] = id;
    s.keptWeights[c++] = s.weights[id]!;
    total += s.weights[id]!;
    if (total >= target) break;
  }
  // Through the boundary bin the sum reaches the target but for rounding: all of it is kept then.
  return { dense: false, count: c, total, max, mass };
}

/** hist[b] = weight of the ids whose (max - x) / T falls in bin b. */
function histogram(x: Float32Array, V: number, max: number, T: number, w: Float64Array, hist: Float64Array): void {
  const invT = 1 / T;
  hist.fill(0);
  for (let i = 0; i < V; i++) {
    if (w[i]! === 0) continue;
    const d = (x[i]! - max) * invT;
    hist[d > -40 ? (-d * BINS_PER_NAT) | 0 : LAST_BIN]! += w[i]!;
  }
}

/** Ids of the bins before `edge` to s.ids / s.keptWeights (count, their sum), rank keys of bin `edge` to s.keys (boundary). */
function keepBins(x: Float32Array, V: number, max: number, T: number, edge: number, s: SamplingScratch): { count: number; boundary: number; sum: number } {
  const invT = 1 / T;
  const { weights: w, ids, keptWeights, keys } = s;
  // Logits below this (a margin beyond rounding under the boundary bin's lower edge) are past it.
  const below = edge === LAST_BIN ? -Infinity : max - ((edge + 1) * T * (1 + 1e-9)) / BINS_PER_NAT;
  let count = 0;
  let boundary = 0;
  let sum = 0;
  for (let i = 0; i < V; i++) {
    if (x[i]! < below || w[i]! === 0) continue;
    const d = (x[i]! - max) * invT;
    const b = d > -40 ? (-d * BINS_PER_NAT) | 0 : LAST_BIN;
    if (b < edge) {
      ids[count] = i;
      keptWeights[count++] = w[i]!;
      sum += w[i]!;
    } else if (b === edge) keys[boundary++] = rankKey(x[i]!, i);
  }
  return { count, boundary, sum };
}

/**
 * The index j in [0, count) where r (uniform in [0, sum of w)) falls among the cumulative weights;
 * when rounding leaves r at the total, the last index of positive weight.
 */
export function drawIndex(w: Float64Array, count: number, r: number): number {
  let acc = 0;
  let last = 0;
  for (let j = 0; j < count; j++) {
    const wj = w[j]!;
    if (wj === 0) continue;
    acc += wj;
    last = j;
    if (r < acc) break;
  }
  return last;
}
