/** Shape ops with gradients: reshape, row slices, row concatenation. */
import { record } from '../autograd.js';
import { empty, resolveShape, ShapeError, type Tensor } from '../tensor.js';
import { sameBackend } from './check.js';
export { reshapeWithGrad as reshape } from './linalg.js';

/** Rows [start, end) of the first axis (a copy). */
export function sliceRows(x: Tensor, start: number, end: number): Tensor {
  const d0 = x.shape[0] ?? 1;
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= d0)) {
    throw new ShapeError(`sliceRows: rows [${start}, ${end}) out of range for [${x.shape}]`);
  }
  const inner = x.size / Math.max(1, d0);
  const out = empty([end - start, ...x.shape.slice(1)], x.dtype, x.backend);
  x.backend.kernels.copy2d(x.ptr + 4 * start * inner, out.ptr, 1, out.size, 0, 0);
  return record('sliceRows', [x], out, [], (g) => {
    const dx = empty(x.shape, 'f32', g.backend);
    g.backend.kernels.fill(dx.ptr, dx.size, 0, false);
    g.backend.kernels.copy2d(g.ptr, dx.ptr + 4 * start * inner, 1, g.size, 0, 0);
    return [dx];
  });
}

/** Concatenate along the first axis; all other dims must agree. */
export function concatRows(xs: readonly Tensor[]): Tensor {
  if (xs.length === 0) throw new ShapeError('concatRows: no tensors');
  const be = sameBackend('concatRows', ...xs);
  const rest = xs[0]!.shape.slice(1);
  for (const x of xs) {
    if (x.dtype !== xs[0]!.dtype) throw new ShapeError(`concatRows: mixed dtypes ${xs[0]!.dtype} and ${x.dtype}`);
    if (x.rank !== rest.length + 1 || x.shape.slice(1).some((d, i) => d !== rest[i])) {
      throw new ShapeError(`concatRows: shapes [${xs[0]!.shape}] and [${x.shape}] differ beyond the first axis`);
    }
  }
  const rows = xs.reduce((s, x) => s + x.shape[0]!, 0);
  const out = empty([rows, ...rest], xs[0]!.dtype, be);
  let at = out.ptr;
  for (const x of xs) {
    be.kernels.copy2d(x.ptr, at, 1, x.size, 0, 0);
    at += 4 * x.size;
  }
  return record('concatRows', xs, out, [], (g) => {
    let off = 0;
    return xs.map((x) => {
      const gx = empty(x.shape, 'f32', be);
      be.kernels.copy2d(g.ptr + 4 * off, gx.ptr, 1, x.size, 0, 0);
      off += x.size;
      return gx;
    });
  });
}


/**
 * In place, no gradient: dst[:, start : start + n] = src, with dst [B, S, ...rest] and
 * src [B, n, ...rest] (writing new keys and values into a KV cache).
 */
export function writeSlice(dst: Tensor, src: Tensor, start: number): void {
  const be = sameBackend('writeSlice', dst, src);
  if (dst.rank < 2 || src.rank !== dst.rank || src.shape[0] !== dst.shape[0] || src.shape.slice(2).some((d, i) => d !== dst.shape[i + 2])) {
    throw new ShapeError(`writeSlice: src [${src.shape}] does not fit dst [${dst.shape}] along axis 1`);
  }
  const [B, S] = dst.shape as [number, number];
  const n = src.shape[1]!;
  if (!Number.isInteger(start) || start < 0 || start + n > S) throw new ShapeError(`writeSlice: positions [${start}, ${start + n}) exceed the ${S} of dst [${dst.shape}]`);
  const inner = dst.size / Math.max(1, B * S);
  be.kernels.copy2d(src.ptr, dst.ptr + 4 * start * inner, B, n * inner, n * inner, S * inner);
  dst.markDeviceWritten();
}
