/**
 * The kernels of a paged KV cache on every backend: scatterRows (new keys and values into their
 * slots) against the js reference, bit for bit (it is a copy).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend } from '../../src/backend/backend.js';
import { allBackends, randomArray, tryCreate } from '../helpers.js';

const cases = allBackends();

function f32In(be: Backend, data: Float32Array | Int32Array): number {
  const p = be.alloc(Math.max(4, data.byteLength));
  be.write(p, data);
  return p;
}

/** A permutation of [0, n) by a seeded shuffle. */
function permutation(n: number, seed: number): Int32Array {
  const r = randomArray(n, seed);
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(((r[i]! + 1) / 2) * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

for (const c of cases)
  test(`scatterRows on ${c.label}: rows land in their slots, every other slot keeps its bytes`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    try {
      // 300 x 257 floats: above every backend's threshold for splitting over threads
      for (const [slots, n, cols] of [[7, 1, 1], [40, 13, 5], [600, 300, 257]] as const) {
        const ids = permutation(slots, slots).subarray(0, n);
        const src = randomArray(n * cols, 3), before = randomArray(slots * cols, 4);
        const s = f32In(be, src), d = f32In(be, before), ip = f32In(be, ids);
        be.kernels.scatterRows(s, ip, d, n, cols);
        const got: Uint32Array = new Uint32Array(be.readF32(d, slots * cols).buffer);
        const want = new Uint32Array(before.slice().buffer);
        ids.forEach((slot, i) => want.set(new Uint32Array(src.buffer, 4 * i * cols, cols), slot * cols));
        assert.deepEqual(got, want, `slots=${slots} n=${n} cols=${cols}`);
        be.free(s), be.free(d), be.free(ip);
      }
    } finally {
      await be.dispose();
    }
  });
