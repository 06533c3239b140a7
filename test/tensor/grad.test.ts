/**
 * Every op's gradient against central finite differences, on the js reference backend.
 * loss = sum(out * r) with a fixed random r, accumulated in float64; each difference divides by the
 * step actually taken (the float32-rounded x + eps minus x - eps). The check is
 * max |analytic - numeric| <= tol * max |numeric| with tol ~1e-3 per op: a mean over the wrong
 * count, a biased/unbiased mix-up or a gradient zeroed for small inputs is an error of several
 * percent of the gradient's scale, and fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { assertCloseToScale, randomArray } from '../helpers.js';
import { makeInputs, opCases } from './cases.js';

const be = new JsBackend();
T.setBackend(be);

for (const c of opCases) {
  test(`grad ${c.name}`, () => {
    const xs = makeInputs(c, be, 7);
    // loss = sum(out * r) with a fixed random r, so every output element matters.
    const out0 = T.noGrad(() => c.fn(xs, be));
    const r = randomArray(out0.size, 99);
    out0.dispose();
    const lossOf = () =>
      T.noGrad(() =>
        T.tidy(() => {
          const o = c.fn(xs, be).toFloat32();
          let s = 0;
          for (let i = 0; i < o.length; i++) s += o[i]! * r[i]!;
          return s;
        }),
      );
    T.tidy(() => {
      const out = c.fn(xs, be);
      const loss = T.sumAll(T.mul(out, T.tensor(r, out.shape, 'f32', be)));
      T.backward(loss);
    });
    const eps = c.fdEps ?? 1e-2;
    const tol = c.fdTol ?? 1e-3;
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      if (!x.requiresGrad) continue;
      assert.ok(x.grad, `${c.name}: input ${i} got no gradient`);
      const analytic = x.grad.toFloat32();
      const base = x.toFloat32();
      const numeric = new Float32Array(base.length);
      for (let j = 0; j < base.length; j++) {
        const v = base.slice();
        v[j] = base[j]! + eps;
        const hi = v[j]!;
        x.assign(v);
        const up = lossOf();
        v[j] = base[j]! - eps;
        const lo = v[j]!;
        x.assign(v);
        const down = lossOf();
        numeric[j] = (up - down) / (hi - lo);
      }
      x.assign(base);
      if (process.env.SKYMOE_FD_REPORT) {
        let e = 0, sc = 0;
        for (let j = 0; j < numeric.length; j++) [e, sc] = [Math.max(e, Math.abs(analytic[j]! - numeric[j]!)), Math.max(sc, Math.abs(numeric[j]!))];
        console.log(`FD ${c.name} input ${i}: ${(e / sc).toExponential(2)} of scale ${sc.toExponential(2)}`);
      }
      assertCloseToScale(analytic, numeric, `${c.name}: d/d input ${i}`, tol);
    }
    for (const x of xs) x.dispose();
  });
}

test('no leak: the op cases free everything they allocate', () => {
  const before = be.heap.stats().inUse;
  for (const c of opCases) {
    const xs = makeInputs(c, be, 3);
    T.tidy(() => {
      const out = c.fn(xs, be);
      T.backward(T.sumAll(T.mul(out, out)));
    });
    T.tidy(() => {
      c.fn(xs, be); // a forward whose graph is never used
    });
    for (const x of xs) x.dispose();
  }
  assert.equal(be.heap.stats().inUse, before);
});
