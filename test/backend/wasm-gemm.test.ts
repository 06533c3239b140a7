/**
 * The wasm GEMM kernels (1 and 2 threads) against a float64 triple loop: every transpose combo,
 * edge tiles (odd sizes, m/n/k = 1, sizes across the MC/KC/NC block boundaries), batches with
 * broadcast strides, beta = 1; grouped matmul in all three modes with empty groups; and the
 * thread pool's error path.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { GroupedMode } from '../../src/backend/backend.js';
import { type WasmBackend, createWasmBackend } from '../../src/backend/wasm/index.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

function randomArray(n: number, next: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = next();
  return a;
}

/** c (+)= op(a) op(b) for one matrix; a, b, c at element offsets. */
function refMatmul(a: Float32Array, ao: number, b: Float32Array, bo: number, c: Float64Array, co: number,
  m: number, k: number, n: number, transA: boolean, transB: boolean, beta: number): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[ao + p * m + i]! : a[ao + i * k + p]!;
        const bv = transB ? b[bo + j * k + p]! : b[bo + p * n + j]!;
        s += av * bv;
      }
      c[co + i * n + j] = s + beta * c[co + i * n + j]!;
    }
  }
}

function assertClose(got: Float32Array, want: Float64Array, what: string): void {
  assert.equal(got.length, want.length, what);
  let scale = 1;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / scale;
    if (!(err <= 1e-4)) assert.fail(`${what}: element ${i}: got ${got[i]}, want ${want[i]}`);
  }
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 1], [1, 37, 45], [1, 300, 130], [45, 37, 1], [130, 300, 1], [5, 1, 9], [2, 3, 2],
  [4, 8, 8], [2, 20, 13], [6, 1030, 9], [13, 29, 31], [16, 40, 17], [7, 300, 530], [97, 300, 9], [100, 257, 520], [3, 5, 600], [130, 20, 3],
];

for (const threads of [1, 2]) {
  describe(`wasm gemm, threads=${threads}`, () => {
    let be: WasmBackend;
    before(async () => {
      be = (await createWasmBackend({ threads })) as WasmBackend;
    });
    after(async () => {
      await be.dispose();
    });

    function checkMatmul(m: number, k: number, n: number, transA: boolean, transB: boolean, beta: 0 | 1,
      batch = 1, broadcast: 'none' | 'a' | 'b' = 'none', seed = 1): void {
      const next = rng(seed + m * 7 + k * 13 + n * 17);
      const sA = broadcast === 'a' ? 0 : m * k;
      const sB = broadcast === 'b' ? 0 : k * n;
      const sC = m * n;
      const a = randomArray(Math.max(1, sA * batch, m * k), next);
      const b = randomArray(Math.max(1, sB * batch, k * n), next);
      const c0 = randomArray(sC * batch, next);
      const want = Float64Array.from(c0);
      for (let i = 0; i < batch; i++) refMatmul(a, i * sA, b, i * sB, want, i * sC, m, k, n, transA, transB, beta);
      const pa = be.alloc(a.byteLength), pb = be.alloc(b.byteLength), pc = be.alloc(c0.byteLength);
      be.write(pa, a);
      be.write(pb, b);
      be.write(pc, c0);
      be.kernels.matmul(pa, pb, pc, m, k, n, transA, transB, batch, sA, sB, sC, beta);
      const got = be.readF32(pc, c0.length);
      be.free(pa);
      be.free(pb);
      be.free(pc);
      assertClose(got, want, `matmul m=${m} k=${k} n=${n} tA=${transA} tB=${transB} beta=${beta} batch=${batch} bc=${broadcast}`);
    }

    test('matmul: every transpose combo, edge shapes, beta 0 and 1', () => {
      for (const [m, k, n] of SHAPES) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            checkMatmul(m, k, n, transA, transB, 0);
            checkMatmul(m, k, n, transA, transB, 1);
          }
        }
      }
    });

    test('matmul: k = 0 writes zeros (beta 0) and keeps C (beta 1)', () => {
      checkMatmul(5, 0, 7, false, false, 0);
      checkMatmul(5, 0, 7, false, false, 1);
    });

    test('matmul: batched, with broadcast strides', () => {
      for (const [batch, broadcast] of [[3, 'none'], [3, 'a'], [3, 'b'], [9, 'b'], [8, 'a']] as const) {
        checkMatmul(17, 33, 21, false, true, 0, batch, broadcast);
        checkMatmul(6, 9, 40, true, false, 1, batch, broadcast);
        checkMatmul(1, 33, 21, false, false, 0, batch, broadcast);
      }
    });

    function checkGrouped(mode: GroupedMode, offsets: number[], m: number, k: number, beta: 0 | 1): void {
      const next = rng(mode * 101 + m + k * 3 + offsets.length);
      const G = offsets.length - 1;
      const N = offsets[G]!;
      let aLen: number, bLen: number, cLen: number;
      if (mode === GroupedMode.XWt) [aLen, bLen, cLen] = [N * k, G * m * k, N * m];
      else if (mode === GroupedMode.XW) [aLen, bLen, cLen] = [N * m, G * m * k, N * k];
      else [aLen, bLen, cLen] = [N * m, N * k, G * m * k];
      const a = randomArray(Math.max(aLen, 1), next), b = randomArray(Math.max(bLen, 1), next);
      const c0 = randomArray(cLen, next);
      const want = Float64Array.from(c0);
      for (let g = 0; g < G; g++) {
        const r0 = offsets[g]!, rows = offsets[g + 1]! - r0;
        if (mode === GroupedMode.XWt) refMatmul(a, r0 * k, b, g * m * k, want, r0 * m, rows, k, m, false, true, beta);
        else if (mode === GroupedMode.XW) refMatmul(a, r0 * m, b, g * m * k, want, r0 * k, rows, m, k, false, false, beta);
        else refMatmul(a, r0 * m, b, r0 * k, want, g * m * k, m, rows, k, true, false, beta);
      }
      const pa = be.alloc(a.byteLength), pb = be.alloc(b.byteLength), pc = be.alloc(c0.byteLength);
      be.write(pa, a);
      be.write(pb, b);
      be.write(pc, c0);
      be.kernels.groupedMatmul(mode, pa, pb, pc, Int32Array.from(offsets), m, k, beta);
      const got = be.readF32(pc, cLen);
      be.free(pa);
      be.free(pb);
      be.free(pc);
      assertClose(got, want, `groupedMatmul mode=${mode} offsets=${offsets.join(',')} m=${m} k=${k} beta=${beta}`);
    }

    test('groupedMatmul: all modes, empty groups, beta 0 and 1', () => {
      for (const mode of [GroupedMode.XWt, GroupedMode.XW, GroupedMode.AtB]) {
        for (const beta of [0, 1] as const) {
          checkGrouped(mode, [0, 3, 3, 10, 11, 11, 27], 13, 19, beta);
          checkGrouped(mode, [0, 0, 100, 230], 40, 300, beta);
          checkGrouped(mode, [0, 0], 5, 6, beta);
        }
      }
    });

    test('a kernel that traps reports an error and leaves the pool usable', () => {
      for (let tid = 0; tid < threads; tid++) {
        assert.throws(() => be.runner.run('trap', [tid]), /unreachable/);
      }
      assert.throws(() => be.runner.run('no_such_kernel', []), /no kernel k_no_such_kernel/);
      checkMatmul(9, 10, 11, false, false, 0);
    });
  });
}

test('a 2-thread wasm backend works inside a worker thread', async () => {
  const url = new URL('../../src/backend/wasm/index.js', import.meta.url).href;
  const code = `
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(url)}).then(async ({ createWasmBackend }) => {
      const be = await createWasmBackend({ threads: 2 });
      const a = be.alloc(16), c = be.alloc(16);
      be.write(a, new Float32Array([1, 2, 3, 4]));
      be.kernels.matmul(a, a, c, 2, 2, 2, false, false, 1, 0, 0, 0, 0);
      parentPort.postMessage(Array.from(be.readF32(c, 4)));
      await be.dispose();
    });`;
  const w = new Worker(code, { eval: true });
  const result = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  assert.deepEqual(result, [7, 10, 15, 22]);
  await w.terminate();
});
