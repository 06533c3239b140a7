/**
 * A KernelRunner over N threads: the calling thread is thread 0, N-1 worker_threads are the rest.
 *
 * The module is compiled once and handed, with the shared WebAssembly.Memory, to every worker.
 * A call writes the kernel index and arguments into the control block (control-block.ts), bumps
 * the generation word and notifies; workers spin briefly, then Atomics.wait on that word. The
 * caller runs its own share, then waits for the pending counter to reach zero. No message is
 * posted per call. A worker's exception is recorded in the control block and rethrown here.
 */
import { Worker } from 'node:worker_threads';
import { BackendError } from '../backend.js';
import { Heap, HEAP_ALIGN, alignUp, type WasmMemoryStorage } from '../heap.js';
import {
  ARGS_OFF, CONTROL_BYTES, ERR_MAX_CHARS, ERR_OFF, ERROR, EXIT, GEN, KERNEL, MAX_ARGS, NARGS, PENDING, SPIN,
  type KernelFn, kernelTable, readError,
} from './control-block.js';
import type { KernelRunner } from './runner.js';
import type { WorkerInit } from './worker.js';

/** Initial size of the per-call scratch region (group offsets, per-thread partials). */
const SCRATCH_BYTES = 64 * 1024;

export class KernelError extends BackendError {
  override name = 'KernelError';
}

export class ThreadPool implements KernelRunner {
  readonly threads: number;
  readonly heap: Heap;
  private readonly ids: Map<string, number>;
  private readonly fns: KernelFn[];
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly u16: Uint16Array;
  private readonly workers: Worker[];
  private readonly call: number[];
  private scratchPtr = -1;
  private scratchBytes = 0;
  private disposed = false;

  private constructor(instance: WebAssembly.Instance, heap: Heap, control: number, workers: Worker[]) {
    this.threads = workers.length + 1;
    this.heap = heap;
    this.workers = workers;
    const { names, fns } = kernelTable(instance);
    this.ids = new Map(names.map((n, i) => [n.slice(2), i]));
    this.fns = fns;
    const buffer = heap.storage.buffer;
    this.i32 = new Int32Array(buffer, control, CONTROL_BYTES >> 2);
    this.f64 = new Float64Array(buffer, control + ARGS_OFF, MAX_ARGS);
    this.u16 = new Uint16Array(buffer, control + ERR_OFF, ERR_MAX_CHARS);
    this.call = [0, this.threads];
    // Allocated now so that kernel calls do not allocate (and grow the heap) in the common case.
    this.scratch(SCRATCH_BYTES);
  }

  /**
   * Instantiate `module` on `storage.memory` in this thread and start `threads - 1` workers.
   * The heap starts above the module's static data and the control block.
   */
  static async create(module: WebAssembly.Module, storage: WasmMemoryStorage, threads: number): Promise<ThreadPool> {
    if (!Number.isInteger(threads) || threads < 1) throw new BackendError(`wasm: threads must be a positive integer, got ${threads}`);
    const memory = storage.memory;
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    const heapBase = (instance.exports['heap_base'] as () => number)() >>> 0;
    const control = alignUp(heapBase, HEAP_ALIGN);
    storage.grow(control + CONTROL_BYTES);
    new Uint8Array(storage.buffer, control, CONTROL_BYTES).fill(0);
    const heap = new Heap(storage, control + CONTROL_BYTES);
    const workers: Worker[] = [];
    try {
      for (let tid = 1; tid < threads; tid++) {
        const init: WorkerInit = { module, memory, control, tid, nthreads: threads };
        // No execArgv: the parent's CLI flags (e.g. --input-type, --test) mean nothing to a kernel
        // worker and some make it fail to start; V8 flags are process-wide anyway.
        workers.push(new Worker(new URL('./worker.js', import.meta.url), { workerData: init, execArgv: [] }));
      }
      await Promise.all(workers.map((w, i) => new Promise<void>((resolve, reject) => {
        w.once('message', () => resolve());
        w.once('error', (e) => reject(new BackendError(`wasm: worker ${i + 1} failed to start: ${e.message}`)));
        w.once('exit', (code) => reject(new BackendError(`wasm: worker ${i + 1} exited during start (code ${code})`)));
      })));
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    for (const w of workers) {
      w.removeAllListeners();
      // A crashed worker cannot report through the control block; at least do not let it pass silently.
      w.on('error', (e) => { process.emitWarning(`wasm kernel worker died: ${e.message}`); });
      w.unref();
    }
    return new ThreadPool(instance, heap, control, workers);
  }

  run(name: string, args: readonly number[]): void {
    const id = this.kernelId(name);
    if (args.length > MAX_ARGS) throw new BackendError(`wasm: k_${name}: ${args.length} arguments, at most ${MAX_ARGS}`);
    const call = this.call;
    call.length = 2 + args.length;
    for (let i = 0; i < args.length; i++) call[2 + i] = args[i]!;
    const fn = this.fns[id]!;
    if (this.threads === 1) {
      fn(...call);
      return;
    }
    const i32 = this.i32;
    for (let i = 0; i < args.length; i++) this.f64[i] = args[i]!;
    Atomics.store(i32, KERNEL, id);
    Atomics.store(i32, NARGS, args.length);
    Atomics.store(i32, PENDING, this.threads - 1);
    Atomics.add(i32, GEN, 1);
    Atomics.notify(i32, GEN);
    let failure: unknown = null;
    try {
      fn(...call);
    } catch (e) {
      failure = e;
    }
    let pending = Atomics.load(i32, PENDING);
    for (let spin = 0; pending !== 0 && spin < SPIN; spin++) pending = Atomics.load(i32, PENDING);
    while (pending !== 0) {
      Atomics.wait(i32, PENDING, pending);
      pending = Atomics.load(i32, PENDING);
    }
    if (Atomics.load(i32, ERROR) !== 0) {
      const message = readError(i32, this.u16);
      Atomics.store(i32, ERROR, 0);
      throw new KernelError(`wasm: kernel k_${name} failed on a worker (${message})`);
    }
    if (failure !== null) throw failure;
  }

  runSingle(name: string, args: readonly number[]): number {
    const r = this.fns[this.kernelId(name)]!(0, 1, ...args);
    return typeof r === 'number' ? r : 0;
  }

  scratch(bytes: number): number {
    if (bytes > this.scratchBytes) {
      if (this.scratchPtr >= 0) this.heap.free(this.scratchPtr);
      this.scratchBytes = Math.max(bytes, 2 * this.scratchBytes, 4096);
      this.scratchPtr = this.heap.alloc(this.scratchBytes);
    }
    return this.scratchPtr;
  }

  /** Stop the workers (they leave their loop, then are terminated). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    Atomics.store(this.i32, EXIT, 1);
    Atomics.add(this.i32, GEN, 1);
    Atomics.notify(this.i32, GEN);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private kernelId(name: string): number {
    if (this.disposed) throw new BackendError('wasm: the backend has been disposed');
    const id = this.ids.get(name);
    if (id === undefined) throw new BackendError(`wasm: the module has no kernel k_${name}`);
    return id;
  }
}
