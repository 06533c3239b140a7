/** Every op, forward and backward, on every backend against the js reference. */
import { test } from 'node:test';
import { JsBackend } from '../../src/backend/js/index.js';
import type { Backend } from '../../src/backend/backend.js';
import * as T from '../../src/tensor/index.js';
import { allBackends, assertClose, randomArray, tryCreate } from '../helpers.js';
import { makeInputs, opCases, type OpCase } from './cases.js';

function run(c: OpCase, be: Backend) {
  T.setBackend(be);
  const xs = makeInputs(c, be, 11);
  const result = T.tidy(() => {
    const out = c.fn(xs, be);
    const r = T.tensor(randomArray(out.size, 5), out.shape, 'f32', be);
    T.backward(T.sumAll(T.mul(out, r)));
    return out.toFloat32();
  });
  const grads = xs.map((x) => (x.requiresGrad ? x.grad!.toFloat32() : null));
  for (const x of xs) x.dispose();
  return { out: result, grads };
}

const ref = new JsBackend();
for (const bc of allBackends()) {
  if (bc.label === 'js') continue;
  test(`ops on ${bc.label} match js`, async (t) => {
    const be = await tryCreate(bc);
    if (!be) return t.skip(`${bc.label} not available`);
    try {
      for (const c of opCases) {
        const want = run(c, ref);
        const got = run(c, be);
        assertClose(got.out, want.out, `${bc.label} ${c.name} forward`, 1e-4, 1e-5);
        got.grads.forEach((g, i) => {
          if (g) assertClose(g, want.grads[i]!, `${bc.label} ${c.name} grad ${i}`, 1e-3, 1e-4);
        });
      }
    } finally {
      await be.dispose();
    }
  });
}
