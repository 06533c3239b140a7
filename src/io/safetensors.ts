/**
 * The safetensors format: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * (possibly padded with trailing spaces), then the data buffer. The header maps each tensor name
 * to {dtype, shape, data_offsets: [begin, end]} (byte offsets relative to the data start) and may
 * hold `__metadata__`, a string -> string map. Tensors must tile the data buffer exactly.
 *
 * The reader reads the header and then each tensor's bytes on demand, never the whole file; the
 * writer streams tensor by tensor in bounded chunks and replaces the target atomically.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic, writeFully } from './atomic.js';
import { decodeFloatBytes, decodeI64Bytes, decodeIntBytes, encodeBytes } from './dtype-bytes.js';
import { DTYPE_BYTES, isFloatDType, isStorageDType, type StorageDType } from './dtypes.js';

/** A malformed or unusable checkpoint file; the message names the file (and tensor) at fault. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
  constructor(
    readonly path: string,
    readonly fault: string,
    readonly tensor?: string,
  ) {
    super(`${path}: ${tensor === undefined ? '' : `tensor ${JSON.stringify(tensor)}: `}${fault}`);
  }
}

/** What a header says about one tensor. */
export interface TensorInfo {
  dtype: StorageDType;
  shape: number[];
  byteLength: number;
}

/** Where a tensor's bytes are, relative to the start of the data buffer. */
export interface TensorEntry extends TensorInfo {
  begin: number;
  end: number;
}

/** The file holding a tensor and the absolute byte offset of its first byte. */
export interface TensorLocation {
  path: string;
  offset: number;
  byteLength: number;
}

/** Read access to named tensors; implemented by single files and sharded checkpoints. */
export interface TensorReader {
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensor names in storage order. */
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** The stored little-endian bytes, undecoded. */
  readRaw(name: string): Uint8Array;
  /** The file and byte offset of a tensor's data. */
  location(name: string): TensorLocation;
  /** Values of a float tensor (any float dtype) as float32. */
  readF32(name: string): Float32Array;
  /** Values of an integer tensor as int32 (I64 values must fit). */
  readInt(name: string): Int32Array;
  /** Values of an integer tensor as int64. */
  readI64(name: string): BigInt64Array;
  close(): void;
}

/** Headers beyond this are refused: real ones are a few MB even for 146B-parameter shards. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Chunk size for streaming reads, decodes and writes. */
const CHUNK_BYTES = 8 * 1024 * 1024;

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A value read from a hostile file, for a message: short, and never a RangeError when nested too deeply to print. */
export function describe(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    // Nested too deeply to print (a hostile header): say what it is, not a RangeError.
    return Array.isArray(v) ? 'a deeply nested array' : 'a deeply nested object';
  }
  if (s === undefined) return String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parse and validate a header against a data buffer of `dataLength` bytes. Every tensor must
 * have a known dtype, a shape of non-negative integers and offsets spanning exactly
 * product(shape) * dtype size bytes; together the tensors must tile the data buffer with no
 * overlap and no gap. Throws SafetensorsError naming `path` on the first fault.
 * @example parseHeader('a.safetensors', new TextEncoder().encode('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'), 4)
 */
export function parseHeader(path: string, header: Uint8Array, dataLength: number): { entries: Map<string, TensorEntry>; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(header);
  } catch {
    throw new SafetensorsError(path, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new SafetensorsError(path, `header is not a JSON object (got ${describe(json)})`);

  let metadata: Record<string, string> = {};
  const entries = new Map<string, TensorEntry>();
  for (const name of Object.keys(json)) {
    const v = json[name];
    if (name === '__metadata__') {
      if (!isPlainObject(v)) throw new SafetensorsError(path, `__metadata__ is not an object of strings (got ${describe(v)})`);
      for (const k of Object.keys(v)) {
        if (typeof v[k] !== 'string') throw new SafetensorsError(path, `__metadata__[${JSON.stringify(k)}] is not a string (got ${describe(v[k])})`);
      }
      metadata = Object.fromEntries(Object.entries(v as Record<string, string>));
      continue;
    }
    entries.set(name, parseEntry(path, name, v, dataLength));
  }
  checkTiling(path, entries, dataLength);
  return { entries, metadata };
}

function parseEntry(path: string, name: string, v: unknown, dataLength: number): TensorEntry {
  const fail = (fault: string): never => {
    throw new SafetensorsError(path, fault, name);
  };
  if (!isPlainObject(v)) return fail(`entry is not an object (got ${describe(v)})`);
  const dtype = v.dtype;
  if (typeof dtype !== 'string') return fail(`dtype is missing or not a string (got ${describe(dtype)})`);
  if (!isStorageDType(dtype)) return fail(`unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    return fail(`shape must be an array of non-negative integers (got ${describe(shape)})`);
  }
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    return fail(`data_offsets must be two non-negative integers [begin, end] (got ${describe(offs)})`);
  }
  const [begin, end] = offs as [number, number];
  if (begin > end) return fail(`data_offsets [${begin}, ${end}] have begin > end`);
  // BigInt: a bogus shape can overflow 2^53 and must still compare exactly.
  const need = shape.reduce((p: bigint, d: number) => p * BigInt(d), 1n) * BigInt(DTYPE_BYTES[dtype]);
  if (need !== BigInt(end - begin)) {
    return fail(`data_offsets [${begin}, ${end}] span ${end - begin} bytes but dtype ${dtype} with shape [${shape.join(', ')}] needs ${need}`);
  }
  if (end > dataLength) return fail(`data_offsets [${begin}, ${end}] run past the end of the data buffer (${dataLength} bytes)`);
  return { dtype, shape: [...(shape as number[])], byteLength: end - begin, begin, end };
}

/** The tensors must cover [0, dataLength) exactly once: the format forbids holes and overlaps. */
function checkTiling(path: string, entries: Map<string, TensorEntry>, dataLength: number): void {
  const sorted = [...entries].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let pos = 0;
  let prev: string | undefined;
  for (const [name, e] of sorted) {
    if (e.begin < pos) {
      throw new SafetensorsError(path, `data_offsets [${e.begin}, ${e.end}] overlap tensor ${JSON.stringify(prev)} (which ends at ${pos})`, name);
    }
    if (e.begin > pos) {
      throw new SafetensorsError(path, `data buffer has a gap: bytes [${pos}, ${e.begin}) belong to no tensor`, name);
    }
    pos = e.end;
    prev = name;
  }
  if (pos !== dataLength) throw new SafetensorsError(path, `data buffer has ${dataLength - pos} trailing bytes (${pos}..${dataLength}) not covered by any tensor`);
}

/**
 * A safetensors file opened for reading by offset. Only the header is read at open; each read
 * pulls one tensor's bytes. Call close() when done.
 */
export class SafetensorsReader implements TensorReader {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    private readonly dataStart: number,
    private readonly entries: Map<string, TensorEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.fd = fd;
  }

  /**
   * Open and validate a file.
   * @example
   * const r = SafetensorsReader.open('model.safetensors');
   * const w = r.readF32('model.norm.weight');
   * r.close();
   */
  static open(path: string): SafetensorsReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(path, `cannot open (${(e as Error).message})`);
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(path, `file is ${size} bytes, shorter than the 8-byte header length`);
      const lenBytes = Buffer.alloc(8);
      readExactly(path, fd, lenBytes, 0);
      const n = lenBytes.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      if (n > BigInt(size - 8)) throw new SafetensorsError(path, `header length ${n} runs past the end of the file (${size} bytes)`);
      const headerLen = Number(n);
      const header = new Uint8Array(headerLen);
      readExactly(path, fd, header, 8);
      const dataStart = 8 + headerLen;
      const { entries, metadata } = parseHeader(path, header, size - dataStart);
      return new SafetensorsReader(path, fd, dataStart, entries, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries].sort((a, b) => a[1].begin - b[1].begin).map(([name]) => name);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength };
  }

  /** Where a tensor's bytes are: the file and the absolute byte offset in it (for mapping). */
  location(name: string): TensorLocation {
    const e = this.entry(name);
    return { path: this.path, offset: this.dataStart + e.begin, byteLength: e.byteLength };
  }

  readRaw(name: string): Uint8Array {
    const e = this.entry(name);
    const out = allocate(this.path, name, Uint8Array, e.byteLength);
    readExactly(this.path, this.openFd(), out, this.dataStart + e.begin, name);
    return out;
  }

  readF32(name: string): Float32Array {
    const e = this.entry(name);
    if (!isFloatDType(e.dtype)) throw new SafetensorsError(this.path, `readF32 needs a float dtype, the tensor is ${e.dtype} (use readInt or readI64)`, name);
    const size = DTYPE_BYTES[e.dtype];
    const n = e.byteLength / size;
    const out = allocate(this.path, name, Float32Array, n);
    if (e.dtype === 'F32' && HOST_LE) {
      readExactly(this.path, this.openFd(), new Uint8Array(out.buffer), this.dataStart + e.begin, name);
      return out;
    }
    // Decode chunk by chunk so peak memory is the output plus one chunk.
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / size));
    const buf = new Uint8Array(Math.min(n, perChunk) * size);
    for (let i = 0; i < n; i += perChunk) {
      const k = Math.min(perChunk, n - i);
      const chunk = buf.subarray(0, k * size);
      readExactly(this.path, this.openFd(), chunk, this.dataStart + e.begin + i * size, name);
      decodeFloatBytes(e.dtype, chunk, out.subarray(i, i + k));
    }
    return out;
  }

  readInt(name: string): Int32Array {
    const e = this.entry(name);
    if (isFloatDType(e.dtype)) throw new SafetensorsError(this.path, `readInt needs an integer dtype, the tensor is ${e.dtype} (use readF32)`, name);
    try {
      return decodeIntBytes(e.dtype, this.readRaw(name));
    } catch (err) {
      if (err instanceof RangeError) throw new SafetensorsError(this.path, `${err.message}; use readI64`, name);
      throw err;
    }
  }

  readI64(name: string): BigInt64Array {
    const e = this.entry(name);
    if (isFloatDType(e.dtype)) throw new SafetensorsError(this.path, `readI64 needs an integer dtype, the tensor is ${e.dtype} (use readF32)`, name);
    return decodeI64Bytes(e.dtype, this.readRaw(name));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private openFd(): number {
    if (this.fd === undefined) throw new SafetensorsError(this.path, 'reader is closed');
    return this.fd;
  }

  private entry(name: string): TensorEntry {
    this.openFd();
    const e = this.entries.get(name);
    if (!e) throw new SafetensorsError(this.path, 'no such tensor in this file', name);
    return e;
  }
}

/**
 * Open a safetensors file (same as SafetensorsReader.open).
 * @example
 * const r = openSafetensors('model.safetensors');
 * console.log(r.names(), r.info(r.names()[0]!));
 * r.close();
 */
export function openSafetensors(path: string): SafetensorsReader {
  return SafetensorsReader.open(path);
}

function allocate<T>(path: string, name: string, C: new (n: number) => T, n: number): T {
  try {
    return new C(n);
  } catch (e) {
    throw new SafetensorsError(path, `cannot allocate ${n} elements (${(e as Error).message})`, name);
  }
}

/** Fill `out` from `position`, looping over short reads; reads at most 1 GiB per call. */
function readExactly(path: string, fd: number, out: Uint8Array, position: number, tensor?: string): void {
  let done = 0;
  while (done < out.length) {
    let got: number;
    try {
      got = readSync(fd, out, done, Math.min(out.length - done, 1 << 30), position + done);
    } catch (e) {
      throw new SafetensorsError(path, `read failed at byte ${position + done} (${(e as Error).message})`, tensor);
    }
    if (got === 0) throw new SafetensorsError(path, `unexpected end of file at byte ${position + done} (was the file truncated while open?)`, tensor);
    done += got;
  }
}

// ---- writing ----

/**
 * Tensor values to store: Float32Array for float dtypes, Int32Array or BigInt64Array for integer
 * dtypes, or a Uint8Array of already encoded little-endian bytes for any dtype.
 */
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array;

/** One tensor to write. `data` may be a function, called once when the tensor is written, so a
 * caller can produce (and free) tensors one at a time instead of holding the whole file. */
export interface TensorToWrite {
  name: string;
  dtype: StorageDType;
  shape: readonly number[];
  data: TensorData | (() => TensorData);
}

export interface WriteOptions {
  /** Called after the header and after each written chunk; throwing aborts the write (the target is untouched). */
  onProgress?: (bytesWritten: number, totalBytes: number) => void;
}

/**
 * Bytes a tensor occupies in a safetensors data buffer.
 * @example storedBytes({ dtype: 'BF16', shape: [4608, 4608] }) // 42467328
 */
export function storedBytes(t: { dtype: StorageDType; shape: readonly number[] }): number {
  return t.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[t.dtype];
}

function checkSpec(path: string, t: TensorToWrite, seen: Set<string>): void {
  if (typeof t.name !== 'string' || t.name === '' || t.name === '__metadata__') throw new SafetensorsError(path, `invalid tensor name ${describe(t.name)}`);
  if (seen.has(t.name)) throw new SafetensorsError(path, 'duplicate tensor name', t.name);
  seen.add(t.name);
  if (!isStorageDType(t.dtype)) throw new SafetensorsError(path, `unsupported dtype ${describe(t.dtype)}`, t.name);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(path, `shape must be an array of non-negative integers (got ${describe(t.shape)})`, t.name);
  }
  if (!Number.isSafeInteger(storedBytes(t))) throw new SafetensorsError(path, `shape [${t.shape.join(', ')}] is too large`, t.name);
  if (typeof t.data !== 'function') checkData(path, t, t.data);
}

function checkData(path: string, t: TensorToWrite, data: TensorData): void {
  const numel = t.shape.reduce((p, d) => p * d, 1);
  const fail = (fault: string): never => {
    throw new SafetensorsError(path, fault, t.name);
  };
  if (data instanceof Uint8Array) {
    if (data.length !== storedBytes(t)) fail(`raw data has ${data.length} bytes, ${t.dtype} [${t.shape.join(', ')}] needs ${storedBytes(t)}`);
    return;
  }
  if (data instanceof Float32Array) {
    if (!isFloatDType(t.dtype)) fail(`a Float32Array cannot be stored as ${t.dtype}; pass Int32Array or BigInt64Array`);
  } else if (data instanceof Int32Array || data instanceof BigInt64Array) {
    if (isFloatDType(t.dtype)) fail(`a ${data.constructor.name} cannot be stored as ${t.dtype}; pass a Float32Array`);
  } else {
    fail(`data must be a Float32Array, Int32Array, BigInt64Array or Uint8Array (got ${describe(data)})`);
  }
  if (data.length !== numel) fail(`data has ${data.length} values, shape [${t.shape.join(', ')}] needs ${numel}`);
}

/**
 * Check names (non-empty, unique), dtypes, shapes and, for eager data, lengths and array kinds,
 * before anything is written. Throws SafetensorsError naming `path` and the tensor.
 * @example validateTensors('out.safetensors', [{ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2) }]);
 */
export function validateTensors(path: string, tensors: readonly TensorToWrite[]): void {
  const seen = new Set<string>();
  for (const t of tensors) checkSpec(path, t, seen);
}

/** The header bytes for `tensors` laid out in order, padded with spaces to a multiple of 8. */
function buildHeader(tensors: readonly TensorToWrite[], metadata: Readonly<Record<string, string>> | undefined): { header: Uint8Array; dataLength: number } {
  // Built as text, not via an object, so a tensor named "__proto__" is just a name.
  const parts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const m = Object.keys(metadata).map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  let offset = 0;
  for (const t of tensors) {
    const end = offset + storedBytes(t);
    parts.push(`${JSON.stringify(t.name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, dataLength: offset };
}

/**
 * Write tensors to a safetensors file, encoding each to its dtype. The file appears atomically
 * (temp file, fsync, rename): a crash or an error mid-write leaves any previous file intact.
 * Tensors are streamed in bounded chunks, so memory use is one tensor's source plus a chunk.
 * @example
 * writeSafetensors('tiny.safetensors', [
 *   { name: 'w', dtype: 'BF16', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 *   { name: 'ids', dtype: 'I64', shape: [2], data: new Int32Array([5, 6]) },
 * ], { format: 'pt' });
 */
export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
  options: WriteOptions = {},
): void {
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new SafetensorsError(path, 'metadata must be an object of strings');
    for (const k of Object.keys(metadata)) {
      if (typeof metadata[k] !== 'string') throw new SafetensorsError(path, `metadata[${JSON.stringify(k)}] is not a string (got ${describe(metadata[k])})`);
    }
  }
  validateTensors(path, tensors);
  const { header, dataLength } = buildHeader(tensors, metadata);
  if (header.length - 8 > MAX_HEADER_BYTES) throw new SafetensorsError(path, `header would be ${header.length - 8} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const total = header.length + dataLength;
  const progress = options.onProgress ?? (() => {});

  writeFileAtomic(path, (fd) => {
    writeFully(fd, header);
    let written = header.length;
    progress(written, total);
    const chunk = new Uint8Array(CHUNK_BYTES);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      checkData(path, t, data);
      const size = DTYPE_BYTES[t.dtype];
      if (data instanceof Uint8Array) {
        for (let i = 0; i < data.length; i += CHUNK_BYTES) {
          const part = data.subarray(i, Math.min(data.length, i + CHUNK_BYTES));
          writeFully(fd, part);
          progress((written += part.length), total);
        }
        continue;
      }
      const perChunk = Math.floor(CHUNK_BYTES / size);
      for (let i = 0; i < data.length; i += perChunk) {
        const k = Math.min(perChunk, data.length - i);
        const out = chunk.subarray(0, k * size);
        try {
          encodeBytes(t.dtype, data.subarray(i, i + k), out);
        } catch (e) {
          if (e instanceof RangeError) throw new SafetensorsError(path, e.message.replace(/index (\d+)/, (_, j: string) => `index ${i + Number(j)}`), t.name);
          throw e;
        }
        writeFully(fd, out);
        progress((written += out.length), total);
      }
    }
  });
}
