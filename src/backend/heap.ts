/**
 * One linear heap per backend: every tensor's storage is a byte range [ptr, ptr + bytes) of it.
 *
 * All three backends address memory the same way (a byte offset into one growable buffer), so the
 * js reference kernels, the WebAssembly kernels and the native kernels read the very same bytes:
 * no copy between JS and kernel memory on the hot path, and any backend can fall back to a js
 * kernel by viewing the same memory.
 *
 * Ownership: whoever calls `alloc` owns the block and must `free` it exactly once. The tensor layer
 * wraps this (see src/tensor/README or docs/memory.md); kernels never allocate or free.
 */

/** Alignment of every block, in bytes (one cache line; enough for 512-bit vector loads). */
export const HEAP_ALIGN = 64;

export class HeapError extends Error {
  override name = 'HeapError';
}

/** A growable byte buffer: an ArrayBuffer, a SharedArrayBuffer or a WebAssembly.Memory. */
export interface HeapStorage {
  /** The current buffer; it may be replaced by `grow`, so never cache it across allocations. */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Make the buffer at least `bytes` long (or throw HeapError when the limit is reached). */
  grow(bytes: number): void;
  /** The largest size this storage can ever reach, in bytes. */
  readonly maxBytes: number;
}

const PAGE = 65536;

/** Storage on a WebAssembly.Memory (shared across worker threads when `shared`). */
export class WasmMemoryStorage implements HeapStorage {
  readonly memory: WebAssembly.Memory;
  readonly maxBytes: number;
  constructor(opts: { initialBytes: number; maxBytes: number; shared: boolean; memory?: WebAssembly.Memory }) {
    const maximum = Math.floor(opts.maxBytes / PAGE);
    this.maxBytes = maximum * PAGE;
    this.memory =
      opts.memory ??
      new WebAssembly.Memory({ initial: Math.ceil(opts.initialBytes / PAGE), maximum, shared: opts.shared });
  }
  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this.memory.buffer;
  }
  grow(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    if (bytes > this.maxBytes) {
      throw new HeapError(`heap: cannot grow to ${fmtBytes(bytes)}; this backend's memory is limited to ${fmtBytes(this.maxBytes)} (wasm32), and checkpoint weights are copied into it: the native backend reads them in place from the files instead`);
    }
    // Grow geometrically so that a run of small allocations does not grow page by page.
    const target = Math.min(this.maxBytes, Math.max(bytes, Math.floor(have * 1.5)));
    this.memory.grow(Math.ceil((target - have) / PAGE));
  }
}

/** Storage on a plain ArrayBuffer (the js backend), reallocated and copied on growth. */
export class ArrayBufferStorage implements HeapStorage {
  private buf: ArrayBuffer;
  readonly maxBytes: number;
  constructor(initialBytes: number, maxBytes = 2 ** 53) {
    this.buf = new ArrayBuffer(initialBytes);
    this.maxBytes = maxBytes;
  }
  get buffer(): ArrayBuffer {
    return this.buf;
  }
  grow(bytes: number): void {
    if (bytes <= this.buf.byteLength) return;
    if (bytes > this.maxBytes) throw new HeapError(`heap: cannot grow to ${fmtBytes(bytes)} (limit ${fmtBytes(this.maxBytes)}; checkpoint weights are copied into this heap: the native backend reads them in place from the files instead)`);
    const next = new ArrayBuffer(alignUp(Math.max(bytes, Math.floor(this.buf.byteLength * 1.5))));
    new Uint8Array(next).set(new Uint8Array(this.buf));
    this.buf = next;
  }
}

export interface HeapStats {
  /** Bytes in live blocks. */
  inUse: number;
  /** Largest `inUse` seen. */
  peak: number;
  /** Bytes the storage currently spans (grows, never shrinks). */
  capacity: number;
  /** Number of live blocks. */
  blocks: number;
}

/**
 * A best-fit allocator with coalescing over a HeapStorage.
 *
 * Training repeats the same allocation sizes every step, so freed blocks are reused exactly and the
 * heap reaches a steady state after the first step (tested: 100 steps do not grow it).
 */
export class Heap {
  readonly storage: HeapStorage;
  /** Offset where allocatable memory starts (below it: a module's static data or a control block). */
  readonly base: number;
  private top: number;
  /** Free ranges sorted by offset, never adjacent to each other (coalesced). */
  private freeStart: number[] = [];
  private freeSize: number[] = [];
  private live = new Map<number, number>();
  private inUse = 0;
  private peak = 0;
  private views: { buffer: ArrayBufferLike; f32: Float32Array; i32: Int32Array; u8: Uint8Array | null } | null = null;

  constructor(storage: HeapStorage, base = HEAP_ALIGN) {
    this.storage = storage;
    this.base = alignUp(base);
    this.top = this.base;
  }

  /** Allocate `bytes` (rounded up to HEAP_ALIGN); returns the byte offset. Contents are undefined. */
  alloc(bytes: number): number {
    if (!Number.isFinite(bytes) || bytes < 0) throw new HeapError(`heap: invalid allocation size ${bytes}`);
    const size = Math.max(HEAP_ALIGN, alignUp(bytes));
    let best = -1;
    for (let i = 0; i < this.freeSize.length; i++) {
      const s = this.freeSize[i]!;
      if (s >= size && (best < 0 || s < this.freeSize[best]!)) {
        best = i;
        if (s === size) break;
      }
    }
    let ptr: number;
    if (best >= 0) {
      ptr = this.freeStart[best]!;
      const rest = this.freeSize[best]! - size;
      if (rest > 0) {
        this.freeStart[best] = ptr + size;
        this.freeSize[best] = rest;
      } else {
        this.freeStart.splice(best, 1);
        this.freeSize.splice(best, 1);
      }
    } else {
      ptr = this.top;
      this.storage.grow(ptr + size);
      this.top = ptr + size;
    }
    this.live.set(ptr, size);
    this.inUse += size;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return ptr;
  }

  /** Return a block to the heap. Freeing an unknown or already freed pointer throws. */
  free(ptr: number): void {
    const size = this.live.get(ptr);
    if (size === undefined) throw new HeapError(`heap: free of a pointer that is not live (${ptr}): double free or foreign pointer`);
    this.live.delete(ptr);
    this.inUse -= size;
    // Insert into the sorted free list, merging with neighbours.
    let lo = 0;
    let hi = this.freeStart.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.freeStart[mid]! < ptr) lo = mid + 1;
      else hi = mid;
    }
    let start = ptr;
    let end = ptr + size;
    if (lo > 0 && this.freeStart[lo - 1]! + this.freeSize[lo - 1]! === start) {
      lo--;
      start = this.freeStart[lo]!;
      this.freeStart.splice(lo, 1);
      this.freeSize.splice(lo, 1);
    }
    if (lo < this.freeStart.length && this.freeStart[lo] === end) {
      end += this.freeSize[lo]!;
      this.freeStart.splice(lo, 1);
      this.freeSize.splice(lo, 1);
    }
    if (end === this.top) {
      this.top = start; // give the tail back to the bump pointer
    } else {
      this.freeStart.splice(lo, 0, start);
      this.freeSize.splice(lo, 0, end - start);
    }
  }

  /** Size in bytes of a live block (as rounded at allocation). */
  sizeOf(ptr: number): number {
    const s = this.live.get(ptr);
    if (s === undefined) throw new HeapError(`heap: pointer ${ptr} is not live`);
    return s;
  }

  isLive(ptr: number): boolean {
    return this.live.has(ptr);
  }

  stats(): HeapStats {
    return { inUse: this.inUse, peak: this.peak, capacity: this.storage.buffer.byteLength, blocks: this.live.size };
  }

  private refresh() {
    const buffer = this.storage.buffer;
    if (this.views === null || this.views.buffer !== buffer) {
      // The byte view is made on first use: V8 caps a Uint8Array at 2^32 elements (4 GiB), a
      // Float32Array at 2^32 elements (16 GiB), so a large heap must not need it.
      this.views = { buffer, f32: new Float32Array(buffer), i32: new Int32Array(buffer), u8: null };
    }
    return this.views;
  }
  /** A Float32Array over the whole heap; index = ptr / 4. Re-fetch after any allocation (the heap may grow). */
  get f32(): Float32Array {
    return this.refresh().f32;
  }
  /** An Int32Array over the whole heap; index = ptr / 4. */
  get i32(): Int32Array {
    return this.refresh().i32;
  }
  /** A Uint8Array over the whole heap (heaps up to 4 GiB only). */
  get u8(): Uint8Array {
    const v = this.refresh();
    v.u8 ??= new Uint8Array(v.buffer);
    return v.u8;
  }
}

export function alignUp(n: number, a = HEAP_ALIGN): number {
  return Math.ceil(n / a) * a;
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}
