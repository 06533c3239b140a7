/** The comparison helpers every numerical test leans on: they must fail when they should. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertClose, assertCloseToScale } from './helpers.js';

const fails = (f: () => void, what: string) => assert.throws(f, assert.AssertionError, what);

test('assertClose: non-finite expected values must match exactly', () => {
  for (const [a, e] of [
    [5, Infinity], [-Infinity, Infinity], [Infinity, -Infinity], [0, -Infinity], [NaN, Infinity],
    [1, NaN], [Infinity, NaN], [NaN, 1], [Infinity, 1e30], [-Infinity, -3],
  ] as const) fails(() => assertClose([a], [e], 'x', 1e-4, 1e-5), `${a} vs ${e}`);
  assertClose([Infinity, -Infinity, NaN, 2], [Infinity, -Infinity, NaN, 2], 'x');
});

test('assertClose: tolerances are atol + rtol * |expected|', () => {
  assertClose([1.0001], [1], 'x', 1e-4, 1e-7); // error 1e-4 <= 1e-7 + 1e-4
  fails(() => assertClose([1.0003], [1], 'x', 1e-4, 1e-7), 'relative');
  assertClose([2e-6], [0], 'x', 1e-4, 1e-5);
  fails(() => assertClose([2e-5], [0], 'x', 1e-4, 1e-5), 'absolute near zero');
  fails(() => assertClose([1, 2], [1], 'x'), 'length');
  // The worst element is the one reported.
  assert.throws(() => assertClose([0, 1.5, 9], [0, 1, 1], 'y'), /y: mismatch at 2/);
});

test('assertCloseToScale: error relative to the largest expected magnitude', () => {
  assertCloseToScale([100.05, 0.04], [100, 0], 'g', 1e-3); // 0.05 and 0.04 <= 0.1
  fails(() => assertCloseToScale([100, 0.2], [100, 0], 'g', 1e-3), 'a small entry off by more than tol * scale');
  fails(() => assertCloseToScale([NaN], [1], 'g', 1e-3), 'NaN actual');
  fails(() => assertCloseToScale([1], [Infinity], 'g', 1e-3), 'non-finite expected');
  assertCloseToScale([0.0005], [0], 'g', 1e-3); // all-zero expected: scale 1
  fails(() => assertCloseToScale([0.002], [0], 'g', 1e-3), 'all-zero expected, nonzero actual');
});
