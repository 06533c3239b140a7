/**
 * The differentiable collectives on a tensor-parallel SwiGLU MLP (column-parallel gate/up,
 * row-parallel down) and a sequence-parallel variant: each rank returns its loss and gradients.
 */
import * as T from '../../../src/tensor/index.js';
import { copyToGroup, gatherColumns, gatherRows, reduceFromGroup, reduceScatterRows, scatterColumns } from '../../../src/parallel/runtime/autograd-comm.js';
import type { RankContext } from '../../../src/parallel/runtime/ranks.js';

export const N = 6, C = 8, F = 11; // F = 11 over 3 ranks: [4, 4, 3]

export function weights(): { x: Float32Array; gate: Float32Array; up: Float32Array; down: Float32Array } {
  const rng = new T.Rng(5);
  const r = (n: number) => Float32Array.from({ length: n }, () => rng.normal() * 0.5);
  return { x: r(N * C), gate: r(F * C), up: r(F * C), down: r(C * F) };
}

export const fCounts = (p: number) => Array.from({ length: p }, (_, i) => Math.floor(F / p) + (i < F % p ? 1 : 0));
export const rowCounts = (p: number) => Array.from({ length: p }, (_, i) => Math.floor(N / p) + (i < N % p ? 1 : 0));

export interface TpResult {
  loss: number;
  dx: Float32Array;
  dGate: Float32Array; // this rank's rows
  dUp: Float32Array;
  dDown: Float32Array; // this rank's columns [C, f]
  gathered: Float32Array; // gatherColumns(scatterColumns(h)) == h
  spLoss: number;
  spDx: Float32Array; // this rank's rows of dx
}

const rowsOf = (a: Float32Array, cols: number, from: number, n: number) => a.slice(from * cols, (from + n) * cols);
function colsOf(a: Float32Array, rows: number, cols: number, from: number, n: number): Float32Array {
  const out = new Float32Array(rows * n);
  for (let i = 0; i < rows; i++) out.set(a.subarray(i * cols + from, i * cols + from + n), i * n);
  return out;
}

export function rankMain(ctx: RankContext<null>): TpResult {
  const g = ctx.comm.group('tp', Array.from({ length: ctx.size }, (_, i) => i));
  const w = weights(), fc = fCounts(ctx.size), from = fc.slice(0, ctx.rank).reduce((a, b) => a + b, 0), f = fc[ctx.rank]!;
  const param = (a: Float32Array, shape: number[]) => T.keep(T.parameter(T.tensor(a, shape), 'p'));
  const x = param(w.x, [N, C]);
  const gate = param(rowsOf(w.gate, C, from, f), [f, C]), up = param(rowsOf(w.up, C, from, f), [f, C]), down = param(colsOf(w.down, C, F, from, f), [C, f]);
  // tensor parallel: y = down(swiglu(gate x, up x)), the partial sums of the rows reduced
  const res = T.tidy(() => {
    const xi = copyToGroup(x, g);
    const h = T.swiglu(T.linear(xi, gate), T.linear(xi, up)); // [N, f]
    const y = reduceFromGroup(T.linear(h, down), g); // [N, C]
    const loss = T.sumAll(T.mul(y, y));
    const gathered = gatherColumns(scatterColumns(gatherColumns(h, g, fc), g, fc), g, fc).toFloat32();
    T.backward(loss);
    return { loss: loss.item(), gathered };
  });
  const out = { loss: res.loss, dx: x.grad!.toFloat32(), dGate: gate.grad!.toFloat32(), dUp: up.grad!.toFloat32(), dDown: down.grad!.toFloat32(), gathered: res.gathered };
  // sequence parallel: each rank holds its rows of x; gather rows before the MLP, reduce-scatter after
  const rc = rowCounts(ctx.size), r0 = rc.slice(0, ctx.rank).reduce((a, b) => a + b, 0);
  const xs = param(rowsOf(w.x, C, r0, rc[ctx.rank]!), [rc[ctx.rank]!, C]);
  for (const p of [gate, up, down]) p.grad = null;
  const sp = T.tidy(() => {
    const xa = gatherRows(xs, g, rc);
    const h = T.swiglu(T.linear(xa, gate), T.linear(xa, up));
    const y = reduceScatterRows(T.linear(h, down), g, rc); // my rows of the sum
    const local = T.sumAll(T.mul(y, y));
    T.backward(local);
    return g.allReduce(Float32Array.of(local.item()))[0]!;
  });
  return { ...out, spLoss: sp, spDx: xs.grad!.toFloat32() };
}
