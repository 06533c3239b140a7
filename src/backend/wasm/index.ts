/**
 * The `wasm` backend: SIMD128 kernels compiled from ./assembly, running on N threads over one
 * shared WebAssembly.Memory that is also the heap. Kernels without a wasm implementation fall
 * back to the js reference kernels on the same memory.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { type Backend, BackendError, type Kernels } from '../backend.js';
import { WasmMemoryStorage } from '../heap.js';
import { HeapBackend } from '../heap-backend.js';
import { makeJsKernels } from '../js/kernels.js';
import { makeGemmKernels } from './gemm.js';
import { makeOpKernels } from './op-kernels.js';
import { makeWeightKernels } from './weight-kernels.js';
import { ThreadPool } from './pool.js';
import type { KernelRunner } from './runner.js';

export interface WasmBackendOptions {
  /** Threads, counting the calling thread (default: os.availableParallelism()). */
  threads?: number;
  /** Initial heap size in bytes (default 64 MiB). */
  initialBytes?: number;
  /** Largest heap size in bytes (default and limit 4 GiB, the wasm32 address space). */
  maxBytes?: number;
}

const MAX_BYTES = 2 ** 32;
const BUILD_DIR = new URL('../../../../build/wasm/', import.meta.url);

export class WasmBackend extends HeapBackend {
  readonly name = 'wasm' as const;
  readonly threads: number;
  readonly kernels: Kernels;
  readonly relaxedSimd: boolean;
  /** The threads the wasm kernels run on (for kernels added outside this file, and tests). */
  readonly runner: KernelRunner;
  private readonly pool: ThreadPool;

  constructor(pool: ThreadPool, relaxedSimd: boolean) {
    super(pool.heap);
    this.pool = pool;
    this.runner = pool;
    this.threads = pool.threads;
    this.relaxedSimd = relaxedSimd;
    this.kernels = { ...makeJsKernels(pool.heap), ...makeGemmKernels(pool), ...makeOpKernels(pool), ...makeWeightKernels(pool) };
  }

  describe(): string {
    return `wasm simd128${this.relaxedSimd ? '+relaxed' : ''} threads=${this.threads}`;
  }

  override async dispose(): Promise<void> {
    await this.pool.dispose();
  }
}

let compiled: Promise<{ module: WebAssembly.Module; relaxed: boolean }> | null = null;

/** Compile the kernel module once per thread: the relaxed-SIMD build when this V8 accepts it. */
function kernelModule(): Promise<{ module: WebAssembly.Module; relaxed: boolean }> {
  compiled ??= (async () => {
    // Node 20 (V8 11.3) has relaxed SIMD behind a flag that NODE_OPTIONS refuses; Node 22+ has it on.
    setFlagsFromString('--experimental-wasm-relaxed-simd');
    // Compile straight to optimised code: a kernel call runs to its end in the tier it started in,
    // so the first long GEMM would otherwise run in the baseline (Liftoff) tier, several times slower.
    setFlagsFromString('--no-liftoff');
    const read = async (file: string) => {
      try {
        return await readFile(new URL(file, BUILD_DIR));
      } catch (e) {
        throw new BackendError(`wasm: cannot read build/wasm/${file} (run \`npm run build:wasm\`): ${(e as Error).message}`);
      }
    };
    const relaxedBytes = await read('kernels.relaxed.wasm');
    if (WebAssembly.validate(relaxedBytes)) return { module: await WebAssembly.compile(relaxedBytes), relaxed: true };
    return { module: await WebAssembly.compile(await read('kernels.wasm')), relaxed: false };
  })();
  return compiled;
}

/**
 * Create a wasm backend; `dispose()` it to stop its worker threads.
 *
 * @example
 * const be = await createWasmBackend({ threads: 2 });
 * const a = be.alloc(16), c = be.alloc(16);
 * be.write(a, new Float32Array([1, 2, 3, 4]));
 * be.kernels.matmul(a, a, c, 2, 2, 2, false, false, 1, 0, 0, 0, 0); // c = a @ a
 * be.readF32(c, 4); // Float32Array [7, 10, 15, 22]
 * await be.dispose();
 */
export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<Backend> {
  const threads = opts.threads ?? availableParallelism();
  const maxBytes = Math.min(opts.maxBytes ?? MAX_BYTES, MAX_BYTES);
  const initialBytes = Math.min(opts.initialBytes ?? 64 * 2 ** 20, maxBytes);
  const { module, relaxed } = await kernelModule();
  const storage = new WasmMemoryStorage({ initialBytes, maxBytes, shared: true });
  const pool = await ThreadPool.create(module, storage, threads);
  return new WasmBackend(pool, relaxed);
}
