/**
 * Checkpoint dtypes and the float element codecs: Float32Array <-> F16, BF16, F8_E4M3, F8_E5M2.
 * Whole arrays to and from little-endian file bytes, integers included: dtype-bytes.ts.
 *
 * Encoders take float32 values (scalar helpers round their argument to float32 first) and round
 * to nearest, ties to even. NaN payloads survive a decode/encode round trip because the array
 * codecs move bits, never NaN numbers, through JS.
 *
 * Formats (sign bit, exponent bits, mantissa bits, bias):
 * - F16 (IEEE binary16): 1/5/10, bias 15, inf and NaN at exponent 31.
 * - BF16: 1/8/7, bias 127, the upper half of a float32.
 * - F8_E4M3 (`float8_e4m3fn`, OCP FP8 E4M3): 1/4/3, bias 7, no infinities, NaN only at S.1111.111,
 *   so the largest finite value is S.1111.110 = 448.
 * - F8_E5M2: 1/5/2, bias 15, IEEE-like: inf at S.11111.00, NaN at S.11111.{01,10,11}.
 */

/** A tensor element type as spelled in safetensors headers. */
export type StorageDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each storage dtype. */
export const DTYPE_BYTES: Readonly<Record<StorageDType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

/**
 * True when `s` names a supported storage dtype.
 * @example isStorageDType('BF16') // true; isStorageDType('F4') // false
 */
export function isStorageDType(s: unknown): s is StorageDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

/**
 * True for the floating-point storage dtypes.
 * @example isFloatDType('F8_E4M3') // true; isFloatDType('I32') // false
 */
export function isFloatDType(d: StorageDType): boolean {
  return FLOAT_DTYPES.has(d);
}

const scalarF32 = new Float32Array(1);
const scalarU32 = new Uint32Array(scalarF32.buffer);

function f32Bits(x: number): number {
  scalarF32[0] = x;
  return scalarU32[0]!;
}

function bitsF32(b: number): number {
  scalarU32[0] = b;
  return scalarF32[0]!;
}

/**
 * Round a finite float32 magnitude (bits without the sign) to a float format with `m` mantissa
 * bits and exponent bias `bias`, ties to even. Returns the magnitude code, which may exceed the
 * format's largest finite code; the caller decides overflow. In the target's normal range this is
 * a rebias of the exponent field plus a rounding add, whose carry moves into the next binade on
 * its own; below it, the significand is shifted into the subnormal grid.
 */
function roundMagnitude(abs: number, m: number, bias: number): number {
  const shift = 23 - m;
  if (abs >= (128 - bias) << 23) return (abs - ((127 - bias) << 23) + ((1 << (shift - 1)) - 1) + ((abs >>> shift) & 1)) >>> shift;
  const exp = abs >>> 23;
  const sig = exp === 0 ? abs : (abs & 0x7fffff) | 0x800000; // value = sig * 2^(ef - 23)
  const ef = exp === 0 ? -126 : exp - 127;
  const drop = shift + (1 - bias - ef);
  if (drop > 25) return 0; // below half the smallest subnormal
  const q = sig >>> drop;
  const rem = sig & ((1 << drop) - 1);
  const half = 1 << (drop - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
}

/** Decode a small-float code to float32 bits (finite codes only; the caller handles inf/NaN). */
function smallFiniteToF32Bits(code: number, e: number, m: number, bias: number): number {
  const sign = (code >>> (e + m)) << 31;
  const ex = (code >>> m) & ((1 << e) - 1);
  let mant = code & ((1 << m) - 1);
  if (ex === 0) {
    if (mant === 0) return sign >>> 0;
    let x = 1 - bias;
    while ((mant & (1 << m)) === 0) {
      mant <<= 1;
      x--;
    }
    return (sign | ((x + 127) << 23) | ((mant & ((1 << m) - 1)) << (23 - m))) >>> 0;
  }
  return (sign | ((ex - bias + 127) << 23) | (mant << (23 - m))) >>> 0;
}

// ---- F16 ----

let f16Table: Uint32Array | undefined;
function f16ToF32Table(): Uint32Array {
  if (f16Table) return f16Table;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00) t[h] = (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
    else t[h] = smallFiniteToF32Bits(h, 5, 10, 15);
  }
  return (f16Table = t);
}

function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const abs = b & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    const payload = (abs >>> 13) & 0x3ff;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  const code = roundMagnitude(abs, 10, 15);
  return sign | (code >= 0x7c00 ? 0x7c00 : code);
}

/**
 * Float32 value -> IEEE half bits (ties to even, overflow to infinity).
 * @example f32ToF16Bits(1) // 0x3c00
 */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16(f32Bits(x));
}

/**
 * IEEE half bits -> number.
 * @example f16BitsToF32(0x3c00) // 1
 */
export function f16BitsToF32(h: number): number {
  return bitsF32(f16ToF32Table()[h & 0xffff]!);
}

/**
 * Encode float32 values as F16 bit patterns.
 * @example encodeF16(new Float32Array([1, -2])) // Uint16Array [0x3c00, 0xc000]
 */
export function encodeF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

/**
 * Decode F16 bit patterns to float32.
 * @example decodeF16(new Uint16Array([0x3c00])) // Float32Array [1]
 */
export function decodeF16(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = f16ToF32Table();
  const o = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) o[i] = t[src[i]!]!;
  return out;
}

// ---- BF16 ----

function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) {
    const hi = b >>> 16;
    return (hi & 0x7f) === 0 ? hi | 0x40 : hi;
  }
  // Round to nearest even on the dropped 16 bits; a carry correctly overflows to infinity.
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/**
 * Float32 value -> bfloat16 bits (ties to even).
 * @example f32ToBf16Bits(1) // 0x3f80
 */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16(f32Bits(x));
}

/**
 * bfloat16 bits -> number.
 * @example bf16BitsToF32(0x3f80) // 1
 */
export function bf16BitsToF32(h: number): number {
  return bitsF32(((h & 0xffff) << 16) >>> 0);
}

/**
 * Encode float32 values as BF16 bit patterns.
 * @example encodeBf16(new Float32Array([1])) // Uint16Array [0x3f80]
 */
export function encodeBf16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16(bits[i]!);
  return out;
}

/**
 * Decode BF16 bit patterns to float32.
 * @example decodeBf16(new Uint16Array([0x3f80])) // Float32Array [1]
 */
export function decodeBf16(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

// ---- F8_E4M3 (float8_e4m3fn) ----

const E4M3_MAX_CODE = 0x7e; // S.1111.110 = 448
const E4M3_NAN = 0x7f;

let e4m3Table: Uint32Array | undefined;
function e4m3ToF32Table(): Uint32Array {
  if (e4m3Table) return e4m3Table;
  const t = new Uint32Array(256);
  for (let c = 0; c < 256; c++) {
    t[c] = (c & 0x7f) === E4M3_NAN ? (((c & 0x80) << 24) | 0x7fc00000) >>> 0 : smallFiniteToF32Bits(c, 4, 3, 7);
  }
  return (e4m3Table = t);
}

/**
 * Saturating encode: magnitudes beyond 448, infinities included, become +-448 rather than NaN
 * (float8_e4m3fn has no infinity; saturation is what FP8 weight and activation quantization wants,
 * since scales are chosen so 448 is the clipping point). NaN becomes S.1111.111.
 */
function f32BitsToE4M3(b: number): number {
  const sign = (b >>> 24) & 0x80;
  const abs = b & 0x7fffffff;
  if (abs > 0x7f800000) return sign | E4M3_NAN;
  if (abs === 0x7f800000) return sign | E4M3_MAX_CODE;
  const code = roundMagnitude(abs, 3, 7);
  return sign | (code > E4M3_MAX_CODE ? E4M3_MAX_CODE : code);
}

/**
 * Float32 value -> float8_e4m3fn bits; out-of-range values saturate to +-448.
 * @example f32ToE4M3Bits(1) // 0x38; f32ToE4M3Bits(1e6) // 0x7e (448)
 */
export function f32ToE4M3Bits(x: number): number {
  return f32BitsToE4M3(f32Bits(x));
}

/**
 * float8_e4m3fn bits -> number.
 * @example e4m3BitsToF32(0x7e) // 448
 */
export function e4m3BitsToF32(c: number): number {
  return bitsF32(e4m3ToF32Table()[c & 0xff]!);
}

/**
 * Encode float32 values as float8_e4m3fn codes (saturating at +-448).
 * @example encodeE4M3(new Float32Array([1, 500])) // Uint8Array [0x38, 0x7e]
 */
export function encodeE4M3(src: Float32Array, out: Uint8Array = new Uint8Array(src.length)): Uint8Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToE4M3(bits[i]!);
  return out;
}

/**
 * Decode float8_e4m3fn codes to float32.
 * @example decodeE4M3(new Uint8Array([0x38])) // Float32Array [1]
 */
export function decodeE4M3(src: Uint8Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = e4m3ToF32Table();
  const o = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) o[i] = t[src[i]!]!;
  return out;
}

// ---- F8_E5M2 ----

let e5m2Table: Uint32Array | undefined;
function e5m2ToF32Table(): Uint32Array {
  if (e5m2Table) return e5m2Table;
  const t = new Uint32Array(256);
  for (let c = 0; c < 256; c++) {
    if ((c & 0x7c) === 0x7c) t[c] = (((c & 0x80) << 24) | 0x7f800000 | ((c & 0x3) << 21)) >>> 0;
    else t[c] = smallFiniteToF32Bits(c, 5, 2, 15);
  }
  return (e5m2Table = t);
}

function f32BitsToE5M2(b: number): number {
  const sign = (b >>> 24) & 0x80;
  const abs = b & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c;
    const payload = (abs >>> 21) & 0x3;
    return sign | 0x7c | (payload === 0 ? 0x2 : payload);
  }
  const code = roundMagnitude(abs, 2, 15);
  return sign | (code >= 0x7c ? 0x7c : code);
}

/**
 * Float32 value -> float8_e5m2 bits (IEEE-like: overflow to infinity).
 * @example f32ToE5M2Bits(1) // 0x3c
 */
export function f32ToE5M2Bits(x: number): number {
  return f32BitsToE5M2(f32Bits(x));
}

/**
 * float8_e5m2 bits -> number.
 * @example e5m2BitsToF32(0x7b) // 57344
 */
export function e5m2BitsToF32(c: number): number {
  return bitsF32(e5m2ToF32Table()[c & 0xff]!);
}

/**
 * Encode float32 values as float8_e5m2 codes.
 * @example encodeE5M2(new Float32Array([1])) // Uint8Array [0x3c]
 */
export function encodeE5M2(src: Float32Array, out: Uint8Array = new Uint8Array(src.length)): Uint8Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToE5M2(bits[i]!);
  return out;
}

/**
 * Decode float8_e5m2 codes to float32.
 * @example decodeE5M2(new Uint8Array([0x3c])) // Float32Array [1]
 */
export function decodeE5M2(src: Uint8Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = e5m2ToF32Table();
  const o = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) o[i] = t[src[i]!]!;
  return out;
}
