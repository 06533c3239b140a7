/** Reductions over the last axis (sum, mean, std) and over all elements. */
import { BinaryOp } from '../../backend/backend.js';
import { record } from '../autograd.js';
import { empty, type Tensor } from '../tensor.js';
import { checkF32, rowsCols } from './check.js';

/** g [rows] broadcast along a new last axis of length cols, times alpha. */
function expandLast(g: Tensor, rows: number, cols: number, shape: readonly number[], alpha: number): Tensor {
  const be = g.backend;
  const a = empty([1], 'f32', be);
  be.kernels.fill(a.ptr, 1, alpha, false);
  const out = empty(shape, 'f32', be);
  be.kernels.binary(BinaryOp.Mul, g.ptr, a.ptr, out.ptr, [1, 1, rows, cols], [0, 0, 1, 0], [0, 0, 0, 0]);
  a.dispose();
  return out;
}

/** Sum over the last axis: [..., C] -> [...]. */
export function sum(x: Tensor): Tensor {
  checkF32('sum', x);
  const [rows, cols] = rowsCols(x);
  const out = empty(x.shape.slice(0, -1), 'f32', x.backend);
  x.backend.kernels.sumRows(x.ptr, out.ptr, rows, cols);
  return record('sum', [x], out, [], (g) => [expandLast(g, rows, cols, x.shape, 1)]);
}

/** Mean over the last axis. */
export function mean(x: Tensor): Tensor {
  checkF32('mean', x);
  const [rows, cols] = rowsCols(x);
  const out = empty(x.shape.slice(0, -1), 'f32', x.backend);
  x.backend.kernels.sumRows(x.ptr, out.ptr, rows, cols);
  x.backend.kernels.axpby(out.ptr, out.ptr, rows, 1 / cols, 0);
  return record('mean', [x], out, [], (g) => [expandLast(g, rows, cols, x.shape, 1 / cols)]);
}

/** Standard deviation over the last axis; unbiased divides by C-1 (torch.std's default). No eps. */
export function std(x: Tensor, unbiased = true): Tensor {
  checkF32('std', x);
  const [rows, cols] = rowsCols(x);
  const out = empty(x.shape.slice(0, -1), 'f32', x.backend);
  x.backend.kernels.stdRows(x.ptr, out.ptr, rows, cols, unbiased);
  return record('std', [x], out, [x, out], (g, [sx, so]) => {
    const dx = empty(x.shape, 'f32', g.backend);
    g.backend.kernels.stdRowsBackward(sx!.ptr, so!.ptr, g.ptr, dx.ptr, rows, cols, unbiased);
    return [dx];
  });
}

/** Sum of all elements -> scalar. */
export function sumAll(x: Tensor): Tensor {
  checkF32('sumAll', x);
  const out = empty([], 'f32', x.backend);
  x.backend.kernels.sumRows(x.ptr, out.ptr, 1, x.size);
  return record('sumAll', [x], out, [], (g) => [expandLast(g, 1, x.size, x.shape, 1)]);
}

/** Mean of all elements -> scalar. */
export function meanAll(x: Tensor): Tensor {
  checkF32('meanAll', x);
  const out = empty([], 'f32', x.backend);
  x.backend.kernels.sumRows(x.ptr, out.ptr, 1, x.size);
  x.backend.kernels.axpby(out.ptr, out.ptr, 1, 1 / x.size, 0);
  return record('meanAll', [x], out, [], (g) => [expandLast(g, 1, x.size, x.shape, 1 / x.size)]);
}
