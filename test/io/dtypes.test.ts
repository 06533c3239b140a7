import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  bf16BitsToF32,
  bigInt64ToNumbers,
  decodeBf16,
  decodeE4M3,
  decodeE5M2,
  decodeF16,
  decodeFloatBytes,
  decodeI64Bytes,
  decodeIntBytes,
  DTYPE_BYTES,
  e4m3BitsToF32,
  e5m2BitsToF32,
  encodeBf16,
  encodeBytes,
  encodeE4M3,
  encodeE5M2,
  encodeF16,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4M3Bits,
  f32ToE5M2Bits,
  f32ToF16Bits,
  isFloatDType,
  isStorageDType,
  type StorageDType,
  toBigInt64,
  toInt32,
} from '../../src/io/index.js';

/**
 * The value a binary float code denotes, from its bit fields (independent of the library):
 * sign, `e` exponent bits, `m` mantissa bits, bias; `ieeeSpecials` false means the fn variant
 * (only all-ones is NaN, no infinities).
 */
function reference(code: number, e: number, m: number, bias: number, ieeeSpecials: boolean): number {
  const sign = Math.floor(code / 2 ** (e + m)) % 2 === 1 ? -1 : 1;
  const ex = Math.floor(code / 2 ** m) % 2 ** e;
  const mant = code % 2 ** m;
  const topExp = 2 ** e - 1;
  if (ieeeSpecials && ex === topExp) return mant === 0 ? sign * Infinity : NaN;
  if (!ieeeSpecials && ex === topExp && mant === 2 ** m - 1) return NaN;
  if (ex === 0) return sign * (mant / 2 ** m) * 2 ** (1 - bias);
  return sign * (1 + mant / 2 ** m) * 2 ** (ex - bias);
}

const FORMATS = {
  F8_E4M3: { bits: 8, e: 4, m: 3, bias: 7, ieee: false, dec: e4m3BitsToF32, enc: f32ToE4M3Bits, encArr: encodeE4M3, decArr: decodeE4M3 },
  F8_E5M2: { bits: 8, e: 5, m: 2, bias: 15, ieee: true, dec: e5m2BitsToF32, enc: f32ToE5M2Bits, encArr: encodeE5M2, decArr: decodeE5M2 },
} as const;

function sameValue(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

for (const [name, f] of Object.entries(FORMATS)) {
  test(`${name}: every code decodes to the value its bit fields define and re-encodes to itself`, () => {
    const all = new Uint8Array(256).map((_, i) => i);
    const decoded = f.decArr(all);
    const reencoded = f.encArr(decoded);
    for (let c = 0; c < 256; c++) {
      const want = reference(c, f.e, f.m, f.bias, f.ieee);
      assert.ok(sameValue(f.dec(c), want), `${name} code 0x${c.toString(16)}: ${f.dec(c)} vs ${want}`);
      assert.ok(sameValue(decoded[c]!, want), `${name} array decode 0x${c.toString(16)}`);
      assert.equal(reencoded[c], c, `${name} array round trip of 0x${c.toString(16)}`);
      if (!Number.isNaN(want)) assert.equal(f.enc(want), c, `${name} scalar round trip of 0x${c.toString(16)} (${want})`);
    }
  });

  test(`${name}: encode picks the nearest code (brute force over all codes, ties to even)`, () => {
    const finite: [number, number][] = [];
    for (let c = 0; c < 256; c++) {
      const v = reference(c, f.e, f.m, f.bias, f.ieee);
      if (Number.isFinite(v)) finite.push([c, v]);
    }
    // E5M2 overflows to infinity as if it were the next binade's first value (2^16);
    // E4M3 (fn) saturates, so nothing lies beyond 448.
    if (f.ieee) {
      finite.push([0x7c, 2 ** 16], [0xfc, -(2 ** 16)]);
    }
    const nearest = (x: number): number => {
      let best = -1;
      let bestErr = Infinity;
      for (const [c, v] of finite) {
        const err = Math.abs(v - x);
        if (err < bestErr || (err === bestErr && (c & 1) === 0 && (best & 1) === 1)) {
          best = c;
          bestErr = err;
        }
      }
      return best;
    };
    const check = (x: number) => {
      const got = f.enc(x);
      const want = nearest(Math.fround(x));
      // Zero magnitudes: the sign follows the input.
      if (f.dec(want) === 0) return (got & 0x7f) === 0 && (got & 0x80) === (Object.is(Math.sign(x), -0) || x < 0 ? 0x80 : 0);
      return got === want;
    };
    const range = Math.fround(f.ieee ? 2 * 57344 : 2 * 448);
    fc.assert(fc.property(fc.float({ min: -range, max: range, noNaN: true }), check), { numRuns: 3000 });
    fc.assert(fc.property(fc.float({ min: Math.fround(-1e-2), max: Math.fround(1e-2), noNaN: true }), check), { numRuns: 2000 });
    // Every midpoint between adjacent codes and its neighbours one float32 ulp away.
    const pos = finite.filter(([c]) => c < 0x80).sort((a, b) => a[1] - b[1]);
    for (let i = 0; i + 1 < pos.length; i++) {
      const mid = Math.fround((pos[i]![1] + pos[i + 1]![1]) / 2);
      for (const x of [mid, -mid, Math.fround(mid * (1 + 2 ** -20)), Math.fround(mid * (1 - 2 ** -20))]) {
        assert.ok(check(x), `${name}: encode(${x}) = 0x${f.enc(x).toString(16)}, nearest is 0x${nearest(x).toString(16)}`);
      }
    }
  });
}

test('F8_E4M3 saturates to +-448 (no infinity) and keeps NaN as S.1111.111', () => {
  assert.equal(f32ToE4M3Bits(1e9), 0x7e);
  assert.equal(f32ToE4M3Bits(-Infinity), 0xfe);
  assert.equal(f32ToE4M3Bits(Infinity), 0x7e);
  assert.equal(f32ToE4M3Bits(NaN), 0x7f);
  assert.equal(e4m3BitsToF32(0x7e), 448);
  assert.equal(e4m3BitsToF32(0x01), 2 ** -9);
  assert.equal(f32ToE5M2Bits(1e9), 0x7c);
  assert.equal(e5m2BitsToF32(0x7c), Infinity);
});

function refF16(h: number): number {
  return reference(h, 5, 10, 15, true);
}
function refBf16(h: number): number {
  return reference(h, 8, 7, 127, true);
}

for (const [name, ref, dec, enc, decArr, encArr] of [
  ['F16', refF16, f16BitsToF32, f32ToF16Bits, decodeF16, encodeF16],
  ['BF16', refBf16, bf16BitsToF32, f32ToBf16Bits, decodeBf16, encodeBf16],
] as const) {
  test(`${name}: all 65536 patterns decode per their bit fields and round-trip (NaN payloads too)`, () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const decoded = decArr(all);
    const back = encArr(decoded);
    for (let h = 0; h < 65536; h++) {
      const want = ref(h);
      assert.ok(sameValue(decoded[h]!, want), `${name} 0x${h.toString(16)}: ${decoded[h]} vs ${want}`);
      assert.ok(sameValue(dec(h), want));
      assert.equal(back[h], h, `${name} round trip of 0x${h.toString(16)}`);
    }
  });

  test(`${name}: encode of random float32 values is the nearest pattern (ties to even)`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        const x = new Float32Array(new Uint32Array([bits]).buffer)[0]!;
        const c = enc(x);
        if (Number.isNaN(x)) return Number.isNaN(dec(c));
        if (!Number.isFinite(x)) return dec(c) === x;
        // Infinity counts as the first value of the next binade (2^16 for F16, 2^128 for BF16).
        const infCode = name === 'F16' ? 0x7c00 : 0x7f80;
        const val = (k: number) => ((k & 0x7fff) === infCode ? Math.sign(dec(k)) * (name === 'F16' ? 2 ** 16 : 2 ** 128) : dec(k));
        const err = Math.abs(val(c) - x);
        for (const d of [-1, 1]) {
          const n = c + d;
          if (n < 0 || n > 0xffff || (n ^ c) & 0x8000 || (n & 0x7fff) > infCode) continue;
          const nerr = Math.abs(val(n) - x);
          if (nerr < err || (nerr === err && (c & 1) === 1)) return false;
        }
        return true;
      }),
      { numRuns: 20000 },
    );
  });
}

test('F16 and BF16 known values', () => {
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(65520), 0x7c00); // halfway to 2^16 rounds to even = inf
  assert.equal(f32ToF16Bits(65519.99), 0x7bff);
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // tie to even: 0
  assert.equal(f32ToF16Bits(1.5 * 2 ** -25), 0x0001);
  assert.equal(f32ToF16Bits(-0), 0x8000);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie to even
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(f32ToBf16Bits(3.4028234663852886e38), 0x7f80);
});

test('byte sizes and dtype predicates', () => {
  const want: Record<StorageDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
  assert.deepEqual({ ...DTYPE_BYTES }, want);
  assert.ok(isStorageDType('F8_E4M3') && !isStorageDType('F4') && !isStorageDType('toString') && !isStorageDType(3));
  assert.ok(isFloatDType('BF16') && !isFloatDType('I64'));
});

test('encodeBytes / decodeFloatBytes round-trip representable values for every float dtype, unaligned too', () => {
  for (const dtype of ['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'] as const) {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true, min: -400, max: 400 }), { maxLength: 40 }), fc.integer({ min: 0, max: 7 }), (xs, shift) => {
        // Representable values: whatever one encode/decode pass yields.
        const once = decodeFloatBytes(dtype, encodeBytes(dtype, Float32Array.from(xs)));
        const buf = new Uint8Array(once.length * DTYPE_BYTES[dtype] + shift);
        const bytes = encodeBytes(dtype, once, buf.subarray(shift));
        const twice = decodeFloatBytes(dtype, bytes);
        return twice.every((v, i) => Object.is(v, once[i]));
      }),
      { numRuns: 200 },
    );
  }
  assert.deepEqual([...encodeBytes('BF16', new Float32Array([1]))], [0x80, 0x3f]);
  assert.deepEqual([...encodeBytes('F16', new Float32Array([1]))], [0x00, 0x3c]);
  assert.deepEqual([...decodeFloatBytes('F64', new Uint8Array(new Float64Array([0.1]).buffer))], [Math.fround(0.1)]);
});

test('integer codecs: round trips and range checks', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -2147483648, max: 2147483647 })), (xs) => {
      const i32 = Int32Array.from(xs);
      const viaI32 = decodeIntBytes('I32', encodeBytes('I32', i32));
      const viaI64 = decodeIntBytes('I64', encodeBytes('I64', i32));
      return viaI32.every((v, i) => v === xs[i]) && viaI64.every((v, i) => v === xs[i]);
    }),
  );
  fc.assert(
    fc.property(fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })), (xs) => {
      const b = BigInt64Array.from(xs);
      return decodeI64Bytes('I64', encodeBytes('I64', b)).every((v, i) => v === xs[i]);
    }),
  );
  assert.deepEqual([...encodeBytes('I64', [-1])], [255, 255, 255, 255, 255, 255, 255, 255]);
  assert.deepEqual([...decodeI64Bytes('I32', new Uint8Array([255, 255, 255, 255]))], [-1n]);
  assert.deepEqual([...decodeIntBytes('I16', new Uint8Array([0x00, 0x80]))], [-32768]);
  assert.deepEqual([...decodeIntBytes('I8', new Uint8Array([0xff]))], [-1]);
  assert.deepEqual([...decodeIntBytes('U8', new Uint8Array([0xff]))], [255]);
  assert.throws(() => toInt32(new BigInt64Array([2n ** 31n])), /2147483648 at index 0 is not an int32/);
  assert.throws(() => toInt32([1.5]), RangeError);
  assert.throws(() => toBigInt64([2 ** 60]), /not a safe integer/);
  assert.throws(() => bigInt64ToNumbers(new BigInt64Array([2n ** 60n])), /not a safe integer/);
  assert.deepEqual(bigInt64ToNumbers(new BigInt64Array([-5n])), [-5]);
  assert.throws(() => decodeIntBytes('I64', new Uint8Array(new BigInt64Array([2n ** 40n]).buffer)), RangeError);
  assert.throws(() => encodeBytes('I8', [200]), /does not fit I8/);
  assert.throws(() => encodeBytes('BOOL', [2]), /does not fit BOOL/);
  assert.throws(() => encodeBytes('U8', [-1]), /does not fit U8/);
  assert.throws(() => encodeBytes('F32', new Int32Array(1)), /needs a Float32Array/);
  assert.throws(() => encodeBytes('I32', new Float32Array(1)), /needs integers/);
});

test('encode is monotone for every float format', () => {
  const encDec: [string, (x: number) => number][] = [
    ['F16', (x) => f16BitsToF32(f32ToF16Bits(x))],
    ['BF16', (x) => bf16BitsToF32(f32ToBf16Bits(x))],
    ['F8_E4M3', (x) => e4m3BitsToF32(f32ToE4M3Bits(x))],
    ['F8_E5M2', (x) => e5m2BitsToF32(f32ToE5M2Bits(x))],
  ];
  for (const [, q] of encDec) {
    fc.assert(fc.property(fc.float({ noNaN: true }), fc.float({ noNaN: true }), (a, b) => (a <= b ? q(a) <= q(b) : q(a) >= q(b))), { numRuns: 2000 });
  }
});
