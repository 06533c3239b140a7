/** Shared test helpers: the backends every op test runs on, comparisons, finite differences. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { Backend } from '../src/backend/backend.js';
import { createBackend } from '../src/backend/index.js';
import { JsBackend } from '../src/backend/js/index.js';
import { type NativeIsa, createNativeBackend, nativeInfo } from '../src/backend/native/index.js';

export interface BackendCase {
  label: string;
  create: () => Promise<Backend>;
}

/** js (the reference), wasm with 1 and 2 threads, native when it is built. */
export function allBackends(): BackendCase[] {
  const cases: BackendCase[] = [
    { label: 'js', create: async () => new JsBackend() },
    { label: 'wasm/1', create: () => createBackend({ name: 'wasm', threads: 1 }) },
    { label: 'wasm/2', create: () => createBackend({ name: 'wasm', threads: 2 }) },
  ];
  if (process.env.SKYMOE_TEST_NATIVE !== '0') {
    cases.push({ label: 'native/2', create: () => createBackend({ name: 'native', threads: 2 }) });
  }
  return cases;
}

/**
 * The native backend forced to each instruction set this CPU runs, with 1 and 2 threads: every code
 * path of the native kernels. Empty when the addon is not built (or SKYMOE_TEST_NATIVE=0).
 */
export function nativeIsaCases(): BackendCase[] {
  if (process.env.SKYMOE_TEST_NATIVE === '0' || !nativeInfo().available) return [];
  const cases: BackendCase[] = [];
  for (const isa of ['avx512', 'avx2', 'generic'] as NativeIsa[]) {
    try {
      void createNativeBackend({ isa }).dispose();
    } catch {
      continue; // this CPU lacks it
    }
    for (const threads of [1, 2]) cases.push({ label: `native ${isa}/${threads}`, create: async () => createNativeBackend({ isa, threads }) });
  }
  return cases;
}

/** Create a backend, or undefined when it is not available on this machine (native unbuilt). */
export async function tryCreate(c: BackendCase): Promise<Backend | undefined> {
  try {
    return await c.create();
  } catch (e) {
    if (c.label.startsWith('native') && /not built|not available/.test(String(e))) return undefined;
    throw e;
  }
}

/** Deterministic pseudo-random floats in [-1, 1). */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/**
 * |a - b| <= atol + rtol * |b| elementwise, with a message naming the first bad index. Where the
 * expected value is not finite (+-Infinity or NaN) the actual value must be exactly the same
 * (Object.is: NaN equals NaN, Infinity only Infinity): a tolerance means nothing there.
 */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol = 1e-4, atol = 1e-5): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (!Object.is(a, e)) assert.fail(`${what}: at ${i}: ${a} vs ${e} (non-finite values must match exactly)`);
      continue;
    }
    const err = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (err > worstErr) {
      worstErr = err;
      worst = i;
    }
  }
  if (worst >= 0) assert.fail(`${what}: mismatch at ${worst}: ${actual[worst]} vs ${expected[worst]} (rtol ${rtol}, atol ${atol})`);
}

/**
 * max |a - b| <= tol * scale, with scale = max |b| (or 1 if b is all zero): for gradients and
 * other vectors whose small entries carry no more absolute precision than their large ones.
 */
export function assertCloseToScale(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol: number): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    if (!Number.isFinite(e)) assert.fail(`${what}: expected value ${e} at ${i} is not finite`);
    scale = Math.max(scale, Math.abs(e));
  }
  if (scale === 0) scale = 1;
  let worst = -1, worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= tol * scale)) {
      if (Number.isNaN(err)) assert.fail(`${what}: ${actual[i]} at ${i} vs ${expected[i]}`);
      if (err > worstErr) [worst, worstErr] = [i, err];
    }
  }
  if (worst >= 0) assert.fail(`${what}: mismatch at ${worst}: ${actual[worst]} vs ${expected[worst]}, error ${(worstErr / scale).toExponential(2)} of the scale ${scale.toExponential(3)} (tolerance ${tol})`);
}

/**
 * A work directory for a test file, with SKYMOE_CACHE pointed into it while its tests run (the
 * token cache of training runs); removed, and the variable restored, after them.
 */
export function tempRoot(prefix: string): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const oldCache = process.env.SKYMOE_CACHE;
  before(() => (process.env.SKYMOE_CACHE = join(root, 'cache')));
  after(() => {
    rmSync(root, { recursive: true, force: true });
    if (oldCache === undefined) delete process.env.SKYMOE_CACHE;
    else process.env.SKYMOE_CACHE = oldCache;
  });
  return root;
}
