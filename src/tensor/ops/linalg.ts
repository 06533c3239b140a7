/** Matrix products: matmul (transposes, batches), linear, the grouped expert matmul, transpose. */
import { GroupedMode, WeightDType, type WeightRef, WeightTable } from '../../backend/backend.js';
import { needsGrad, record } from '../autograd.js';
import { isGradEnabled, isRowInvariant } from '../engine.js';
import { empty, numel, ShapeError, Tensor, TensorError } from '../tensor.js';
import { ExpertWeights, Weight } from '../weight.js';
import { checkF32, checkRank, sameBackend } from './check.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * op(a) @ op(b). Shapes: a [..., m, k] (or [..., k, m] with transA), b [k, n] (or [n, k] with
 * transB) or batched [batch, k, n] matching a's batch. A 2-D b with a batched a (no transA) is one
 * GEMM over the flattened rows of a.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  checkF32('matmul', a, b);
  const be = sameBackend('matmul', a, b);
  if (a.rank < 2 || b.rank < 2 || b.rank > 3) throw new ShapeError(`matmul: a [${a.shape}] and b [${b.shape}] must be matrices or batches of matrices`);
  const [ar, ac] = [a.shape[a.rank - 2]!, a.shape[a.rank - 1]!];
  const [br, bc] = [b.shape[b.rank - 2]!, b.shape[b.rank - 1]!];
  const m = transA ? ac : ar, ka = transA ? ar : ac;
  const kb = transB ? bc : br, n = transB ? br : bc;
  if (ka !== kb) {
    throw new ShapeError(`matmul: inner dimensions differ: a [${a.shape}]${transA ? '^T' : ''} has k=${ka}, b [${b.shape}]${transB ? '^T' : ''} has k=${kb}`);
  }
  const k = ka;
  const aBatch = a.shape.slice(0, -2);
  const batchA = aBatch.reduce((x, y) => x * y, 1);
  let out: Tensor;
  if (b.rank === 2) {
    if (transA && batchA > 1) throw new ShapeError(`matmul: transA with a batched a [${a.shape}] needs a batched b, got [${b.shape}]`);
    out = empty([...aBatch, m, n], 'f32', be);
    const rows = transA ? m : batchA * m;
    be.kernels.matmul(a.ptr, b.ptr, out.ptr, rows, k, n, transA, transB, 1, 0, 0, 0, 0);
  } else {
    if (batchA !== b.shape[0]) throw new ShapeError(`matmul: batch sizes differ: a [${a.shape}] and b [${b.shape}]`);
    out = empty([...aBatch, m, n], 'f32', be);
    be.kernels.matmul(a.ptr, b.ptr, out.ptr, m, k, n, transA, transB, batchA, m * k, k * n, m * n, 0);
  }
  return record('matmul', [a, b], out, [a, b], (g, [saIn, sb]) => {
    // A batched a of rank > 3 against a 3-D b: differentiate on 3-D views, reshape back.
    const flat = b.rank === 3 && a.rank > 3;
    const sa = flat ? saIn!.view([batchA, ar, ac]) : saIn!;
    const gg = flat ? g.view([batchA, m, n]) : g;
    // dop(A) = g @ op(B)^T, dop(B) = op(A)^T @ g, then undo the transposes of the stored layout.
    let da = transA ? matmul(sb!, gg, { transA: transB, transB: true }) : matmul(gg, sb!, { transB: !transB });
    let db: Tensor;
    if (b.rank === 2 && batchA > 1) {
      const a2 = sa.view([batchA * m, k]);
      const g2 = gg.view([batchA * m, n]);
      db = transB ? matmul(g2, a2, { transA: true }) : matmul(a2, g2, { transA: true });
      a2.dispose();
      g2.dispose();
    } else {
      db = transB ? matmul(gg, sa, { transA: true, transB: transA }) : matmul(sa, gg, { transA: !transA });
    }
    if (flat) {
      const d = da.view(a.shape);
      da.dispose();
      da = d;
      sa.dispose();
      gg.dispose();
    }
    return [da, db];
  });
}

/** Weights in a storage dtype are for inference: refuse a product whose input wants a gradient. */
function checkNoGradThrough(op: string, x: Tensor, w: Weight | ExpertWeights): void {
  if (!isGradEnabled() || !needsGrad(x)) return;
  const what = w instanceof Weight ? `the ${w.dtypeName}${w.mapped ? ' mapped' : ''} weight${w.name ? ` '${w.name}'` : ''}` : `${w.experts.length} expert weights`;
  throw new TensorError(`${op}: gradients through ${what} are not supported (weights in a storage dtype are for inference; load f32 weights to train)`);
}

/** x [..., k] @ W^T through the weight kernel, W [n, k] given by reference; row-invariant inside T.rowInvariant. */
function linearRef(x: Tensor, ref: WeightRef, n: number, k: number): Tensor {
  const rows = x.shape.slice(0, -1);
  const out = empty([...rows, n], 'f32', x.backend);
  x.backend.kernels.linearW(x.ptr, ref, out.ptr, numel(rows), k, n, isRowInvariant());
  return out;
}

/** An f32 tensor's memory as a weight (scale 1, no row scales), `offset` elements in. */
function f32Ref(w: Tensor, offset = 0): WeightRef {
  return { ptr: w.ptr + 4 * offset, dtype: WeightDType.F32, scale: 1, rowScale: null };
}

/** Whether a product of these needs no gradient: then T.rowInvariant may route f32 weights through the weight kernels. */
function noGradNeeded(...ts: Tensor[]): boolean {
  return !isGradEnabled() || !ts.some(needsGrad);
}

/** x @ W^T for a weight in its storage dtype, x [..., in], W [out, in]; no autograd. */
function linearWeight(x: Tensor, w: Weight): Tensor {
  checkF32('linear', x);
  if (x.backend !== w.backend) throw new TensorError(`linear: input and weight${w.name ? ` '${w.name}'` : ''} are on different backends`);
  const [n, k] = w.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== k) throw new ShapeError(`linear: input [${x.shape}] does not match weight${w.name ? ` '${w.name}'` : ''} [${w.shape}] (in features ${k})`);
  checkNoGradThrough('linear', x, w);
  return linearRef(x, w.ref, n, k);
}

/**
 * x @ w^T with x [..., in] and w [out, in] (the nn.Linear convention, no bias); w may be a Weight in
 * any storage dtype. Inside T.rowInvariant an f32 w that needs no gradient goes through the weight
 * kernel too, so every row's result is independent of the others.
 */
export function linear(x: Tensor, w: Tensor | Weight): Tensor {
  if (w instanceof Weight) return linearWeight(x, w);
  checkRank('linear', 'weight', w, [2]);
  if (x.shape[x.rank - 1] !== w.shape[1]) throw new ShapeError(`linear: input [${x.shape}] does not match weight [${w.shape}] (in features ${w.shape[1]})`);
  if (isRowInvariant() && noGradNeeded(x, w)) {
    checkF32('linear', x, w);
    sameBackend('linear', x, w);
    return linearRef(x, f32Ref(w), w.shape[0]!, w.shape[1]!);
  }
  if (x.rank === 2) return matmul(x, w, { transB: true });
  const x2 = reshapeWithGrad(x, [-1, w.shape[1]!]);
  const y = matmul(x2, w, { transB: true });
  return reshapeWithGrad(y, [...x.shape.slice(0, -1), w.shape[0]!]);
}

/**
 * The expert FFN product: rows [offsets[g], offsets[g+1]) of x [N, K] times w[g]^T, w [G, M, K],
 * giving [N, M]. offsets are host integers (G+1 of them, from the router's dispatch). Inside
 * T.rowInvariant each row's result is independent of the group sizes and the other rows (a stacked
 * f32 w that needs no gradient goes through the weight kernel, one f32 reference per expert).
 */
export function groupedMatmul(x: Tensor, w: Tensor | ExpertWeights, offsets: Int32Array): Tensor {
  checkF32('groupedMatmul', x);
  checkRank('groupedMatmul', 'x', x, [2]);
  const [N, K] = x.shape as [number, number];
  const [G, M, Kw] = w.shape as [number, number, number];
  if (w instanceof Tensor) checkRank('groupedMatmul', 'w', w, [3]);
  if (K !== Kw) throw new ShapeError(`groupedMatmul: x [${x.shape}] and w [${w.shape}] disagree on K (${K} vs ${Kw})`);
  if (offsets.length !== G + 1 || offsets[0] !== 0 || offsets[G] !== N) {
    throw new ShapeError(`groupedMatmul: offsets must have ${G + 1} entries from 0 to ${N}, got [${Array.from(offsets).join(',')}]`);
  }
  for (let g = 0; g < G; g++) if (offsets[g + 1]! < offsets[g]!) throw new ShapeError(`groupedMatmul: offsets decrease at group ${g}`);
  const offs = Int32Array.from(offsets);
  if (w instanceof ExpertWeights) {
    if (x.backend !== w.backend) throw new TensorError('groupedMatmul: input and expert weights are on different backends');
    checkNoGradThrough('groupedMatmul', x, w);
    const out = empty([N, M], 'f32', x.backend);
    x.backend.kernels.groupedLinearW(x.ptr, w.liveTable(), out.ptr, offs, M, K, isRowInvariant());
    return out;
  }
  checkF32('groupedMatmul', w);
  const be = sameBackend('groupedMatmul', x, w);
  const out = empty([N, M], 'f32', be);
  if (isRowInvariant() && noGradNeeded(x, w)) {
    const table = new WeightTable(Array.from({ length: G }, (_, g) => f32Ref(w, g * M * K)));
    be.kernels.groupedLinearW(x.ptr, table, out.ptr, offs, M, K, true);
    return out;
  }
  be.kernels.groupedMatmul(GroupedMode.XWt, x.ptr, w.ptr, out.ptr, offs, M, K, 0);
  return record('groupedMatmul', [x, w], out, [x, w], (g, [sx, sw]) => {
    const dx = empty([N, K], 'f32', be);
    be.kernels.groupedMatmul(GroupedMode.XW, g.ptr, sw!.ptr, dx.ptr, offs, M, K, 0);
    const dw = empty([G, M, K], 'f32', be);
    be.kernels.groupedMatmul(GroupedMode.AtB, g.ptr, sx!.ptr, dw.ptr, offs, M, K, 0);
    return [dx, dw];
  });
}

/** Swap the last two axes (a copy). */
export function transpose(x: Tensor): Tensor {
  checkF32('transpose', x);
  if (x.rank < 2) throw new ShapeError(`transpose: needs rank >= 2, got [${x.shape}]`);
  const r = x.shape[x.rank - 2]!, c = x.shape[x.rank - 1]!;
  const batch = x.size / Math.max(1, r * c);
  const out = empty([...x.shape.slice(0, -2), c, r], 'f32', x.backend);
  x.backend.kernels.transpose(x.ptr, out.ptr, batch, r, c);
  return record('transpose', [x], out, [], (g) => [transpose(g)]);
}

/** A view with another shape; the gradient is reshaped back. */
export function reshapeWithGrad(x: Tensor, shape: readonly number[]): Tensor {
  const out = x.view(shape);
  return record('reshape', [x], out, [], (g) => [g.view(x.shape)]);
}
