/** In-place optimizer primitives (no autograd): AdamW update, sum of squares, scaling. */
import { ShapeError, type Tensor } from '../tensor.js';
import { checkF32, sameBackend } from './check.js';

export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
}

/** One AdamW step on p in place, with moments m and v (decoupled weight decay). */
export function adamwUpdate(p: Tensor, g: Tensor, m: Tensor, v: Tensor, h: AdamWStep): void {
  checkF32('adamwUpdate', p, g, m, v);
  const be = sameBackend('adamwUpdate', p, g, m, v);
  for (const t of [g, m, v]) if (t.size !== p.size) throw new ShapeError(`adamwUpdate: [${t.shape}] does not match parameter [${p.shape}]${p.name ? ` '${p.name}'` : ''}`);
  be.kernels.adamw(p.ptr, g.ptr, m.ptr, v.ptr, p.size, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, 1 - h.beta1 ** h.step, 1 - h.beta2 ** h.step);
}

/** Sum of squares of all elements, as a host number (float64 accumulation). */
export function sumSquares(t: Tensor): number {
  checkF32('sumSquares', t);
  return t.backend.kernels.sumSquares(t.ptr, t.size);
}

/** t *= alpha in place. */
export function scaleInPlace(t: Tensor, alpha: number): void {
  checkF32('scaleInPlace', t);
  t.backend.kernels.axpby(t.ptr, t.ptr, t.size, alpha, 0);
}
