/**
 * Whole arrays to and from the little-endian bytes of a storage dtype (the safetensors byte order,
 * whatever the host's), and range-checked integer conversions for I64/I32/I16/I8/U8/BOOL.
 */
import {
  decodeBf16,
  decodeE4M3,
  decodeE5M2,
  decodeF16,
  DTYPE_BYTES,
  encodeBf16,
  encodeE4M3,
  encodeE5M2,
  encodeF16,
  isFloatDType,
  type StorageDType,
} from './dtypes.js';

/** Is this host little-endian (typed arrays use host order; files are little-endian). */
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---- integers ----

/**
 * Integers -> Int32Array, throwing a RangeError naming the first value that is not an int32.
 * @example toInt32([1, -2]) // Int32Array [1, -2]; toInt32(new BigInt64Array([2n ** 40n])) // throws
 */
export function toInt32(src: ArrayLike<number> | BigInt64Array): Int32Array {
  if (src instanceof Int32Array) return src;
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    const n = typeof v === 'bigint' ? (v >= -2147483648n && v <= 2147483647n ? Number(v) : NaN) : v;
    if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647) throw new RangeError(`value ${String(v)} at index ${i} is not an int32`);
    out[i] = n;
  }
  return out;
}

/**
 * Integers -> BigInt64Array; numbers must be safe integers (|n| <= 2^53 - 1).
 * @example toBigInt64([1, 2 ** 40]) // BigInt64Array [1n, 1099511627776n]
 */
export function toBigInt64(src: ArrayLike<number> | BigInt64Array): BigInt64Array {
  if (src instanceof BigInt64Array) return src;
  const out = new BigInt64Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (!Number.isSafeInteger(v)) throw new RangeError(`value ${v} at index ${i} is not a safe integer`);
    out[i] = BigInt(v);
  }
  return out;
}

/**
 * BigInt64Array -> plain numbers, throwing a RangeError if a value is beyond +-(2^53 - 1).
 * @example bigInt64ToNumbers(new BigInt64Array([5n])) // [5]
 */
export function bigInt64ToNumbers(src: BigInt64Array): number[] {
  const out = new Array<number>(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v > 9007199254740991n || v < -9007199254740991n) throw new RangeError(`value ${v} at index ${i} is not a safe integer`);
    out[i] = Number(v);
  }
  return out;
}

// ---- little-endian byte encoding of whole arrays ----

type Ctor<T> = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number };

/** Reverse each `size`-byte group in place (big-endian hosts only). */
function swapBytes(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** A host-order typed view of little-endian bytes (copied when unaligned or on big-endian hosts). */
function viewLE<T>(bytes: Uint8Array, C: Ctor<T>): T {
  const size = C.BYTES_PER_ELEMENT;
  let b = bytes;
  if (!HOST_LE || b.byteOffset % size !== 0) b = new Uint8Array(bytes);
  if (!HOST_LE) swapBytes(b, size);
  return new C(b.buffer, b.byteOffset, b.length / size);
}

/** Run `fill` on a host-order view of `out`, then make `out` little-endian. */
function writeLE<T>(out: Uint8Array, C: Ctor<T>, fill: (view: T) => void): void {
  const size = C.BYTES_PER_ELEMENT;
  if (HOST_LE && out.byteOffset % size === 0) {
    fill(new C(out.buffer, out.byteOffset, out.length / size));
    return;
  }
  const tmp = new Uint8Array(out.length);
  fill(new C(tmp.buffer, 0, out.length / size));
  if (!HOST_LE) swapBytes(tmp, size);
  out.set(tmp);
}

/** Values a tensor can be encoded from: floats for float dtypes, integers for integer dtypes. */
export type EncodableData = Float32Array | Int32Array | BigInt64Array | readonly number[];

function checkIntRange(dtype: StorageDType, src: Int32Array, lo: number, hi: number): void {
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v < lo || v > hi) throw new RangeError(`value ${v} at index ${i} does not fit ${dtype}`);
  }
}

/**
 * Encode values to little-endian bytes of `dtype`. Float dtypes take a Float32Array; integer
 * dtypes take Int32Array, BigInt64Array or integer numbers (range checked, RangeError otherwise).
 * @example encodeBytes('BF16', new Float32Array([1])) // Uint8Array [0x80, 0x3f]
 */
export function encodeBytes(dtype: StorageDType, src: EncodableData, out?: Uint8Array): Uint8Array {
  const n = src.length;
  const o = out ?? new Uint8Array(n * DTYPE_BYTES[dtype]);
  if (o.length !== n * DTYPE_BYTES[dtype]) throw new RangeError(`encodeBytes: output of ${o.length} bytes for ${n} ${dtype} values`);
  if (isFloatDType(dtype)) {
    if (!(src instanceof Float32Array)) throw new TypeError(`encodeBytes: ${dtype} needs a Float32Array, got ${src.constructor.name}`);
    switch (dtype) {
      case 'F64':
        writeLE(o, Float64Array, (v) => v.set(src));
        break;
      case 'F32':
        writeLE(o, Float32Array, (v) => v.set(src));
        break;
      case 'F16':
        writeLE(o, Uint16Array, (v) => encodeF16(src, v));
        break;
      case 'BF16':
        writeLE(o, Uint16Array, (v) => encodeBf16(src, v));
        break;
      case 'F8_E4M3':
        encodeE4M3(src, o);
        break;
      default:
        encodeE5M2(src, o);
    }
    return o;
  }
  if (src instanceof Float32Array) throw new TypeError(`encodeBytes: ${dtype} needs integers, got a Float32Array`);
  if (dtype === 'I64') {
    const v64 = toBigInt64(src);
    writeLE(o, BigInt64Array, (v) => v.set(v64));
    return o;
  }
  const v32 = toInt32(src);
  switch (dtype) {
    case 'I32':
      writeLE(o, Int32Array, (v) => v.set(v32));
      break;
    case 'I16':
      checkIntRange(dtype, v32, -32768, 32767);
      writeLE(o, Int16Array, (v) => v.set(v32));
      break;
    case 'I8':
      checkIntRange(dtype, v32, -128, 127);
      new Int8Array(o.buffer, o.byteOffset, n).set(v32);
      break;
    case 'U8':
      checkIntRange(dtype, v32, 0, 255);
      o.set(v32);
      break;
    default: // BOOL
      checkIntRange(dtype, v32, 0, 1);
      o.set(v32);
  }
  return o;
}

/**
 * Decode little-endian bytes of a float `dtype` to float32 (F64 is rounded to float32).
 * @example decodeFloatBytes('F16', new Uint8Array([0x00, 0x3c])) // Float32Array [1]
 */
export function decodeFloatBytes(dtype: StorageDType, bytes: Uint8Array, out?: Float32Array): Float32Array {
  const size = DTYPE_BYTES[dtype];
  if (!isFloatDType(dtype)) throw new TypeError(`decodeFloatBytes: ${dtype} is not a float dtype`);
  if (bytes.length % size !== 0) throw new RangeError(`decodeFloatBytes: ${bytes.length} bytes is not a whole number of ${dtype} values`);
  const n = bytes.length / size;
  const o = out ?? new Float32Array(n);
  if (o.length !== n) throw new RangeError(`decodeFloatBytes: output of ${o.length} values for ${n} ${dtype} values`);
  switch (dtype) {
    case 'F64':
      o.set(viewLE(bytes, Float64Array));
      break;
    case 'F32':
      o.set(viewLE(bytes, Float32Array));
      break;
    case 'F16':
      decodeF16(viewLE(bytes, Uint16Array), o);
      break;
    case 'BF16':
      decodeBf16(viewLE(bytes, Uint16Array), o);
      break;
    case 'F8_E4M3':
      decodeE4M3(bytes, o);
      break;
    default:
      decodeE5M2(bytes, o);
  }
  return o;
}

/**
 * Decode little-endian bytes of an integer dtype to Int32Array (I64 values are range checked).
 * @example decodeIntBytes('I64', new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0])) // Int32Array [7]
 */
export function decodeIntBytes(dtype: StorageDType, bytes: Uint8Array): Int32Array {
  if (isFloatDType(dtype)) throw new TypeError(`decodeIntBytes: ${dtype} is not an integer dtype`);
  const size = DTYPE_BYTES[dtype];
  if (bytes.length % size !== 0) throw new RangeError(`decodeIntBytes: ${bytes.length} bytes is not a whole number of ${dtype} values`);
  switch (dtype) {
    case 'I64':
      return toInt32(viewLE(bytes, BigInt64Array));
    case 'I32':
      return Int32Array.from(viewLE(bytes, Int32Array));
    case 'I16':
      return Int32Array.from(viewLE(bytes, Int16Array));
    case 'I8':
      return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length));
    default: // U8, BOOL
      return Int32Array.from(bytes);
  }
}

/**
 * Decode little-endian bytes of any integer dtype to BigInt64Array (lossless for I64).
 * @example decodeI64Bytes('I32', new Uint8Array([255, 255, 255, 255])) // BigInt64Array [-1n]
 */
export function decodeI64Bytes(dtype: StorageDType, bytes: Uint8Array): BigInt64Array {
  if (dtype === 'I64') {
    if (bytes.length % 8 !== 0) throw new RangeError(`decodeI64Bytes: ${bytes.length} bytes is not a whole number of I64 values`);
    return BigInt64Array.from(viewLE(bytes, BigInt64Array));
  }
  const v = decodeIntBytes(dtype, bytes);
  const out = new BigInt64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = BigInt(v[i]!);
  return out;
}
