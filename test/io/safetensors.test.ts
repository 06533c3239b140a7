import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  DTYPE_BYTES,
  decodeFloatBytes,
  encodeBytes,
  openSafetensors,
  SafetensorsError,
  type StorageDType,
  writeSafetensors,
} from '../../src/io/index.js';
import { assertSafetensorsError, concatBytes, f32Bytes, tempDir, writeHandMade } from './fixtures.js';

const { dir, cleanup } = tempDir();
after(cleanup);

const FLOATS: StorageDType[] = ['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];
const INTS: StorageDType[] = ['I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];

function ramp(n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);
}

test('round trip for every dtype, with metadata, shapes of rank 0..3 and an empty tensor', () => {
  const path = join(dir, 'all.safetensors');
  const tensors = [
    ...FLOATS.map((dtype, k) => ({ name: `f.${dtype}`, dtype, shape: [3, 2, 2], data: ramp(12, 0.37 + k) })),
    ...INTS.map((dtype) => ({ name: `i.${dtype}`, dtype, shape: [4], data: Int32Array.from(dtype === 'BOOL' ? [0, 1, 1, 0] : dtype === 'U8' ? [0, 7, 200, 255] : [-3, 0, 5, 100]) })),
    { name: 'scalar', dtype: 'F32' as const, shape: [], data: new Float32Array([42]) },
    { name: 'empty', dtype: 'BF16' as const, shape: [0, 4], data: new Float32Array(0) },
    { name: 'big.i64', dtype: 'I64' as const, shape: [2], data: new BigInt64Array([2n ** 62n, -(2n ** 40n)]) },
    { name: 'raw.e4m3', dtype: 'F8_E4M3' as const, shape: [2], data: new Uint8Array([0x38, 0x7e]) },
  ];
  writeSafetensors(path, tensors, { format: 'pt', note: 'é ✓' });
  const r = openSafetensors(path);
  try {
    assert.deepEqual(r.metadata, { format: 'pt', note: 'é ✓' });
    assert.deepEqual(r.names(), tensors.map((t) => t.name));
    for (const t of tensors) {
      const info = r.info(t.name);
      assert.deepEqual(info, { dtype: t.dtype, shape: [...t.shape], byteLength: t.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[t.dtype] });
      if (t.data instanceof Float32Array) {
        // Expected: the values quantized once by the codec.
        const want = decodeFloatBytes(t.dtype, encodeBytes(t.dtype, t.data));
        assert.deepEqual(r.readF32(t.name), want, t.name);
      }
      if (t.data instanceof Int32Array) assert.deepEqual(r.readInt(t.name), t.data, t.name);
    }
    assert.deepEqual(r.readF32('raw.e4m3'), new Float32Array([1, 448]));
    assert.deepEqual(r.readRaw('raw.e4m3'), new Uint8Array([0x38, 0x7e]));
    assert.deepEqual(r.readI64('big.i64'), new BigInt64Array([2n ** 62n, -(2n ** 40n)]));
    assert.deepEqual(r.readI64('i.I16'), new BigInt64Array([-3n, 0n, 5n, 100n]));
    assertSafetensorsError(() => r.readInt('big.i64'), path, /tensor "big.i64": value 4611686018427387904 at index 0 is not an int32; use readI64/);
    assertSafetensorsError(() => r.readF32('i.I32'), path, /readF32 needs a float dtype, the tensor is I32/);
    assertSafetensorsError(() => r.readInt('f.F32'), path, /readInt needs an integer dtype/);
    assertSafetensorsError(() => r.readF32('nope'), path, /tensor "nope": no such tensor in this file/);
    assertSafetensorsError(() => r.info('nope'), path, /no such tensor/);
  } finally {
    r.close();
  }
  assertSafetensorsError(() => r.names() && r.readRaw('scalar'), path, /reader is closed/);
});

test('header is 8-byte aligned and space padded; data starts right after it', () => {
  const path = join(dir, 'layout.safetensors');
  writeSafetensors(path, [{ name: 'a', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  const header = bytes.subarray(8, 8 + n).toString('utf8');
  assert.match(header, /^\{.*\} *$/);
  assert.deepEqual(JSON.parse(header), { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
  assert.deepEqual([...bytes.subarray(8 + n)], [...f32Bytes([1, 2])]);
});

test('reads a file written by hand, byte by byte (independent of the writer)', () => {
  const path = join(dir, 'hand.safetensors');
  // bf16 1.0 = 0x3f80, -2.0 = 0xc000; f16 0.5 = 0x3800; e5m2 1.0 = 0x3c; i64 -7; e4m3 -448 = 0xfe.
  const bf16 = new Uint8Array([0x80, 0x3f, 0x00, 0xc0]);
  const f16 = new Uint8Array([0x00, 0x38]);
  const e5 = new Uint8Array([0x3c]);
  const i64 = new Uint8Array([0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const e4 = new Uint8Array([0xfe]);
  const f32 = f32Bytes([3.5]);
  // Header order differs from data order, and the header is padded with spaces.
  const header = {
    i64: { dtype: 'I64', shape: [1], data_offsets: [5, 13] },
    __metadata__: { format: 'pt' },
    bf16: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] },
    f16: { dtype: 'F16', shape: [1, 1], data_offsets: [13, 15] },
    e5: { dtype: 'F8_E5M2', shape: [1], data_offsets: [4, 5] },
    e4: { dtype: 'F8_E4M3', shape: [1], data_offsets: [15, 16] },
    f32: { dtype: 'F32', shape: [], data_offsets: [16, 20] },
  };
  writeHandMade(path, header, concatBytes(bf16, e5, i64, f16, e4, f32), { pad: 13 });
  const r = openSafetensors(path);
  assert.deepEqual(r.names(), ['bf16', 'e5', 'i64', 'f16', 'e4', 'f32']);
  assert.deepEqual(r.metadata, { format: 'pt' });
  assert.deepEqual(r.readF32('bf16'), new Float32Array([1, -2]));
  assert.deepEqual(r.readF32('f16'), new Float32Array([0.5]));
  assert.deepEqual(r.info('f16'), { dtype: 'F16', shape: [1, 1], byteLength: 2 });
  assert.deepEqual(r.readF32('e5'), new Float32Array([1]));
  assert.deepEqual(r.readF32('e4'), new Float32Array([-448]));
  assert.deepEqual(r.readF32('f32'), new Float32Array([3.5]));
  assert.deepEqual(r.readInt('i64'), new Int32Array([-7]));
  r.close();
});

test('large tensors stream through chunks (more than one 8 MB chunk) and come back exact', () => {
  const path = join(dir, 'large.safetensors');
  const n = 3_000_001;
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 100);
  let calls = 0;
  writeSafetensors(path, [{ name: 'w', dtype: 'BF16', shape: [n], data: () => data }, { name: 'x', dtype: 'F32', shape: [n], data }], undefined, {
    onProgress: (w, total) => {
      calls++;
      assert.ok(w <= total);
    },
  });
  assert.ok(calls >= 3);
  const r = openSafetensors(path);
  assert.deepEqual(r.readF32('x'), data);
  assert.deepEqual(r.readF32('w'), decodeFloatBytes('BF16', encodeBytes('BF16', data)));
  r.close();
});

test('writer validation: each fault is a SafetensorsError naming the file and tensor', () => {
  const path = join(dir, 'bad-write.safetensors');
  const f = new Float32Array(4);
  const cases: [Parameters<typeof writeSafetensors>[1], RegExp][] = [
    [[{ name: 'a', dtype: 'F32', shape: [4], data: f }, { name: 'a', dtype: 'F32', shape: [4], data: f }], /tensor "a": duplicate tensor name/],
    [[{ name: '', dtype: 'F32', shape: [4], data: f }], /invalid tensor name/],
    [[{ name: '__metadata__', dtype: 'F32', shape: [4], data: f }], /invalid tensor name/],
    [[{ name: 'a', dtype: 'F4' as StorageDType, shape: [4], data: f }], /tensor "a": unsupported dtype "F4"/],
    [[{ name: 'a', dtype: 'F32', shape: [-4], data: f }], /shape must be an array of non-negative integers/],
    [[{ name: 'a', dtype: 'F32', shape: [5], data: f }], /data has 4 values, shape \[5\] needs 5/],
    [[{ name: 'a', dtype: 'I32', shape: [4], data: f }], /a Float32Array cannot be stored as I32/],
    [[{ name: 'a', dtype: 'BF16', shape: [4], data: new Int32Array(4) }], /a Int32Array cannot be stored as BF16/],
    [[{ name: 'a', dtype: 'F16', shape: [4], data: new Uint8Array(7) }], /raw data has 7 bytes, F16 \[4\] needs 8/],
    [[{ name: 'a', dtype: 'I8', shape: [2], data: new Int32Array([1, 300]) }], /tensor "a": value 300 at index 1 does not fit I8/],
    [[{ name: 'a', dtype: 'F32', shape: [4], data: () => new Float32Array(3) }], /data has 3 values/],
  ];
  for (const [tensors, fault] of cases) assertSafetensorsError(() => writeSafetensors(path, tensors), path, fault);
  assertSafetensorsError(() => writeSafetensors(path, [], { a: 1 as unknown as string }), path, /metadata\["a"\] is not a string/);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('bad-write')), [], 'no file and no temp left behind');
});

test('tensor named like an Object.prototype key is just a name', () => {
  const path = join(dir, 'proto.safetensors');
  writeSafetensors(path, [
    { name: '__proto__', dtype: 'F32', shape: [1], data: new Float32Array([1]) },
    { name: 'constructor', dtype: 'F32', shape: [1], data: new Float32Array([2]) },
  ]);
  const r = openSafetensors(path);
  assert.deepEqual(r.names(), ['__proto__', 'constructor']);
  assert.deepEqual(r.readF32('__proto__'), new Float32Array([1]));
  assert.ok(!r.has('toString'));
  r.close();
});

test('an unsupported but real dtype (U16) is rejected with a clear message', () => {
  const path = writeHandMade(join(dir, 'u16.safetensors'), { a: { dtype: 'U16', shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2));
  const e = assertSafetensorsError(() => openSafetensors(path), path, /tensor "a": unsupported dtype "U16" \(supported: F64, F32/);
  assert.equal(e.tensor, 'a');
  assert.equal(e.path, path);
  assert.ok(e instanceof SafetensorsError);
});
