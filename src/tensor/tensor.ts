/**
 * Tensor: a shape, a dtype and a range of a backend heap, plus the autograd links.
 *
 * Memory ownership (docs/memory.md has the long form):
 * 1. Every op returns a new Tensor that its caller owns. Inside `tidy(fn)`, tensors created in fn
 *    are disposed when fn returns, except the ones it returns (anywhere in an array/object) or
 *    passed to `keep`.
 * 2. Storage is reference counted: a view (`reshape`, `sliceRows`) shares its base's storage, and
 *    the memory is freed when the last Tensor on it is disposed.
 * 3. An autograd node holds its own references to the tensors it saved for backward; `backward()`
 *    releases the whole graph (and a `tidy` scope releases graphs no returned tensor can reach),
 *    so nothing saved outlives the step.
 * 4. `param.grad` belongs to `param`; optimizers and `zeroGrad` manage it.
 * Disposing a Tensor twice is harmless; using a disposed Tensor throws, naming it.
 */
import type { Backend, Ptr } from '../backend/backend.js';
import type { GradNode } from './autograd.js';
import { currentBackend, track } from './engine.js';

export type DType = 'f32' | 'i32';

export class ShapeError extends Error {
  override name = 'ShapeError';
}

export class TensorError extends Error {
  override name = 'TensorError';
}

/** A block of heap memory shared by a tensor and its views. */
export class Storage {
  refs = 0;
  constructor(
    readonly backend: Backend,
    readonly ptr: Ptr,
    readonly length: number,
  ) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) this.backend.free(this.ptr);
  }
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  /** Offset of element 0 within the storage, in elements. */
  readonly offset: number;
  private storage: Storage | null;
  /** True for parameters and inputs we differentiate with respect to. */
  requiresGrad = false;
  /** Accumulated gradient (leaves with requiresGrad only); owned by this tensor. */
  grad: Tensor | null = null;
  /** The op that produced this tensor, while its graph is alive. */
  node: GradNode | null = null;
  /** Optional name used in error messages and checkpoints. */
  name?: string;
  private knownInts: Int32Array | null = null;

  /** `tracked` false: not owned by the current tidy scope (autograd's saved references, grads). */
  constructor(storage: Storage, shape: readonly number[], dtype: DType, offset = 0, tracked = true) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    this.offset = offset;
    if (offset + this.size > storage.length) throw new TensorError(`tensor view [${shape}] at offset ${offset} exceeds its storage of ${storage.length}`);
    storage.retain();
    this.storage = storage;
    if (tracked) track(this);
  }

  get backend(): Backend {
    return this.live().backend;
  }

  /** Byte offset of element 0 in the backend heap. */
  get ptr(): Ptr {
    return this.live().ptr + 4 * this.offset;
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.storage === null;
  }

  private live(): Storage {
    if (this.storage === null) throw new TensorError(`use of a disposed tensor${this.name ? ` '${this.name}'` : ''} [${this.shape}]`);
    return this.storage;
  }

  /** Copy the values out of the heap. */
  toArray(): Float32Array | Int32Array {
    const b = this.backend;
    return this.dtype === 'f32' ? b.readF32(this.ptr, this.size) : b.readI32(this.ptr, this.size);
  }

  toFloat32(): Float32Array {
    if (this.dtype !== 'f32') throw new TensorError(`toFloat32 on an ${this.dtype} tensor`);
    return this.backend.readF32(this.ptr, this.size);
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`item() needs one element, tensor has shape [${this.shape}]`);
    return this.toArray()[0]!;
  }

  /** Overwrite the values from host memory. */
  assign(data: Float32Array | Int32Array): this {
    if (data.length !== this.size) throw new ShapeError(`assign: ${data.length} values into a tensor of shape [${this.shape}] (${this.size})`);
    if ((data instanceof Float32Array) !== (this.dtype === 'f32')) throw new TensorError(`assign: ${data.constructor.name} into an ${this.dtype} tensor`);
    this.backend.write(this.ptr, data);
    this.knownInts = data instanceof Int32Array ? data.slice() : null;
    return this;
  }

  /**
   * The values of an i32 tensor as last assigned from the host, or null when kernels may have
   * written it since (index checks read this instead of copying the indices back).
   */
  get hostInts(): Int32Array | null {
    return this.knownInts;
  }

  /** Forget the host copy: a kernel has written this tensor. */
  markDeviceWritten(): void {
    this.knownInts = null;
  }

  /** A view with another shape over the same storage (no copy). Gradients flow through `ops.reshape`. */
  view(shape: readonly number[]): Tensor {
    const s = resolveShape(shape, this.size, 'view', this.shape);
    return new Tensor(this.live(), s, this.dtype, this.offset);
  }

  /** A second reference to the same storage that no tidy scope owns (dispose it yourself). */
  retainRef(): Tensor {
    return new Tensor(this.live(), this.shape, this.dtype, this.offset, false);
  }

  /** Rows [start, end) of the first axis, as a view sharing storage (no copy, no grad). */
  rowsView(start: number, end: number): Tensor {
    const d0 = this.shape[0] ?? 1;
    if (!(0 <= start && start <= end && end <= d0)) throw new ShapeError(`rowsView: rows [${start}, ${end}) of a tensor with ${d0} rows`);
    const inner = this.size / Math.max(1, d0);
    return new Tensor(this.live(), [end - start, ...this.shape.slice(1)], this.dtype, this.offset + start * inner);
  }

  /** Release this tensor's reference to its storage. */
  dispose(): void {
    if (this.storage === null) return;
    this.storage.release();
    this.storage = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  toString(): string {
    return `Tensor(${this.name ?? this.id}, [${this.shape}], ${this.dtype})`;
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`invalid dimension ${d} in shape [${shape}]`);
    n *= d;
  }
  return n;
}

/** Resolve one -1 in a shape against a known element count. */
export function resolveShape(shape: readonly number[], size: number, op: string, from: readonly number[]): number[] {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(s.filter((_, i) => i !== neg));
    if (rest === 0 || size % rest !== 0) throw new ShapeError(`${op}: cannot reshape [${from}] to [${shape}]`);
    s[neg] = size / rest;
  }
  if (numel(s) !== size) throw new ShapeError(`${op}: cannot reshape [${from}] (${size} elements) to [${shape}]`);
  return s;
}

/** A new uninitialized tensor. */
export function empty(shape: readonly number[], dtype: DType = 'f32', backend: Backend = currentBackend(), tracked = true): Tensor {
  const n = numel(shape);
  const storage = new Storage(backend, backend.alloc(4 * Math.max(1, n)), n);
  return new Tensor(storage, shape, dtype, 0, tracked);
}
