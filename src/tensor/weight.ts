/**
 * Weights in their storage dtype: read-only matrices [rows, cols] of f32, bf16, f16 or f8_e4m3,
 * with a per-tensor scale and optionally per-row scales, that the ops reading weights (linear, the
 * grouped expert product, embedding) consume directly. Activations and gradients stay f32 Tensors.
 *
 * A Weight's bytes live either in a heap block it owns (copied in, as wasm and js must) or in a
 * file mapped read-only (native: zero copy, shared page cache, outside the heap). A mapped file is
 * shared by the weights in it and unmapped when the last of them is disposed.
 * Weights take no part in autograd: training uses f32 Tensors.
 */
import { type Backend, type MappedFile, type Ptr, WEIGHT_DTYPE_BYTES, WeightDType, type WeightRef, WeightTable } from '../backend/backend.js';
import { currentBackend } from './engine.js';
import { empty, ShapeError, type Tensor, TensorError } from './tensor.js';

export { WeightDType } from '../backend/backend.js';

export const WEIGHT_DTYPE_NAMES = ['f32', 'bf16', 'f16', 'f8_e4m3'] as const;
export type WeightDTypeName = (typeof WEIGHT_DTYPE_NAMES)[number];

export function weightDTypeOf(name: WeightDTypeName): WeightDType {
  return WEIGHT_DTYPE_NAMES.indexOf(name) as WeightDType;
}

/** A file mapped for weights, reference counted by the weights that point into it. */
export class MappedRegion {
  private refs = 0;
  private constructor(
    readonly path: string,
    private readonly file: MappedFile,
  ) {}

  /** Map `path` on a backend that can (native); null where mapping is impossible (js, wasm). */
  static open(backend: Backend, path: string): MappedRegion | null {
    if (!backend.mapFile) return null;
    return new MappedRegion(path, backend.mapFile(path));
  }

  get ptr(): Ptr {
    return this.file.ptr;
  }

  get bytes(): number {
    return this.file.bytes;
  }

  retain(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs <= 0) this.file.unmap();
  }
}

export interface WeightOptions {
  /** Per-tensor scale (default 1). */
  scale?: number;
  /** Per-row scales [rows] (vLLM's channel-wise FP8), copied into the heap. */
  rowScale?: Float32Array;
  /** A name for errors. */
  name?: string;
}

export class Weight {
  readonly shape: readonly [number, number];
  readonly scale: number;
  readonly rowScale: Tensor | null;
  name?: string;
  private heapPtr: Ptr | null;
  private region: MappedRegion | null;
  private readonly dataPtr: Ptr;
  private disposed = false;

  private constructor(
    readonly backend: Backend,
    readonly dtype: WeightDType,
    shape: readonly number[],
    where: { heap: Ptr } | { region: MappedRegion; offset: number },
    o: WeightOptions,
  ) {
    if (shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new ShapeError(`weight${o.name ? ` '${o.name}'` : ''}: shape [${shape}] is not [rows, cols]`);
    this.shape = [shape[0]!, shape[1]!];
    this.scale = o.scale ?? 1;
    if (!Number.isFinite(this.scale)) throw new TensorError(`weight${o.name ? ` '${o.name}'` : ''}: scale ${this.scale} is not finite`);
    this.name = o.name;
    if ('heap' in where) {
      this.heapPtr = where.heap;
      this.region = null;
      this.dataPtr = where.heap;
    } else {
      this.heapPtr = null;
      this.region = where.region;
      where.region.retain();
      this.dataPtr = where.region.ptr + where.offset;
    }
    this.rowScale = null;
    if (o.rowScale) {
      if (o.rowScale.length !== this.shape[0]) throw new ShapeError(`weight${o.name ? ` '${o.name}'` : ''}: ${o.rowScale.length} row scales for ${this.shape[0]} rows`);
      this.rowScale = empty([this.shape[0]], 'f32', backend, false).assign(o.rowScale);
    }
  }

  /** A weight copied into the heap from its stored bytes (little-endian, `dtype`). */
  static fromBytes(bytes: Uint8Array, dtype: WeightDType, shape: readonly number[], o: WeightOptions = {}, backend: Backend = currentBackend()): Weight {
    const need = shape.reduce((a, b) => a * b, 1) * WEIGHT_DTYPE_BYTES[dtype]!;
    if (bytes.length !== need) throw new ShapeError(`weight${o.name ? ` '${o.name}'` : ''}: ${bytes.length} bytes for [${shape}] of ${WEIGHT_DTYPE_NAMES[dtype]} (${need} needed)`);
    const ptr = backend.alloc(Math.max(1, bytes.length));
    try {
      backend.writeBytes(ptr, bytes);
      return new Weight(backend, dtype, shape, { heap: ptr }, o);
    } catch (e) {
      backend.free(ptr);
      throw e;
    }
  }

  /** A weight read in place from a mapped file, `offset` bytes from its start. */
  static mapped(region: MappedRegion, offset: number, dtype: WeightDType, shape: readonly number[], o: WeightOptions = {}, backend: Backend = currentBackend()): Weight {
    const need = shape.reduce((a, b) => a * b, 1) * WEIGHT_DTYPE_BYTES[dtype]!;
    if (offset < 0 || offset + need > region.bytes) throw new ShapeError(`weight${o.name ? ` '${o.name}'` : ''}: bytes [${offset}, ${offset + need}) outside ${region.path} (${region.bytes} bytes)`);
    return new Weight(backend, dtype, shape, { region, offset }, o);
  }

  get ref(): WeightRef {
    this.live();
    return { ptr: this.dataPtr, dtype: this.dtype, scale: this.scale, rowScale: this.rowScale ? this.rowScale.ptr : null };
  }

  get dtypeName(): WeightDTypeName {
    return WEIGHT_DTYPE_NAMES[this.dtype];
  }

  /** Bytes of the stored elements (without row scales). */
  get bytes(): number {
    return this.shape[0] * this.shape[1] * WEIGHT_DTYPE_BYTES[this.dtype]!;
  }

  /** True when the bytes are read in place from a mapped file (not in the heap). */
  get mapped(): boolean {
    return this.region !== null;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** The real values as a new f32 tensor [rows, cols] (the caller owns it). */
  toTensor(): Tensor {
    const out = empty(this.shape, 'f32', this.backend);
    this.backend.kernels.dequantize(this.ref, out.ptr, this.shape[0], this.shape[1]);
    return out;
  }

  /** The real values, copied to the host. */
  toFloat32(): Float32Array {
    const t = this.toTensor();
    try {
      return t.toFloat32();
    } finally {
      t.dispose();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.heapPtr !== null) this.backend.free(this.heapPtr);
    this.heapPtr = null;
    this.region?.release();
    this.region = null;
    this.rowScale?.dispose();
  }

  toString(): string {
    return `Weight(${this.name ?? ''}, [${this.shape}], ${this.dtypeName}${this.mapped ? ', mapped' : ''})`;
  }

  private live(): void {
    if (this.disposed) throw new TensorError(`use of a disposed weight${this.name ? ` '${this.name}'` : ''} [${this.shape}]`);
  }
}

/** The experts of one MoE projection: one weight per expert, each [rows, cols] (the HF per-expert tensors). */
export class ExpertWeights {
  readonly table: WeightTable;
  readonly shape: readonly [number, number, number];
  constructor(readonly experts: readonly Weight[]) {
    if (experts.length === 0) throw new ShapeError('expert weights: no experts');
    const [r, c] = experts[0]!.shape;
    for (const w of experts) if (w.shape[0] !== r || w.shape[1] !== c) throw new ShapeError(`expert weights: ${w.name ?? 'an expert'} is [${w.shape}], expert 0 is [${r},${c}]`);
    this.shape = [experts.length, r, c];
    this.table = new WeightTable(experts.map((w) => w.ref));
  }

  get backend(): Backend {
    return this.experts[0]!.backend;
  }

  /** The pointer table, after checking that no expert was disposed (the table holds raw pointers). */
  liveTable(): WeightTable {
    const gone = this.experts.findIndex((w) => w.isDisposed);
    if (gone >= 0) throw new TensorError(`use of a disposed expert weight${this.experts[gone]!.name ? ` '${this.experts[gone]!.name}'` : ` (expert ${gone})`}`);
    return this.table;
  }

  /** All experts stacked as a new f32 tensor [E, rows, cols] (the caller owns it). */
  toTensor(): Tensor {
    const [E, r, c] = this.shape;
    const out = empty([E, r, c], 'f32', this.backend);
    this.experts.forEach((w, e) => this.backend.kernels.dequantize(w.ref, out.ptr + 4 * e * r * c, r, c));
    return out;
  }

  dispose(): void {
    for (const w of this.experts) w.dispose();
  }
}
