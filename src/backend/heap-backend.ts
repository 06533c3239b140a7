/**
 * Memory half of a Backend, shared by every implementation: one Heap, reads and writes by copy.
 */
import { type Backend, type BackendName, type Kernels, type Ptr, BackendError } from './backend.js';
import type { Heap } from './heap.js';

export abstract class HeapBackend implements Backend {
  abstract readonly name: BackendName;
  abstract readonly threads: number;
  abstract readonly kernels: Kernels;
  readonly heap: Heap;

  constructor(heap: Heap) {
    this.heap = heap;
  }

  alloc(bytes: number): Ptr {
    return this.heap.alloc(bytes);
  }

  free(ptr: Ptr): void {
    this.heap.free(ptr);
  }

  readF32(ptr: Ptr, length: number): Float32Array {
    checkAligned(ptr);
    return this.heap.f32.slice(ptr / 4, (ptr / 4) + length);
  }

  readI32(ptr: Ptr, length: number): Int32Array {
    checkAligned(ptr);
    return this.heap.i32.slice(ptr / 4, (ptr / 4) + length);
  }

  write(ptr: Ptr, data: Float32Array | Int32Array): void {
    checkAligned(ptr);
    if (data instanceof Float32Array) this.heap.f32.set(data, ptr / 4);
    else this.heap.i32.set(data, ptr / 4);
  }

  writeBytes(ptr: Ptr, data: Uint8Array): void {
    this.heap.u8.set(data, ptr);
  }

  abstract describe(): string;

  async dispose(): Promise<void> {}
}

function checkAligned(ptr: Ptr): void {
  if (ptr % 4 !== 0) throw new BackendError(`backend: pointer ${ptr} is not 4-byte aligned`);
}
