/** Every malformed-file case is a SafetensorsError naming the file and the fault. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openSafetensors } from '../../src/io/index.js';
import { assertSafetensorsError, f32Bytes, handMade, tempDir, writeHandMade } from './fixtures.js';

const { dir, cleanup } = tempDir();
after(cleanup);

let counter = 0;
function file(bytes: Uint8Array | string): string {
  const path = join(dir, `case-${counter++}.safetensors`);
  writeFileSync(path, bytes);
  return path;
}

const ok = (dtype: string, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });

test('files shorter than the 8-byte length prefix', () => {
  for (const n of [0, 1, 7]) {
    const path = file(new Uint8Array(n));
    assertSafetensorsError(() => openSafetensors(path), path, new RegExp(`file is ${n} bytes, shorter than the 8-byte header length`));
  }
});

test('header length past the end of the file or over the 100 MB limit', () => {
  const past = file(handMade({}, new Uint8Array(0), { lengthOverride: 1000n }));
  assertSafetensorsError(() => openSafetensors(past), past, /header length 1000 runs past the end of the file/);
  for (const n of [100n * 1024n * 1024n + 1n, 2n ** 40n, 2n ** 64n - 1n]) {
    const huge = file(handMade({}, new Uint8Array(0), { lengthOverride: n }));
    assertSafetensorsError(() => openSafetensors(huge), huge, new RegExp(`header length ${n} exceeds the 104857600-byte limit`));
  }
});

test('header not UTF-8, not JSON, or not an object', () => {
  const bad = new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20, 0x20]);
  const p0 = file(bad);
  assertSafetensorsError(() => openSafetensors(p0), p0, /header is not valid UTF-8/);
  for (const text of ['{"a": ', 'not json', '', '{"a":1}}']) {
    const path = writeHandMade(join(dir, `json-${counter++}.safetensors`), text, new Uint8Array(0));
    assertSafetensorsError(() => openSafetensors(path), path, /header is not valid JSON/);
  }
  for (const text of ['[]', '3', 'null', '"x"']) {
    const path = writeHandMade(join(dir, `obj-${counter++}.safetensors`), text, new Uint8Array(0));
    assertSafetensorsError(() => openSafetensors(path), path, /header is not a JSON object/);
  }
});

test('bad entries: not an object, missing or unknown dtype', () => {
  const cases: [unknown, RegExp][] = [
    [{ a: 3 }, /tensor "a": entry is not an object/],
    [{ a: { shape: [1], data_offsets: [0, 4] } }, /tensor "a": dtype is missing or not a string/],
    [{ a: ok('F4', [1], [0, 4]) }, /tensor "a": unsupported dtype "F4"/],
    [{ a: ok('f32', [1], [0, 4]) }, /unsupported dtype "f32"/],
    [{ a: ok('__proto__', [1], [0, 4]) }, /unsupported dtype "__proto__"/],
  ];
  for (const [header, fault] of cases) {
    const path = writeHandMade(join(dir, `entry-${counter++}.safetensors`), header, new Uint8Array(4));
    assertSafetensorsError(() => openSafetensors(path), path, fault);
  }
});

test('bad shapes', () => {
  for (const shape of [null, 'x', [-1], [1.5], ['1'], [1, null], { 0: 1 }, [2 ** 53]]) {
    const path = writeHandMade(join(dir, `shape-${counter++}.safetensors`), { a: ok('F32', shape, [0, 4]) }, new Uint8Array(4));
    assertSafetensorsError(() => openSafetensors(path), path, /tensor "a": shape must be an array of non-negative integers/);
  }
});

test('bad data_offsets', () => {
  for (const offs of [undefined, [0], [0, 4, 8], [-1, 3], [0.5, 4], ['0', '4'], '0,4', [0, 2 ** 60]]) {
    const path = writeHandMade(join(dir, `offs-${counter++}.safetensors`), { a: ok('F32', [1], offs) }, new Uint8Array(4));
    assertSafetensorsError(() => openSafetensors(path), path, /tensor "a": data_offsets must be two non-negative integers/);
  }
  const rev = writeHandMade(join(dir, `rev.safetensors`), { a: ok('F32', [0], [4, 0]) }, new Uint8Array(4));
  assertSafetensorsError(() => openSafetensors(rev), rev, /tensor "a": data_offsets \[4, 0\] have begin > end/);
});

test('byte count differs from product(shape) * dtype size (including overflowing shapes)', () => {
  const cases: [unknown, number, RegExp][] = [
    [{ a: ok('F32', [2], [0, 4]) }, 4, /tensor "a": data_offsets \[0, 4\] span 4 bytes but dtype F32 with shape \[2\] needs 8/],
    [{ a: ok('BF16', [3], [0, 4]) }, 4, /needs 6/],
    [{ a: ok('F32', [2 ** 40, 2 ** 40], [0, 4]) }, 4, /needs 4835703278458516698824704/],
    [{ a: ok('F8_E4M3', [0, 5], [0, 1]) }, 1, /needs 0/],
  ];
  for (const [header, n, fault] of cases) {
    const path = writeHandMade(join(dir, `count-${counter++}.safetensors`), header, new Uint8Array(n));
    assertSafetensorsError(() => openSafetensors(path), path, fault);
  }
});

test('offsets out of bounds, overlapping, leaving gaps or trailing bytes', () => {
  const cases: [unknown, number, RegExp][] = [
    [{ a: ok('F32', [1], [0, 4]), b: ok('F32', [1], [4, 8]) }, 6, /tensor "b": data_offsets \[4, 8\] run past the end of the data buffer \(6 bytes\)/],
    [{ a: ok('F32', [2], [0, 8]), b: ok('F32', [1], [4, 8]) }, 8, /tensor "b": data_offsets \[4, 8\] overlap tensor "a"/],
    [{ a: ok('F32', [1], [0, 4]), b: ok('F32', [1], [0, 4]) }, 8, /overlap tensor "a"/],
    [{ a: ok('F32', [1], [0, 4]), b: ok('F32', [1], [8, 12]) }, 12, /tensor "b": data buffer has a gap: bytes \[4, 8\) belong to no tensor/],
    [{ a: ok('F32', [1], [4, 8]) }, 8, /gap: bytes \[0, 4\)/],
    [{ a: ok('F32', [1], [0, 4]) }, 9, /data buffer has 5 trailing bytes \(4..9\) not covered by any tensor/],
    [{}, 3, /3 trailing bytes/],
  ];
  for (const [header, n, fault] of cases) {
    const path = writeHandMade(join(dir, `tile-${counter++}.safetensors`), header, new Uint8Array(n));
    assertSafetensorsError(() => openSafetensors(path), path, fault);
  }
});

test('bad __metadata__', () => {
  for (const meta of [3, ['a'], { a: 1 }, { a: null }, { a: { b: 'c' } }]) {
    const path = writeHandMade(join(dir, `meta-${counter++}.safetensors`), { __metadata__: meta, a: ok('F32', [1], [0, 4]) }, f32Bytes([1]));
    assertSafetensorsError(() => openSafetensors(path), path, /__metadata__/);
  }
});

test('missing file, missing tensor, file truncated after open', () => {
  const missing = join(dir, 'does-not-exist.safetensors');
  assertSafetensorsError(() => openSafetensors(missing), missing, /cannot open \(ENOENT/);
  const path = writeHandMade(join(dir, 'trunc.safetensors'), { a: ok('F32', [2], [0, 8]) }, f32Bytes([1, 2]));
  const r = openSafetensors(path);
  assertSafetensorsError(() => r.readF32('b'), path, /tensor "b": no such tensor in this file/);
  writeFileSync(path, new Uint8Array(10));
  assertSafetensorsError(() => r.readF32('a'), path, /tensor "a": unexpected end of file/);
  r.close();
  const dirPath = dir;
  assertSafetensorsError(() => openSafetensors(dirPath), dirPath, /./);
});
