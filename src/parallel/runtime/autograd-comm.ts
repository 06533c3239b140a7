/**
 * Collectives as differentiable tensor ops (Megatron-LM's mappings): the forward runs one
 * collective over a group, the backward its transpose.
 *
 *   copyToGroup        forward identity          backward all-reduce      (Megatron's "f": before a column-parallel linear)
 *   reduceFromGroup    forward all-reduce        backward identity        ("g": after a row-parallel linear)
 *   gatherColumns      forward all-gather (last dim, uneven)  backward: this rank's columns
 *   scatterColumns     forward: this rank's columns           backward all-gather
 *   gatherRows         forward all-gather (first dim)         backward reduce-scatter   (sequence parallel)
 *   reduceScatterRows  forward reduce-scatter (first dim)     backward all-gather
 *   allToAllRows       forward all-to-all of rows (uneven)    backward the all-to-all back   (expert parallel)
 *   scatterRows        forward: this rank's rows              backward all-gather      (entering sequence parallel)
 *   gatherRowsReplicated forward all-gather (first dim)       backward: this rank's rows (leaving it, to replicated work)
 *
 * Values go through the host (the ranks' heaps are separate), which is what a reference runtime
 * needs: the bytes are counted by the collectives, the arithmetic is the backend's.
 */
import * as T from '../../tensor/index.js';
import type { Tensor } from '../../tensor/index.js';
import type { Group } from './comm.js';

const fromHost = (data: Float32Array, shape: readonly number[], like: Tensor) => T.tensor(data, shape, 'f32', like.backend);

function lastDim(x: Tensor): { rows: number; cols: number } {
  const cols = x.shape[x.rank - 1]!;
  return { rows: x.size / cols, cols };
}

/** Identity forward; the backward sums the gradient over the group. */
export function copyToGroup(x: Tensor, g: Group): Tensor {
  if (g.size === 1) return x;
  const out = T.noGrad(() => fromHost(x.toFloat32(), x.shape, x));
  return T.record('copyToGroup', [x], out, [], (gy) => [fromHost(g.allReduce(gy.toFloat32()), gy.shape, gy)]);
}

/** Sum over the group forward; the backward passes the gradient through. */
export function reduceFromGroup(x: Tensor, g: Group): Tensor {
  if (g.size === 1) return x;
  const out = T.noGrad(() => fromHost(g.allReduce(x.toFloat32()), x.shape, x));
  return T.record('reduceFromGroup', [x], out, [], (gy) => [fromHost(gy.toFloat32(), gy.shape, gy)]);
}

/** Interleave per-rank column blocks [rows, counts[r]] into [rows, sum(counts)]. */
function joinColumns(flat: Float32Array, rows: number, counts: readonly number[]): Float32Array {
  const total = counts.reduce((a, b) => a + b, 0);
  const out = new Float32Array(rows * total);
  let src = 0, col = 0;
  for (const c of counts) {
    for (let i = 0; i < rows; i++) out.set(flat.subarray(src + i * c, src + (i + 1) * c), i * total + col);
    src += rows * c;
    col += c;
  }
  return out;
}

function takeColumns(x: Float32Array, rows: number, cols: number, from: number, n: number): Float32Array {
  const out = new Float32Array(rows * n);
  for (let i = 0; i < rows; i++) out.set(x.subarray(i * cols + from, i * cols + from + n), i * n);
  return out;
}

/** [..., counts[me]] on each rank -> [..., sum(counts)] on every rank (columns in group order). */
export function gatherColumns(x: Tensor, g: Group, counts: readonly number[]): Tensor {
  const { rows, cols } = lastDim(x);
  if (cols !== counts[g.index]) throw new Error(`gatherColumns: this rank has ${cols} columns, counts say ${counts[g.index]}`);
  const total = counts.reduce((a, b) => a + b, 0);
  const shape = [...x.shape.slice(0, -1), total];
  if (g.size === 1) return x;
  const out = T.noGrad(() => fromHost(joinColumns(g.allGather(x.toFloat32(), counts.map((c) => c * rows)), rows, counts), shape, x));
  const from = counts.slice(0, g.index).reduce((a, b) => a + b, 0);
  return T.record('gatherColumns', [x], out, [], (gy) => [fromHost(takeColumns(gy.toFloat32(), rows, total, from, cols), x.shape, gy)]);
}

/** [..., sum(counts)] (the same on every rank) -> this rank's [..., counts[me]]. */
export function scatterColumns(x: Tensor, g: Group, counts: readonly number[]): Tensor {
  const { rows, cols } = lastDim(x);
  const total = counts.reduce((a, b) => a + b, 0);
  if (cols !== total) throw new Error(`scatterColumns: ${cols} columns, counts sum to ${total}`);
  if (g.size === 1) return x;
  const from = counts.slice(0, g.index).reduce((a, b) => a + b, 0), n = counts[g.index]!;
  const out = T.noGrad(() => fromHost(takeColumns(x.toFloat32(), rows, cols, from, n), [...x.shape.slice(0, -1), n], x));
  return T.record('scatterColumns', [x], out, [], (gy) => [fromHost(joinColumns(g.allGather(gy.toFloat32(), counts.map((c) => c * rows)), rows, counts), x.shape, gy)]);
}

/** Sequence parallel: [counts[me], ...] rows on each rank -> all rows on every rank; backward reduce-scatter. */
export function gatherRows(x: Tensor, g: Group, counts: readonly number[]): Tensor {
  const inner = x.size / x.shape[0]!;
  const total = counts.reduce((a, b) => a + b, 0);
  if (g.size === 1) return x;
  const out = T.noGrad(() => fromHost(g.allGather(x.toFloat32(), counts.map((c) => c * inner)), [total, ...x.shape.slice(1)], x));
  return T.record('gatherRows', [x], out, [], (gy) => [fromHost(g.reduceScatter(gy.toFloat32(), counts.map((c) => c * inner)), x.shape, gy)]);
}

/** Sequence parallel: partial sums of all rows -> this rank's rows of the sum; backward all-gather. */
export function reduceScatterRows(x: Tensor, g: Group, counts: readonly number[]): Tensor {
  const inner = x.size / x.shape[0]!;
  if (g.size === 1) return x;
  const out = T.noGrad(() => fromHost(g.reduceScatter(x.toFloat32(), counts.map((c) => c * inner)), [counts[g.index]!, ...x.shape.slice(1)], x));
  return T.record('reduceScatterRows', [x], out, [], (gy) => [fromHost(g.allGather(gy.toFloat32(), counts.map((c) => c * inner)), x.shape, gy)]);
}

/** Expert parallel: send[j] rows of x [sum(send), ...] to group rank j, recv[j] from it -> [sum(recv), ...]; backward the reverse all-to-all. */
export function allToAllRows(x: Tensor, g: Group, send: readonly number[], recv: readonly number[]): Tensor {
  const inner = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const rows = send.reduce((a, b) => a + b, 0), got = recv.reduce((a, b) => a + b, 0);
  if (x.shape[0] !== rows) throw new Error(`allToAllRows: ${x.shape[0]} rows, send counts sum to ${rows}`);
  const scaled = (c: readonly number[]) => c.map((n) => n * inner);
  const out = T.noGrad(() => fromHost(g.allToAll(x.toFloat32(), scaled(send), scaled(recv)).data, [got, ...x.shape.slice(1)], x));
  return T.record('allToAllRows', [x], out, [], (gy) => [fromHost(g.allToAll(gy.toFloat32(), scaled(recv), scaled(send)).data, x.shape, gy)]);
}

/** Sequence parallel: rows [sum(counts), ...] (the same on every rank) -> this rank's counts[me] rows; backward all-gather. */
export function scatterRows(x: Tensor, g: Group, counts: readonly number[]): Tensor {
  const inner = x.size / x.shape[0]!;
  if (g.size === 1) return x;
  const from = counts.slice(0, g.index).reduce((a, b) => a + b, 0), n = counts[g.index]!;
  const out = T.noGrad(() => fromHost(x.toFloat32().slice(from * inner, (from + n) * inner), [n, ...x.shape.slice(1)], x));
  return T.record('scatterRows', [x], out, [], (gy) => [fromHost(g.allGather(gy.toFloat32(), counts.map((c) => c * inner)), x.shape, gy)]);
}

/**
 * Sequence parallel, into work every rank repeats on all rows (routing, the head and loss): the
 * rows all-gathered; every rank's gradient of the result is the same, so the backward keeps this
 * rank's rows of it (no sum).
 */
export function gatherRowsReplicated(x: Tensor, g: Group, counts: readonly number[]): Tensor {
  const inner = x.size / x.shape[0]!;
  const total = counts.reduce((a, b) => a + b, 0);
  if (g.size === 1) return x;
  const from = counts.slice(0, g.index).reduce((a, b) => a + b, 0);
  const out = T.noGrad(() => fromHost(g.allGather(x.toFloat32(), counts.map((c) => c * inner)), [total, ...x.shape.slice(1)], x));
  return T.record('gatherRowsReplicated', [x], out, [], (gy) => [fromHost(gy.toFloat32().slice(from * inner, (from + x.shape[0]!) * inner), x.shape, gy)]);
}
