/**
 * The js backend is the reference every other backend is tested against; here the reference itself
 * is checked against the mathematics: each op on the js backend against a float64 implementation
 * of its formula, written out below from the definitions (not from the kernels).
 * Tolerances are float32 rounding of the inputs and outputs, far below what a wrong scale, head
 * mapping, epsilon placement or table entry would give.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { assertClose, randomArray } from '../helpers.js';

const be = new JsBackend();
T.setBackend(be);

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
const run = (f: () => T.Tensor) => T.noGrad(() => T.tidy(() => f().toFloat32()));

/** Float64 causal attention, one query at a time, straight from softmax(q k^T / sqrt(D)) v. */
function attentionRef(q: Float32Array, k: Float32Array, v: Float32Array, B: number, Tq: number, Tk: number, H: number, Hkv: number, D: number, qOffset: number): Float64Array {
  const out = new Float64Array(B * Tq * H * D);
  const perKv = H / Hkv; // query heads h = j*perKv .. j*perKv + perKv-1 share kv head j (HF repeat_kv)
  for (let b = 0; b < B; b++)
    for (let i = 0; i < Tq; i++)
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / perKv);
        const qv = (c: number) => q[((b * Tq + i) * H + h) * D + c]!;
        const scores: number[] = [];
        for (let j = 0; j < Tk && j <= i + qOffset; j++) {
          let d = 0;
          for (let c = 0; c < D; c++) d += qv(c) * k[((b * Tk + j) * Hkv + kvh) * D + c]!;
          scores.push(d / Math.sqrt(D));
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, c) => a + c, 0);
        for (let c = 0; c < D; c++) {
          let acc = 0;
          e.forEach((p, j) => (acc += (p / z) * v[((b * Tk + j) * Hkv + kvh) * D + c]!));
          out[((b * Tq + i) * H + h) * D + c] = acc;
        }
      }
  return out;
}

test('attention: 1/sqrt(D) scale, causal mask with a query offset, GQA head mapping', () => {
  for (const [B, Tq, Tk, H, Hkv, D] of [[2, 5, 5, 4, 2, 6], [1, 3, 7, 6, 2, 8], [1, 4, 4, 3, 1, 4], [2, 1, 9, 4, 4, 10]] as const) {
    const q = randomArray(B * Tq * H * D, 1 + Tk, 1.5), k = randomArray(B * Tk * Hkv * D, 2 + Tk, 1.5), v = randomArray(B * Tk * Hkv * D, 3 + Tk);
    const got = run(() => T.attention(T.tensor(q, [B, Tq, H, D]), T.tensor(k, [B, Tk, Hkv, D]), T.tensor(v, [B, Tk, Hkv, D])));
    assertClose(got, attentionRef(q, k, v, B, Tq, Tk, H, Hkv, D, Tk - Tq), `attention B${B} Tq${Tq} Tk${Tk} H${H}/${Hkv} D${D}`, 1e-5, 1e-6);
  }
  // An explicit offset and a KV cache only partly filled: keys past kvLength are never read.
  const [B, Tq, S, H, Hkv, D] = [1, 2, 8, 2, 1, 4];
  const q = randomArray(B * Tq * H * D, 7), k = randomArray(B * S * Hkv * D, 8), v = randomArray(B * S * Hkv * D, 9);
  const kPoison = Float32Array.from(k, (x, i) => (i >= 5 * Hkv * D ? NaN : x));
  const got = run(() => T.attention(T.tensor(q, [B, Tq, H, D]), T.tensor(kPoison, [B, S, Hkv, D]), T.tensor(v, [B, S, Hkv, D]), { kvLength: 5, qOffset: 2 }));
  assertClose(got, attentionRef(q, k.slice(0, 5 * Hkv * D), v.slice(0, 5 * Hkv * D), B, Tq, 5, H, Hkv, D, 2), 'attention with kvLength 5 and qOffset 2', 1e-5, 1e-6);
});

test('RoPE tables are cos/sin(p * theta^(-2i/D)) and rope is the rotate-half rotation', () => {
  for (const [theta, D, maxPos] of [[10000, 8, 40], [1e6, 6, 12], [500000, 128, 4096]] as const) {
    const { cos, sin } = T.ropeTables(maxPos, D, theta);
    const c = cos.toFloat32(), s = sin.toFloat32();
    cos.dispose();
    sin.dispose();
    const half = D / 2;
    const wantC = new Float64Array(maxPos * half), wantS = new Float64Array(maxPos * half);
    for (let p = 0; p < maxPos; p++)
      for (let i = 0; i < half; i++) {
        const invFreq = 1 / theta ** ((2 * i) / D);
        wantC[p * half + i] = Math.cos(p * invFreq);
        wantS[p * half + i] = Math.sin(p * invFreq);
      }
    assertClose(c, wantC, `cos theta ${theta} D ${D}`, 0, 1e-6);
    assertClose(s, wantS, `sin theta ${theta} D ${D}`, 0, 1e-6);
  }
  // rope on [tokens, H, D] at scattered positions: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin per pair (i, i + D/2).
  const [N, H, D, theta] = [4, 3, 10, 10000];
  const positions = [0, 1, 7, 30];
  const x = randomArray(N * H * D, 21);
  const got = run(() => {
    const tables = T.ropeTables(32, D, theta);
    return T.rope(T.tensor(x, [N, H, D]), tables, T.tensor(Int32Array.from(positions), [N], 'i32'));
  });
  const want = new Float64Array(x.length);
  for (let t = 0; t < N; t++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < D / 2; i++) {
        const a = positions[t]! / theta ** ((2 * i) / D);
        const o = (t * H + h) * D;
        const x1 = x[o + i]!, x2 = x[o + i + D / 2]!;
        want[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        want[o + i + D / 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
  assertClose(got, want, 'rope', 1e-5, 1e-6);
});

test('RMSNorm is x / sqrt(mean(x^2) + eps) * w, with eps inside the root', () => {
  // Small inputs and a large eps make the placement of eps visible.
  const [rows, cols] = [3, 7];
  for (const [eps, sc] of [[1e-2, 0.05], [1e-6, 1]] as const) {
    const x = randomArray(rows * cols, 31, sc), w = randomArray(cols, 32).map((v) => 1 + 0.5 * v);
    const got = run(() => T.rmsnorm(T.tensor(x, [rows, cols]), T.tensor(w, [cols]), eps));
    const want = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let c = 0; c < cols; c++) ss += x[r * cols + c]! ** 2;
      const rs = 1 / Math.sqrt(ss / cols + eps);
      for (let c = 0; c < cols; c++) want[r * cols + c] = x[r * cols + c]! * rs * w[c]!;
    }
    assertClose(got, want, `rmsnorm eps ${eps}`, 1e-5, 1e-7);
  }
});

test('softmax is exp(x - max) / sum, stable for large logits', () => {
  const x = f32([1000, 999, 990, -5, -1000, 0.5, 0.25, 0, -0.25, -0.5, 3, 3, 3, 3, 3]);
  const got = run(() => T.softmax(T.tensor(x, [3, 5])));
  const want = new Float64Array(15);
  for (let r = 0; r < 3; r++) {
    const row = Array.from(x.subarray(r * 5, r * 5 + 5));
    const mx = Math.max(...row);
    const z = row.reduce((a, v) => a + Math.exp(v - mx), 0);
    row.forEach((v, c) => (want[r * 5 + c] = Math.exp(v - mx) / z));
  }
  assertClose(got, want, 'softmax', 1e-6, 1e-9);
});

test('cross-entropy is the mean over kept rows of logsumexp(x) - x[target]', () => {
  const [N, V] = [6, 9];
  const logits = randomArray(N * V, 41, 4);
  logits[5 * V + 2] = 80; // one confident row: still no overflow
  const targets = [3, -100, 0, 8, -100, 2];
  const got = run(() => T.crossEntropy(T.tensor(logits, [N, V]), T.tensor(Int32Array.from(targets), [N], 'i32')));
  let sum = 0, kept = 0;
  targets.forEach((t, r) => {
    if (t === -100) return;
    const row = Array.from(logits.subarray(r * V, r * V + V));
    const mx = Math.max(...row);
    sum += mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0)) - row[t]!;
    kept++;
  });
  assertClose(got, [sum / kept], 'cross-entropy', 1e-6, 1e-7);
  // Every row ignored: 0, not NaN.
  assert.equal(run(() => T.crossEntropy(T.tensor(logits, [N, V]), T.tensor(new Int32Array(N).fill(-100), [N], 'i32')))[0], 0);
});

test('std (unbiased and biased), mean, sum and SwiGLU against their definitions', () => {
  const [rows, cols] = [4, 6];
  const x = randomArray(rows * cols, 51, 2);
  const rowsOf = (r: number) => Array.from(x.subarray(r * cols, (r + 1) * cols));
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  for (const unbiased of [true, false]) {
    const got = run(() => T.std(T.tensor(x, [rows, cols]), unbiased));
    const want = Array.from({ length: rows }, (_, r) => {
      const a = rowsOf(r), m = mean(a);
      return Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / (unbiased ? cols - 1 : cols));
    });
    assertClose(got, want, `std unbiased=${unbiased}`, 1e-6, 1e-7);
  }
  assertClose(run(() => T.mean(T.tensor(x, [rows, cols]))), Array.from({ length: rows }, (_, r) => mean(rowsOf(r))), 'mean', 1e-6, 1e-7);
  assertClose(run(() => T.sum(T.tensor(x, [rows, cols]))), Array.from({ length: rows }, (_, r) => rowsOf(r).reduce((s, v) => s + v, 0)), 'sum', 1e-6, 1e-7);
  const g = randomArray(30, 52, 6), u = randomArray(30, 53);
  assertClose(run(() => T.swiglu(T.tensor(g, [30]), T.tensor(u, [30]))), Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]!), 'swiglu', 1e-6, 1e-7);
});
