/** The `js` backend: plain TypeScript kernels on an ArrayBuffer heap; the reference for tests. */
import type { Backend, Kernels } from '../backend.js';
import { ArrayBufferStorage, Heap } from '../heap.js';
import { HeapBackend } from '../heap-backend.js';
import { makeJsKernels } from './kernels.js';

export class JsBackend extends HeapBackend {
  readonly name = 'js' as const;
  readonly threads = 1;
  readonly kernels: Kernels;
  constructor(initialBytes = 1 << 20) {
    // Node's typed arrays stop at 2^32 bytes (buffer.constants.MAX_LENGTH): so does this heap.
    super(new Heap(new ArrayBufferStorage(initialBytes, 2 ** 32)));
    this.kernels = makeJsKernels(this.heap);
  }
  describe(): string {
    return 'js (plain TypeScript reference) threads=1';
  }
}

export function createJsBackend(): Backend {
  return new JsBackend();
}
