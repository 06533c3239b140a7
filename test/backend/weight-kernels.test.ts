/**
 * Kernels over weights in their storage dtype (f32, bf16, f16, f8_e4m3; per-tensor and per-row
 * scales) on every backend and every native ISA against the js reference: linearW on the streaming
 * path (1-16 rows) and the packed-GEMM path (more rows), groupedLinearW with empty, small and large
 * groups and mixed dtypes, gatherRowsW and dequantize. Weights are random bit patterns, so f8
 * subnormals and the saturating values +-448 are included; the js reference itself is checked
 * against the independent codecs of io/dtypes.ts. Native weights are also read from a mapped file
 * at unaligned offsets.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Backend, WEIGHT_DTYPE_BYTES, WeightDType, WeightTable } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { createWasmBackend } from '../../src/backend/wasm/index.js';
import { type NativeIsa, createNativeBackend, nativeInfo } from '../../src/backend/native/index.js';
import { decodeBf16, decodeE4M3, decodeF16 } from '../../src/io/dtypes.js';
import { assertClose, assertCloseToScale, randomArray } from '../helpers.js';
import { DTYPES, NAME, f32In, linearOn, makeCase, place } from './weight-cases.js';

let seed = 1011;
const rand = (n: number, scale = 1) => randomArray(Math.max(1, n), seed++, scale);

const ref = new JsBackend();

test('the js reference decodes weights as the io codecs do (bf16, f16, f8_e4m3 incl. subnormals and 448)', () => {
  for (const dtype of [WeightDType.BF16, WeightDType.F16, WeightDType.F8E4M3]) {
    const c = makeCase(dtype, 9, 23, 'none');
    const w = place(ref, c.bytes, dtype, 1, null, 1);
    const out = ref.alloc(9 * 23 * 4);
    ref.kernels.dequantize(w.ref, out, 9, 23);
    const got = ref.readF32(out, 9 * 23);
    const want = dtype === WeightDType.F8E4M3 ? decodeE4M3(c.bytes) : (dtype === WeightDType.BF16 ? decodeBf16 : decodeF16)(new Uint16Array(c.bytes.slice().buffer));
    assert.deepEqual(Array.from(got), Array.from(want), NAME[dtype]);
    ref.free(out), w.free();
  }
  // +-448 and the smallest subnormal 2^-9 are there
  const f8 = ref.alloc(64);
  ref.writeBytes(f8, Uint8Array.of(0x7e, 0xfe, 0x01, 0x81));
  const o = ref.alloc(16);
  ref.kernels.dequantize({ ptr: f8, dtype: WeightDType.F8E4M3, scale: 1, rowScale: null }, o, 1, 4);
  assert.deepEqual(Array.from(ref.readF32(o, 4)), [448, -448, 2 ** -9, -(2 ** -9)]);
});

/** Every check against the js reference, on one backend. */
function checks(be: Backend): void {
  // linearW: streaming (m <= 16) and packed GEMM (m > 16) paths, odd sizes, every scaling
  for (const dtype of DTYPES)
    for (const [m, k, n] of [[1, 1, 1], [1, 33, 13], [3, 16, 5], [4, 300, 70], [5, 7, 9], [16, 64, 33], [17, 40, 31], [40, 300, 70]] as const)
      for (const scaling of ['none', 'tensor', 'row', 'both'] as const) {
        const c = makeCase(dtype, n, k, scaling);
        const x = rand(m * k);
        const want = linearOn(ref, c, x, m, k, n);
        const got = linearOn(be, c, x, m, k, n, WEIGHT_DTYPE_BYTES[dtype] === 1 ? 3 : 2);
        for (let i = 0; i < m; i++) assertCloseToScale(got.subarray(i * n, (i + 1) * n), want.subarray(i * n, (i + 1) * n), `linearW ${NAME[dtype]} m=${m} k=${k} n=${n} ${scaling} row ${i}`, 2e-5);
      }
  // groupedLinearW: empty groups, 1-3 rows (one streaming pass over all experts), a group of 20 rows (GEMM), mixed dtypes
  for (const offsets of [[0, 0, 1, 3, 3, 6], [0, 2, 2, 22, 23], [0, 1, 2, 3, 4, 5, 6, 7, 8]]) {
    const G = offsets.length - 1, k = 37, n = 29, N = offsets[G]!;
    const cases = Array.from({ length: G }, (_, g) => makeCase(DTYPES[g % 4]!, n, k, g % 2 ? 'row' : 'tensor'));
    const x = rand(N * k);
    const run = (b: Backend) => {
      const ws = cases.map((c) => place(b, c.bytes, c.dtype, c.scale, c.rowScale));
      const xp = f32In(b, x), yp = f32In(b, rand(N * n));
      b.kernels.groupedLinearW(xp, new WeightTable(ws.map((w) => w.ref)), yp, Int32Array.from(offsets), n, k);
      const y = b.readF32(yp, N * n);
      b.free(xp), b.free(yp), ws.forEach((w) => w.free());
      return y;
    };
    const want = run(ref), got = run(be);
    for (let i = 0; i < N; i++) assertCloseToScale(got.subarray(i * n, (i + 1) * n), want.subarray(i * n, (i + 1) * n), `groupedLinearW offsets ${offsets} row ${i}`, 2e-5);
  }
  // gatherRowsW (repeated ids) and dequantize
  for (const dtype of DTYPES) {
    const rows = 11, cols = 45;
    const c = makeCase(dtype, rows, cols, 'both');
    const run = (b: Backend) => {
      const w = place(b, c.bytes, c.dtype, c.scale, c.rowScale, 1);
      const ids = b.alloc(28);
      b.write(ids, Int32Array.of(3, 0, 10, 3, 7, 1, 10));
      const g = f32In(b, rand(7 * cols)), d = f32In(b, rand(rows * cols));
      b.kernels.gatherRowsW(w.ref, rows, ids, g, 7, cols);
      b.kernels.dequantize(w.ref, d, rows, cols);
      const out = { gathered: b.readF32(g, 7 * cols), dense: b.readF32(d, rows * cols) };
      b.free(ids), b.free(g), b.free(d), w.free();
      return out;
    };
    const want = run(ref), got = run(be);
    assertClose(got.gathered, want.gathered, `gatherRowsW ${NAME[dtype]}`, 1e-6, 0);
    assertClose(got.dense, want.dense, `dequantize ${NAME[dtype]}`, 1e-6, 0);
  }
}

for (const threads of [1, 2])
  test(`wasm weight kernels (SIMD128), ${threads} thread(s), match js`, async () => {
    const be = await createWasmBackend({ threads });
    try {
      checks(be);
    } finally {
      await be.dispose();
    }
  });

const native = nativeInfo();
const isas: NativeIsa[] = native.available ? (['generic', 'avx2', 'avx512'] as const).filter((isa) => {
  try {
    void createNativeBackend({ isa }).dispose();
    return true;
  } catch {
    return false;
  }
}) : [];

describe('native weight kernels', { skip: native.available ? false : native.reason }, () => {
  for (const isa of isas)
    for (const threads of [1, 2])
      test(`${isa}, ${threads} thread(s), match js`, async () => {
        const be = createNativeBackend({ isa, threads });
        try {
          checks(be);
        } finally {
          await be.dispose();
        }
      });

  const dir = mkdtempSync(join(tmpdir(), 'skymoe-wk-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('weights read in place from a mapped file, at unaligned offsets; pointers outside heap and mappings are refused', async () => {
    const be = createNativeBackend({ threads: 2 });
    try {
      const [m, k, n] = [2, 45, 19];
      const x = rand(m * k);
      for (const dtype of DTYPES) {
        const c = makeCase(dtype, n, k, 'tensor');
        const file = join(dir, `w${dtype}.bin`);
        const pad = 5;
        writeFileSync(file, Buffer.concat([Buffer.alloc(pad, 0xee), c.bytes]));
        const map = be.mapFile!(file);
        assert.equal(map.bytes, pad + c.bytes.length);
        const xp = f32In(be, x), yp = f32In(be, rand(m * n));
        be.kernels.linearW(xp, { ptr: map.ptr + pad, dtype, scale: c.scale, rowScale: null }, yp, m, k, n);
        const got = be.readF32(yp, m * n);
        assert.ok(be.heap.stats().inUse < 4096, 'the weight took no heap space');
        const want = linearOn(ref, c, x, m, k, n);
        assertCloseToScale(got, want, `mapped ${NAME[dtype]}`, 2e-5);
        // one element past the end of the mapping is outside every region
        assert.throws(() => be.kernels.linearW(xp, { ptr: map.ptr + pad + 1, dtype, scale: 1, rowScale: null }, yp, m, k, n + (dtype === WeightDType.F8E4M3 ? 1 : 0) + 1), /outside the heap and the mapped files/);
        be.free(xp), be.free(yp);
        map.unmap();
        map.unmap(); // idempotent
        assert.throws(() => be.kernels.dequantize({ ptr: map.ptr, dtype, scale: 1, rowScale: null }, be.alloc(64), 1, 1), /outside the heap and the mapped files/);
      }
      assert.throws(() => be.mapFile!(join(dir, 'missing.bin')), /missing\.bin: cannot open for mapping/);
    } finally {
      await be.dispose();
    }
  });
});

test('wasm: per-row scales stored above 2 GiB in the heap are read (the "no row scales" sentinel is not a sign bit)', async () => {
  const be = await createWasmBackend({ threads: 2 });
  try {
    const filler = be.alloc(2 ** 31 + 2 ** 20); // untouched: the heap grows, its pages stay uncommitted
    const c = makeCase(WeightDType.BF16, 6, 10, 'row');
    const w = place(be, c.bytes, c.dtype, c.scale, c.rowScale);
    assert.ok(w.ref.rowScale! >= 2 ** 31, `row scales at ${w.ref.rowScale}`);
    const x = rand(2 * 10);
    const xp = f32In(be, x), yp = f32In(be, rand(12));
    be.kernels.linearW(xp, w.ref, yp, 2, 10, 6);
    assertCloseToScale(be.readF32(yp, 12), linearOn(ref, c, x, 2, 10, 6), 'linearW with row scales above 2 GiB', 2e-5);
    const d = f32In(be, rand(60));
    be.kernels.dequantize(w.ref, d, 6, 10);
    const dr = ref.alloc(240);
    const wr = place(ref, c.bytes, c.dtype, c.scale, c.rowScale);
    ref.kernels.dequantize(wr.ref, dr, 6, 10);
    assertClose(be.readF32(d, 60), ref.readF32(dr, 60), 'dequantize with row scales above 2 GiB', 1e-6, 0);
    be.free(filler);
  } finally {
    await be.dispose();
  }
});
