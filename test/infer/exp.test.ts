/** expNonPositive against Math.exp over the whole range it serves. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expNonPositive } from '../../src/infer/exp.js';
import { Rng } from '../../src/tensor/random.js';

test('expNonPositive is within 6e-16 relative of Math.exp for normal results, 0 below', () => {
  const rng = new Rng(1);
  let worst = 0;
  for (let i = 0; i < 400_000; i++) {
    // Uniform over [-708, 0] and log-uniform near 0, where the reduction's rounding matters most.
    const x = i % 2 ? -708 * rng.float() : -Math.exp(-40 * rng.float());
    worst = Math.max(worst, Math.abs(expNonPositive(x) - Math.exp(x)) / Math.exp(x));
  }
  assert.ok(worst <= 6e-16, `worst relative error ${worst}`);
  for (const x of [0, -0, -Number.MIN_VALUE, -Math.LN2 / 128, -Math.LN2, -1, -708, -709.7]) {
    assert.ok(Math.abs(expNonPositive(x) - Math.exp(x)) <= 6e-16 * Math.exp(x), `x = ${x}`);
  }
  assert.equal(expNonPositive(0), 1);
  for (const x of [-745.2, -1e6, -Infinity, NaN]) assert.equal(expNonPositive(x), 0, `x = ${x}`);
  assert.ok(expNonPositive(-740) > 0 && Math.abs(expNonPositive(-740) - Math.exp(-740)) <= 1e-320, 'subnormal results');
});
