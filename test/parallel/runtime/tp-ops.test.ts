/** Differentiable collectives: a tensor-parallel (and sequence-parallel) MLP over 1-3 ranks equals the whole MLP on one, values and gradients. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createJsBackend } from '../../../src/backend/js/index.js';
import * as T from '../../../src/tensor/index.js';
import { runRanks } from '../../../src/parallel/runtime/ranks.js';
import { C, F, fCounts, N, rowCounts, type TpResult, weights } from './tp-rank.js';

function reference() {
  T.setBackend(createJsBackend());
  const w = weights();
  const x = T.parameter(T.tensor(w.x, [N, C]), 'x'), gate = T.parameter(T.tensor(w.gate, [F, C]), 'g'), up = T.parameter(T.tensor(w.up, [F, C]), 'u'), down = T.parameter(T.tensor(w.down, [C, F]), 'd');
  const h = T.swiglu(T.linear(x, gate), T.linear(x, up));
  const y = T.linear(h, down);
  const loss = T.sumAll(T.mul(y, y));
  T.backward(loss);
  return { loss: loss.item(), h: h.toFloat32(), dx: x.grad!.toFloat32(), dGate: gate.grad!.toFloat32(), dUp: up.grad!.toFloat32(), dDown: down.grad!.toFloat32() };
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

for (const size of [1, 2, 3]) {
  test(`tensor- and sequence-parallel MLP over ${size} rank(s) (uneven columns and rows) equals the whole MLP: loss and every gradient`, { timeout: 60_000 }, async () => {
    const ref = reference();
    const res = await runRanks<null, TpResult>({ size, entry: new URL('./tp-rank.js', import.meta.url), data: null, backend: 'js' });
    const fc = fCounts(size), rc = rowCounts(size);
    let f0 = 0, r0 = 0;
    for (let r = 0; r < size; r++) {
      const o = res[r]!, f = fc[r]!;
      close([o.loss], [ref.loss], `rank ${r} loss`);
      close(o.dx, ref.dx, `rank ${r} dx (copyToGroup's backward all-reduce)`);
      close(o.dGate, ref.dGate.slice(f0 * C, (f0 + f) * C), `rank ${r} d gate rows`);
      close(o.dUp, ref.dUp.slice(f0 * C, (f0 + f) * C), `rank ${r} d up rows`);
      const dDown = new Float32Array(C * f);
      for (let i = 0; i < C; i++) dDown.set(ref.dDown.subarray(i * F + f0, i * F + f0 + f), i * f);
      close(o.dDown, dDown, `rank ${r} d down columns`);
      close(o.gathered, ref.h, `rank ${r} gatherColumns(scatterColumns(h))`);
      close([o.spLoss], [ref.loss], `rank ${r} sequence-parallel loss`);
      close(o.spDx, ref.dx.slice(r0 * C, (r0 + rc[r]!) * C), `rank ${r} sequence-parallel dx rows`);
      f0 += f;
      r0 += rc[r]!;
    }
  });
}

test('expert-parallel all-to-all of rows (uneven and empty splits): what arrives and the gradient that goes back, against a serial reference', { timeout: 60_000 }, async () => {
  const { SEND, H, rowValue, weight } = await import('./a2a-rank.js');
  const res = await runRanks<null, import('./a2a-rank.js').A2aResult>({ size: 3, entry: new URL('./a2a-rank.js', import.meta.url), data: null, backend: 'js' });
  // serial: rank j receives, from each source r in order, r's rows destined to j (r's rows are grouped by destination)
  const start = (r: number, j: number) => SEND[r]!.slice(0, j).reduce((a, b) => a + b, 0);
  const dx: number[][] = SEND.map((row) => Array(row.reduce((a, b) => a + b, 0) * H).fill(0));
  for (let j = 0; j < 3; j++) {
    const want: number[] = [];
    let i = 0;
    for (let r = 0; r < 3; r++) {
      for (let k = 0; k < SEND[r]![j]!; k++, i++) {
        for (let c = 0; c < H; c++) {
          want.push(rowValue(r, start(r, j) + k, c));
          dx[r]![(start(r, j) + k) * H + c] = weight(j, i, c); // d(sum y*w)/dx = w at the row's destination
        }
      }
    }
    assert.deepEqual([...res[j]!.received], want, `rank ${j} received`);
    assert.deepEqual(res[j]!.counts, [0, 1, 2].map((r) => Array.from({ length: j + 1 }, (_, e) => r * 10 + e)), `rank ${j} count vectors`);
  }
  for (let r = 0; r < 3; r++) assert.deepEqual([...res[r]!.dx], dx[r], `rank ${r} gradient`);
});
