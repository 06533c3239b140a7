// The one wasm module of the wasm backend: every `k_*` export is a kernel (see ../runner.ts).
export * from './gemm';
export * from './ops';
export * from './weights';

/** First byte above the module's static data; the JS heap and control block start above it. */
export function heap_base(): usize {
  return __heap_base;
}

/** Traps on thread `onTid` (tests use it to check that a worker's failure reaches the caller). */
export function k_trap(tid: i32, nthreads: i32, onTid: i32): void {
  if (tid == onTid) unreachable();
}
