/**
 * How the JS side of the wasm backend calls kernels compiled from ./assembly.
 *
 * Convention: every kernel is an export `k_<name>(tid: i32, nthreads: i32, ...args)` of the one
 * module; pointers are byte offsets (usize), sizes i32, scalars f32/f64. Each thread gets the same
 * arguments and its own tid in [0, nthreads) and takes its share of the work (rows, columns or
 * tiles); the call returns when every thread has finished. A kernel that needs a reduction writes
 * per-thread partials to a scratch area and the JS side combines them.
 */
import type { Heap } from '../heap.js';

export interface KernelRunner {
  readonly threads: number;
  readonly heap: Heap;
  /** Run `k_<name>` on every thread with these arguments; blocks until all threads are done. */
  run(name: string, args: readonly number[]): void;
  /** Run `k_<name>` on the calling thread alone as (tid 0, nthreads 1); returns its result. */
  runSingle(name: string, args: readonly number[]): number;
  /**
   * A per-call scratch region of at least `bytes` (reused between calls, owned by the runner):
   * for small host-side inputs such as group offsets, or per-thread partial sums.
   */
  scratch(bytes: number): number;
}
