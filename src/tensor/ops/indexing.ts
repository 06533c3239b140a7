/** Index ops: embedding lookup, row gather/scatter (token permutation), top-k. */
import { record } from '../autograd.js';
import { empty, ShapeError, type Tensor, TensorError } from '../tensor.js';
import { Weight } from '../weight.js';
import { checkF32, checkI32, checkIndices, checkRank, rowsCols, sameBackend } from './check.js';
import { tensor } from './create.js';

/**
 * weight [V, C] looked up at i32 ids [...] -> [..., C]; backward scatter-adds into [V, C]. A Weight
 * in a storage dtype is decoded row by row (no autograd).
 */
export function embedding(weight: Tensor | Weight, ids: Tensor): Tensor {
  if (weight instanceof Weight) {
    checkI32('embedding', 'ids', ids);
    if (ids.backend !== weight.backend) throw new TensorError('embedding: ids and weight are on different backends');
    const [V, C] = weight.shape;
    checkIndices('embedding', 'ids', ids, V);
    const out = empty([...ids.shape, C], 'f32', ids.backend);
    ids.backend.kernels.gatherRowsW(weight.ref, V, ids.ptr, out.ptr, ids.size, C);
    return out;
  }
  checkF32('embedding', weight);
  checkI32('embedding', 'ids', ids);
  checkRank('embedding', 'weight', weight, [2]);
  const be = sameBackend('embedding', weight, ids);
  const [V, C] = weight.shape as [number, number];
  checkIndices('embedding', 'ids', ids, V);
  const out = empty([...ids.shape, C], 'f32', be);
  be.kernels.gatherRows(weight.ptr, ids.ptr, out.ptr, ids.size, C);
  return record('embedding', [weight], out, [ids], (g, [sid]) => {
    const dw = empty([V, C], 'f32', be);
    be.kernels.fill(dw.ptr, dw.size, 0, false);
    be.kernels.scatterAddRows(g.ptr, sid!.ptr, dw.ptr, sid!.size, C);
    return [dw];
  });
}

/** Rows of x [N, C] at i32 idx [M] -> [M, C] (dispatch: permute tokens into expert order). */
export function gatherRows(x: Tensor, idx: Tensor): Tensor {
  checkF32('gatherRows', x);
  checkI32('gatherRows', 'idx', idx);
  const be = sameBackend('gatherRows', x, idx);
  const [N, C] = rowsCols(x);
  checkIndices('gatherRows', 'idx', idx, N);
  const out = empty([idx.size, C], 'f32', be);
  be.kernels.gatherRows(x.ptr, idx.ptr, out.ptr, idx.size, C);
  return record('gatherRows', [x], out, [idx], (g, [si]) => {
    const dx = empty(x.shape, 'f32', be);
    be.kernels.fill(dx.ptr, dx.size, 0, false);
    be.kernels.scatterAddRows(g.ptr, si!.ptr, dx.ptr, si!.size, C);
    return [dx];
  });
}

/** out [rows, C] = zeros, then out[idx[i]] += src[i] for src [M, C] (combine: un-permute and sum). */
export function scatterAddRows(src: Tensor, idx: Tensor, rows: number): Tensor {
  checkF32('scatterAddRows', src);
  checkI32('scatterAddRows', 'idx', idx);
  const be = sameBackend('scatterAddRows', src, idx);
  const [M, C] = rowsCols(src);
  if (idx.size !== M) throw new ShapeError(`scatterAddRows: ${idx.size} indices for src [${src.shape}] with ${M} rows`);
  checkIndices('scatterAddRows', 'idx', idx, rows);
  const out = empty([rows, C], 'f32', be);
  be.kernels.fill(out.ptr, out.size, 0, false);
  be.kernels.scatterAddRows(src.ptr, idx.ptr, out.ptr, M, C);
  return record('scatterAddRows', [src], out, [idx], (g, [si]) => {
    const ds = empty(src.shape, 'f32', be);
    be.kernels.gatherRows(g.ptr, si!.ptr, ds.ptr, M, C);
    return [ds];
  });
}

/**
 * Top-k over the last axis, descending (ties: lower index first): values [..., k] carry the
 * gradient back to their positions; indices [..., k] are i32.
 */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  checkF32('topk', x);
  const [rows, cols] = rowsCols(x);
  if (!Number.isInteger(k) || k < 1 || k > cols) throw new ShapeError(`topk: k=${k} must be in [1, ${cols}] for x [${x.shape}]`);
  const be = x.backend;
  const shape = [...x.shape.slice(0, -1), k];
  const values = empty(shape, 'f32', be);
  const indices = empty(shape, 'i32', be);
  be.kernels.topk(x.ptr, values.ptr, indices.ptr, rows, cols, k);
  record('topk', [x], values, [indices], (g, [si]) => {
    const idx = si!.toArray() as Int32Array;
    const flat = new Int32Array(idx.length);
    for (let i = 0; i < idx.length; i++) flat[i] = Math.floor(i / k) * cols + idx[i]!;
    const ft = tensor(flat, [flat.length], 'i32', be);
    const dx = empty(x.shape, 'f32', be);
    be.kernels.fill(dx.ptr, dx.size, 0, false);
    be.kernels.scatterAddRows(g.ptr, ft.ptr, dx.ptr, flat.length, 1);
    ft.dispose();
    return [dx];
  });
  return { values, indices };
}

/**
 * In place, no gradient: dst[ids[i]] = src[i] for dst [S, ...rest] (a tensor the caller keeps, e.g.
 * a paged KV cache [slots, Hkv, D]), src [n, ...rest] and i32 ids [n]. The ids must be distinct and
 * in [0, S); both are checked, from the host copy of ids when there is one, else by reading them
 * back (n values).
 *
 * @example
 * const cache = T.keep(T.zeros([64, 2, 8]));               // [slots, Hkv, D]
 * const slots = T.tensor(Int32Array.of(17, 3), [2], 'i32');
 * T.scatterRows(cache, newKeys, slots);                     // newKeys [2, 2, 8] into slots 17 and 3
 */
export function scatterRows(dst: Tensor, src: Tensor, ids: Tensor): void {
  checkF32('scatterRows', dst, src);
  checkI32('scatterRows', 'ids', ids);
  const be = sameBackend('scatterRows', dst, src, ids);
  if (dst.rank < 1 || src.rank !== dst.rank || src.shape.slice(1).some((d, i) => d !== dst.shape[i + 1])) {
    throw new ShapeError(`scatterRows: rows of src [${src.shape}] do not fit dst [${dst.shape}]`);
  }
  const n = src.shape[0]!;
  if (ids.size !== n) throw new ShapeError(`scatterRows: ${ids.size} ids for src [${src.shape}] with ${n} rows`);
  const v = checkIndices('scatterRows', 'ids', ids, dst.shape[0]!);
  const seen = new Set<number>();
  for (let i = 0; i < v.length; i++) {
    if (seen.has(v[i]!)) throw new ShapeError(`scatterRows: ids[${i}] = ${v[i]} repeats an earlier id (each row of dst is written once)`);
    seen.add(v[i]!);
  }
  be.kernels.scatterRows(src.ptr, ids.ptr, dst.ptr, n, src.size / Math.max(1, n));
  dst.markDeviceWritten();
}
