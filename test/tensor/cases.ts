/**
 * One list of op cases, used twice: gradients against central finite differences on the js
 * backend, and every backend's forward and backward against the js backend.
 * Shapes are deliberately odd: one row, sizes that are not multiples of any tile or vector width.
 */
import type { Backend } from '../../src/backend/backend.js';
import * as T from '../../src/tensor/index.js';
import type { Tensor } from '../../src/tensor/index.js';
import { randomArray } from '../helpers.js';

export interface InputSpec {
  shape: number[];
  /** i32 inputs are fixed indices (not differentiated). */
  ints?: number[];
  /** Values (default: random in [-1, 1)). */
  values?: number[];
  /** Do not differentiate with respect to this float input. */
  noGrad?: boolean;
}

export interface OpCase {
  name: string;
  inputs: InputSpec[];
  fn: (xs: Tensor[], backend: Backend) => Tensor;
  /** Finite-difference tolerance, relative to the gradient's largest magnitude (default 1e-3). */
  fdTol?: number;
  /** Finite-difference step (default 1e-2). */
  fdEps?: number;
}

function grouped(offsets: number[]) {
  return (xs: Tensor[]) => T.groupedMatmul(xs[0]!, xs[1]!, Int32Array.from(offsets));
}

function attentionCase(B: number, Tq: number, Tk: number, H: number, Hkv: number, D: number): OpCase {
  return {
    name: `attention B${B} Tq${Tq} Tk${Tk} H${H}/${Hkv} D${D}`,
    inputs: [{ shape: [B, Tq, H, D] }, { shape: [B, Tk, Hkv, D] }, { shape: [B, Tk, Hkv, D] }],
    fn: ([q, k, v]) => T.attention(q!, k!, v!),
  };
}

function ropeCase(ntokShape: number[], H: number, D: number, maxPos: number, positions: number[]): OpCase {
  return {
    name: `rope [${ntokShape}] H${H} D${D}`,
    inputs: [{ shape: [...ntokShape, H, D] }, { shape: [positions.length], ints: positions }],
    fn: ([x, p], be) => {
      const tables = T.ropeTables(maxPos, D, 10000, be);
      const y = T.rope(x!, tables, p!);
      tables.cos.dispose();
      tables.sin.dispose();
      return y;
    },
  };
}

export const opCases: OpCase[] = [
  { name: 'add same shape', inputs: [{ shape: [3, 5] }, { shape: [3, 5] }], fn: ([a, b]) => T.add(a!, b!) },
  { name: 'add broadcast row', inputs: [{ shape: [2, 3, 7] }, { shape: [7] }], fn: ([a, b]) => T.add(a!, b!) },
  { name: 'sub broadcast column', inputs: [{ shape: [4, 5] }, { shape: [4, 1] }], fn: ([a, b]) => T.sub(a!, b!) },
  { name: 'mul broadcast both', inputs: [{ shape: [3, 1, 5] }, { shape: [1, 4, 5] }], fn: ([a, b]) => T.mul(a!, b!) },
  {
    name: 'div',
    inputs: [{ shape: [3, 6] }, { shape: [3, 1], values: [1.5, -2, 0.75] }],
    fn: ([a, b]) => T.div(a!, b!),
  },
  { name: 'scale', inputs: [{ shape: [9] }], fn: ([a]) => T.scale(a!, -2.5) },
  { name: 'exp', inputs: [{ shape: [2, 7] }], fn: ([a]) => T.exp(a!) },
  // log''' = 2/x^3 is 2000 at x = 0.1: a smaller step keeps the truncation error below the tolerance.
  { name: 'log', inputs: [{ shape: [5], values: [0.5, 1, 2, 3.5, 0.1] }], fn: ([a]) => T.log(a!), fdEps: 1e-3 },
  { name: 'tanh', inputs: [{ shape: [11] }], fn: ([a]) => T.tanh(a!) },
  { name: 'sqrt', inputs: [{ shape: [4], values: [0.5, 1, 2, 9] }], fn: ([a]) => T.sqrt(a!) },
  { name: 'square', inputs: [{ shape: [6] }], fn: ([a]) => T.square(a!) },
  { name: 'silu', inputs: [{ shape: [3, 13] }], fn: ([a]) => T.silu(a!) },
  { name: 'sigmoid', inputs: [{ shape: [17] }], fn: ([a]) => T.sigmoid(a!) },
  ...(['silu', 'sigmoid', 'tanh'] as const).map((f) => ({
    name: `${f} near zero`,
    inputs: [{ shape: [8], values: [-0.08, -0.01, -1e-4, 0, 3e-4, 0.02, 0.09, -0.5] }],
    fn: ([a]: Tensor[]) => T[f](a!),
  })),
  { name: 'swiglu near zero', inputs: [{ shape: [6], values: [-0.05, -0.003, 0, 0.001, 0.04, 1.5] }, { shape: [6] }], fn: ([g, u]) => T.swiglu(g!, u!) },
  { name: 'neg', inputs: [{ shape: [5] }], fn: ([a]) => T.neg(a!) },
  { name: 'rsqrt', inputs: [{ shape: [4], values: [0.5, 1, 2, 9] }], fn: ([a]) => T.rsqrt(a!) },
  { name: 'relu', inputs: [{ shape: [5], values: [-1, -0.3, 0.2, 0.9, 2] }], fn: ([a]) => T.relu(a!) },
  { name: 'swiglu', inputs: [{ shape: [3, 37] }, { shape: [3, 37] }], fn: ([g, u]) => T.swiglu(g!, u!) },
  { name: 'matmul NN odd', inputs: [{ shape: [5, 7] }, { shape: [7, 3] }], fn: ([a, b]) => T.matmul(a!, b!) },
  { name: 'matmul NT', inputs: [{ shape: [1, 9] }, { shape: [4, 9] }], fn: ([a, b]) => T.matmul(a!, b!, { transB: true }) },
  { name: 'matmul TN', inputs: [{ shape: [6, 3] }, { shape: [6, 5] }], fn: ([a, b]) => T.matmul(a!, b!, { transA: true }) },
  { name: 'matmul TT', inputs: [{ shape: [4, 3] }, { shape: [5, 4] }], fn: ([a, b]) => T.matmul(a!, b!, { transA: true, transB: true }) },
  { name: 'matmul batched', inputs: [{ shape: [3, 2, 5] }, { shape: [3, 5, 4] }], fn: ([a, b]) => T.matmul(a!, b!) },
  { name: 'matmul batched x 2-D', inputs: [{ shape: [2, 3, 5] }, { shape: [5, 6] }], fn: ([a, b]) => T.matmul(a!, b!) },
  { name: 'matmul batched NT x 2-D', inputs: [{ shape: [2, 3, 5] }, { shape: [6, 5] }], fn: ([a, b]) => T.matmul(a!, b!, { transB: true }) },
  { name: 'matmul 4-D a x batched 3-D b', inputs: [{ shape: [2, 2, 3, 4] }, { shape: [4, 4, 2] }], fn: ([a, b]) => T.matmul(a!, b!) },
  {
    name: 'a gradient reaching one tensor by several paths (add shares its gradient)',
    inputs: [{ shape: [2, 3] }],
    fn: ([w]) => {
      const u = T.scale(w!, 2), v = T.scale(w!, 3);
      return T.add(T.add(u, v), u);
    },
  },
  { name: 'linear 3-D input', inputs: [{ shape: [2, 3, 5] }, { shape: [4, 5] }], fn: ([x, w]) => T.linear(x!, w!) },
  { name: 'groupedMatmul', inputs: [{ shape: [7, 5] }, { shape: [3, 4, 5] }], fn: grouped([0, 2, 2, 7]) },
  { name: 'groupedMatmul one group', inputs: [{ shape: [3, 6] }, { shape: [1, 5, 6] }], fn: grouped([0, 3]) },
  { name: 'transpose', inputs: [{ shape: [2, 3, 5] }], fn: ([x]) => T.transpose(x!) },
  { name: 'softmax', inputs: [{ shape: [3, 7] }], fn: ([x]) => T.softmax(x!) },
  { name: 'softmax one row', inputs: [{ shape: [1, 19] }], fn: ([x]) => T.softmax(x!) },
  {
    name: 'crossEntropy with ignore',
    inputs: [{ shape: [5, 11] }, { shape: [5], ints: [3, -100, 0, 10, 7] }],
    fn: ([l, t]) => T.crossEntropy(l!, t!),
  },
  { name: 'rmsnorm', inputs: [{ shape: [4, 9] }, { shape: [9] }], fn: ([x, w]) => T.rmsnorm(x!, w!, 1e-6) },
  { name: 'rmsnorm one row', inputs: [{ shape: [1, 33] }, { shape: [33] }], fn: ([x, w]) => T.rmsnorm(x!, w!, 1e-5) },
  // Qwen3's q/k norm: one weight over the head dim, shared by every head of every token
  { name: 'rmsnorm per head [B, T, H, D]', inputs: [{ shape: [2, 3, 5, 6] }, { shape: [6] }], fn: ([x, w]) => T.rmsnorm(x!, w!, 1e-6) },
  ropeCase([2, 3], 2, 6, 8, [0, 1, 2, 5, 6, 7]),
  ropeCase([1], 3, 10, 4, [3]),
  attentionCase(1, 5, 5, 2, 2, 4),
  attentionCase(2, 3, 3, 4, 2, 6),
  attentionCase(1, 1, 1, 1, 1, 3),
  {
    name: 'attention q shorter than k (cache style)',
    inputs: [{ shape: [1, 2, 2, 4] }, { shape: [1, 6, 2, 4] }, { shape: [1, 6, 2, 4] }],
    fn: ([q, k, v]) => T.attention(q!, k!, v!),
  },
  {
    name: 'embedding repeated ids',
    inputs: [{ shape: [6, 5] }, { shape: [2, 3], ints: [1, 4, 1, 0, 5, 1] }],
    fn: ([w, ids]) => T.embedding(w!, ids!),
  },
  { name: 'gatherRows', inputs: [{ shape: [4, 3] }, { shape: [5], ints: [3, 0, 3, 2, 1] }], fn: ([x, i]) => T.gatherRows(x!, i!) },
  { name: 'scatterAddRows', inputs: [{ shape: [5, 3] }, { shape: [5], ints: [1, 0, 1, 3, 1] }], fn: ([x, i]) => T.scatterAddRows(x!, i!, 4) },
  {
    name: 'topk',
    inputs: [{ shape: [2, 5], values: [0.1, 0.9, -0.5, 0.4, 0.7, -0.2, 0.3, 0.8, 0.05, -0.9] }],
    fn: ([x]) => T.topk(x!, 2).values,
  },
  { name: 'sum', inputs: [{ shape: [3, 7] }], fn: ([x]) => T.sum(x!) },
  { name: 'mean', inputs: [{ shape: [2, 2, 5] }], fn: ([x]) => T.mean(x!) },
  { name: 'std unbiased', inputs: [{ shape: [3, 8] }], fn: ([x]) => T.std(x!, true) },
  { name: 'std biased', inputs: [{ shape: [2, 5] }], fn: ([x]) => T.std(x!, false) },
  { name: 'sumAll', inputs: [{ shape: [3, 4] }], fn: ([x]) => T.sumAll(x!) },
  { name: 'meanAll', inputs: [{ shape: [13] }], fn: ([x]) => T.meanAll(x!) },
  { name: 'sliceRows', inputs: [{ shape: [5, 3] }], fn: ([x]) => T.sliceRows(x!, 1, 4) },
  { name: 'concatRows', inputs: [{ shape: [2, 3] }, { shape: [1, 3] }, { shape: [3, 3] }], fn: (xs) => T.concatRows(xs) },
  {
    name: 'router chain (logit norm, softmax, topk, renorm)',
    inputs: [{ shape: [4, 6] }, { shape: [5, 6] }],
    fn: ([x, wg]) => {
      const logits = T.linear(x!, wg!);
      const sd = T.std(logits, true);
      const normed = T.div(logits, T.reshape(sd, [4, 1]));
      const p = T.softmax(normed);
      const { values } = T.topk(p, 2);
      return T.div(values, T.reshape(T.sum(values), [4, 1]));
    },
  },
];

/** Materialize a case's inputs on a backend (float inputs are parameters unless noGrad). */
export function makeInputs(c: OpCase, be: Backend, seed: number): Tensor[] {
  return c.inputs.map((s, i) => {
    if (s.ints) return T.tensor(Int32Array.from(s.ints), s.shape, 'i32', be);
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = s.values ? Float32Array.from(s.values) : randomArray(n, seed * 31 + i + 1);
    const t = T.tensor(data, s.shape, 'f32', be);
    if (!s.noGrad) t.requiresGrad = true;
    return t;
  });
}
