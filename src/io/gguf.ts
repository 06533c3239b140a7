/**
 * GGUF (llama.cpp's file format, version 3): the value types, the ggml tensor types skymoe writes
 * (F32, F16, BF16, Q8_0) with their block codecs, and a reader that parses and validates a file:
 * header, metadata, tensor infos, and tensor data decoded to float32.
 *
 * Layout: "GGUF" u32 version u64 n_tensors u64 n_kv, then n_kv (key string, u32 type, value),
 * then n_tensors (name string, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64
 * offset), padding to `general.alignment` (default 32), then the data, each tensor at its offset
 * (a multiple of the alignment). Strings are u64 length + UTF-8 bytes; all little-endian.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from './dtypes.js';

export class GgufError extends Error {
  override name = 'GgufError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types. */
export const enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** The ggml tensor types skymoe writes and reads. */
export const GGML_TYPES = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;
const TYPE_NAMES = new Map<number, GgmlTypeName>(Object.entries(GGML_TYPES).map(([k, v]) => [v, k as GgmlTypeName]));

/** Q8_0: blocks of 32 values, an f16 scale d then 32 int8, value = d * q. */
export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

/** Bytes of `n` values (n a multiple of the block size for Q8_0). */
export function ggmlBytes(type: GgmlTypeName, n: number): number {
  switch (type) {
    case 'F32': return 4 * n;
    case 'F16':
    case 'BF16': return 2 * n;
    case 'Q8_0': return (n / Q8_0_BLOCK) * Q8_0_BYTES;
  }
}

/** llama.cpp's reference Q8_0 quantizer (quantize_row_q8_0_ref): d = amax / 127, q = round(x / d). */
export function quantizeQ8_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / Q8_0_BLOCK) * Q8_0_BYTES)): Uint8Array {
  if (x.length % Q8_0_BLOCK !== 0) throw new RangeError(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${x.length}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const f = new Float32Array(1);
  for (let b = 0; b < x.length / Q8_0_BLOCK; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(x[b * Q8_0_BLOCK + i]!));
    f[0] = amax / 127;
    const d = f[0]!;
    f[0] = d ? 1 / d : 0;
    const id = f[0]!;
    view.setUint16(b * Q8_0_BYTES, f32ToF16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      f[0] = x[b * Q8_0_BLOCK + i]! * id; // the float32 product, as C computes it
      const r = f[0]!;
      out[b * Q8_0_BYTES + 2 + i] = (r < 0 ? -Math.round(-r) : Math.round(r)) & 0xff; // roundf: halves away from zero
    }
  }
  return out;
}

/** Decode `n` values of a ggml type from bytes. */
export function decodeGgml(type: GgmlTypeName, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (type) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(v.getUint16(2 * i, true));
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(v.getUint16(2 * i, true));
      break;
    case 'Q8_0':
      for (let b = 0; b < n / Q8_0_BLOCK; b++) {
        const d = f16BitsToF32(v.getUint16(b * Q8_0_BYTES, true));
        for (let i = 0; i < Q8_0_BLOCK; i++) out[b * Q8_0_BLOCK + i] = d * v.getInt8(b * Q8_0_BYTES + 2 + i);
      }
      break;
  }
  return out;
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] is the innermost (row length). */
  ne: number[];
  type: GgmlTypeName;
  /** Offset from the start of the data section. */
  offset: number;
  bytes: number;
}

/** A GGUF file opened for reading: metadata and tensor infos parsed and checked; data read on demand. */
export class GgufReader {
  private constructor(
    readonly path: string,
    private fd: number | undefined,
    readonly version: number,
    readonly metadata: ReadonlyMap<string, GgufValue>,
    readonly tensors: readonly GgufTensorInfo[],
    readonly dataStart: number,
    readonly alignment: number,
  ) {}

  static open(path: string): GgufReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new GgufError(path, `cannot open (${(e as Error).message})`);
    }
    try {
      const size = fstatSync(fd).size;
      // The header, metadata and infos are read through a growing window of the file.
      let buf = Buffer.alloc(0);
      let pos = 0;
      const need = (n: number) => {
        if (pos + n > size) throw new GgufError(path, `truncated: needs ${pos + n} bytes, the file has ${size}`);
        if (pos + n > buf.length) {
          const next = Buffer.alloc(Math.min(size, Math.max(pos + n, 2 * buf.length, 1 << 16)));
          buf.copy(next);
          try {
            readSync(fd, next, buf.length, next.length - buf.length, buf.length);
          } catch (e) {
            throw new GgufError(path, `read failed at byte ${buf.length} (${(e as Error).message})`);
          }
          buf = next;
        }
      };
      const u32 = () => (need(4), (pos += 4), buf.readUInt32LE(pos - 4));
      const u64 = () => {
        need(8);
        pos += 8;
        const v = buf.readBigUInt64LE(pos - 8);
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(path, `a count or size ${v} at byte ${pos - 8} is not a safe integer`);
        return Number(v);
      };
      const str = () => {
        const n = u64();
        if (n > 1 << 20) throw new GgufError(path, `a string of ${n} bytes at byte ${pos - 8} (more than 1 MiB)`);
        need(n);
        pos += n;
        return buf.toString('utf8', pos - n, pos);
      };
      const value = (type: number, depth = 0): GgufValue => {
        switch (type) {
          case GgufValueType.UINT8: return (need(1), (pos += 1), buf.readUInt8(pos - 1));
          case GgufValueType.INT8: return (need(1), (pos += 1), buf.readInt8(pos - 1));
          case GgufValueType.UINT16: return (need(2), (pos += 2), buf.readUInt16LE(pos - 2));
          case GgufValueType.INT16: return (need(2), (pos += 2), buf.readInt16LE(pos - 2));
          case GgufValueType.UINT32: return u32();
          case GgufValueType.INT32: return (need(4), (pos += 4), buf.readInt32LE(pos - 4));
          case GgufValueType.FLOAT32: return (need(4), (pos += 4), buf.readFloatLE(pos - 4));
          case GgufValueType.BOOL: {
            need(1);
            const b = buf.readUInt8(pos++);
            if (b > 1) throw new GgufError(path, `a bool of value ${b} at byte ${pos - 1}`);
            return b === 1;
          }
          case GgufValueType.STRING: return str();
          case GgufValueType.ARRAY: {
            if (depth > 2) throw new GgufError(path, 'arrays nested deeper than 2');
            const et = u32();
            const n = u64();
            if (n > 1 << 24) throw new GgufError(path, `an array of ${n} elements (more than 2^24)`);
            const out: GgufValue[] = [];
            for (let i = 0; i < n; i++) out.push(value(et, depth + 1));
            return out;
          }
          case GgufValueType.UINT64: return (need(8), (pos += 8), buf.readBigUInt64LE(pos - 8));
          case GgufValueType.INT64: return (need(8), (pos += 8), buf.readBigInt64LE(pos - 8));
          case GgufValueType.FLOAT64: return (need(8), (pos += 8), buf.readDoubleLE(pos - 8));
          default: throw new GgufError(path, `unknown metadata value type ${type} at byte ${pos - 4}`);
        }
      };
      if (u32() !== GGUF_MAGIC) throw new GgufError(path, 'not a GGUF file (bad magic)');
      const version = u32();
      if (version !== 2 && version !== 3) throw new GgufError(path, `GGUF version ${version} (this reader reads 2 and 3)`);
      const nTensors = u64(), nKv = u64();
      const metadata = new Map<string, GgufValue>();
      for (let i = 0; i < nKv; i++) {
        const key = str();
        if (metadata.has(key)) throw new GgufError(path, `metadata key '${key}' appears twice`);
        metadata.set(key, value(u32()));
      }
      const alignment = Number(metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT);
      if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) throw new GgufError(path, `general.alignment ${alignment} is not a power of two`);
      const tensors: GgufTensorInfo[] = [];
      const names = new Set<string>();
      for (let i = 0; i < nTensors; i++) {
        const name = str();
        if (names.has(name)) throw new GgufError(path, `tensor '${name}' appears twice`);
        names.add(name);
        const nd = u32();
        if (nd < 1 || nd > 4) throw new GgufError(path, `tensor '${name}' has ${nd} dimensions`);
        const ne = Array.from({ length: nd }, () => u64());
        const t = u32();
        const type = TYPE_NAMES.get(t);
        if (!type) throw new GgufError(path, `tensor '${name}' has ggml type ${t} (this reader knows ${[...TYPE_NAMES.values()].join(', ')})`);
        const offset = u64();
        const n = ne.reduce((a, b) => a * b, 1);
        if (type === 'Q8_0' && ne[0]! % Q8_0_BLOCK !== 0) throw new GgufError(path, `tensor '${name}' is Q8_0 with rows of ${ne[0]} (not a multiple of ${Q8_0_BLOCK})`);
        if (offset % alignment !== 0) throw new GgufError(path, `tensor '${name}' at offset ${offset}, not a multiple of the alignment ${alignment}`);
        tensors.push({ name, ne, type, offset, bytes: ggmlBytes(type, n) });
      }
      const dataStart = Math.ceil(pos / alignment) * alignment;
      for (const t of tensors) {
        if (dataStart + t.offset + t.bytes > size) throw new GgufError(path, `tensor '${t.name}' [${t.offset}, ${t.offset + t.bytes}) runs past the end of the file (${size - dataStart} data bytes)`);
      }
      const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
      for (let i = 1; i < sorted.length; i++) {
        if (sorted[i]!.offset < sorted[i - 1]!.offset + sorted[i - 1]!.bytes) throw new GgufError(path, `tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap`);
      }
      return new GgufReader(path, fd, version, metadata, tensors, dataStart, alignment);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  tensor(name: string): GgufTensorInfo {
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw new GgufError(this.path, `no tensor '${name}'`);
    return t;
  }

  readRaw(name: string): Uint8Array {
    if (this.fd === undefined) throw new GgufError(this.path, 'reader is closed');
    const t = this.tensor(name);
    const out = new Uint8Array(t.bytes);
    let done = 0;
    while (done < out.length) {
      let got: number;
      try {
        got = readSync(this.fd, out, done, out.length - done, this.dataStart + t.offset + done);
      } catch (e) {
        throw new GgufError(this.path, `read failed in tensor '${name}' (${(e as Error).message})`);
      }
      if (got === 0) throw new GgufError(this.path, `unexpected end of file in tensor '${name}'`);
      done += got;
    }
    return out;
  }

  /** A tensor's values as float32 (row-major over the reversed ne, i.e. [ne[n-1], ..., ne[0]]). */
  readF32(name: string): Float32Array {
    const t = this.tensor(name);
    return decodeGgml(t.type, this.readRaw(name), t.ne.reduce((a, b) => a * b, 1));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
