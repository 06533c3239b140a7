/**
 * The control block through which the calling thread dispatches a kernel to the worker threads:
 * a few int32 words, float64 arguments and room for an error message, in the shared wasm memory
 * just below the heap. Shared by pool.ts (the caller) and worker.ts.
 */

/** Int32 word indices. */
export const GEN = 0; // bumped once per dispatch; workers wait on it
export const PENDING = 1; // workers still running the current kernel; the caller waits on it
export const KERNEL = 2; // index into kernelTable()
export const NARGS = 3;
export const ERROR = 4; // 1 when a worker's kernel threw; the message follows at ERR_OFF
export const EXIT = 5; // 1 asks workers to leave their loop
export const ERR_LEN = 6;

export const ARGS_OFF = 64; // byte offset of the float64 arguments
export const MAX_ARGS = 32;
export const ERR_OFF = ARGS_OFF + MAX_ARGS * 8; // byte offset of the UTF-16 error message
export const ERR_MAX_CHARS = 256;
export const CONTROL_BYTES = ERR_OFF + ERR_MAX_CHARS * 2;

/** Spins (Atomics.load polls) before falling back to Atomics.wait: a few tens of microseconds. */
export const SPIN = 20000;

export type KernelFn = (...args: number[]) => number | undefined;

/** The module's `k_*` exports in a fixed order, so a kernel is named by its index across threads. */
export function kernelTable(instance: WebAssembly.Instance): { names: string[]; fns: KernelFn[] } {
  const names = Object.keys(instance.exports).filter((n) => n.startsWith('k_')).sort();
  return { names, fns: names.map((n) => instance.exports[n] as KernelFn) };
}

/** Record a worker's failure (first one wins) so the caller can rethrow it. */
export function writeError(i32: Int32Array, u16: Uint16Array, message: string): void {
  if (Atomics.compareExchange(i32, ERROR, 0, 1) !== 0) return;
  const n = Math.min(message.length, ERR_MAX_CHARS);
  for (let i = 0; i < n; i++) u16[i] = message.charCodeAt(i);
  Atomics.store(i32, ERR_LEN, n);
}

export function readError(i32: Int32Array, u16: Uint16Array): string {
  const n = Atomics.load(i32, ERR_LEN);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(u16[i]!);
  return s;
}
