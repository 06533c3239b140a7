/**
 * Choosing a backend: by option, else SKYMOE_BACKEND, else the fastest one available
 * (native when its addon is built and loads, then wasm). SKYMOE_THREADS sets the thread count;
 * SKYMOE_NATIVE_ISA=avx512|avx2|generic forces the native kernels' instruction set.
 */
import os from 'node:os';
import { type Backend, BackendError, type BackendName } from './backend.js';
import { createJsBackend } from './js/index.js';

export interface BackendOptions {
  name?: BackendName;
  /** Kernel threads (default: SKYMOE_THREADS, else all cores). Ignored by js. */
  threads?: number;
}

const NAMES: readonly BackendName[] = ['js', 'wasm', 'native'];

export function defaultThreads(): number {
  const env = process.env.SKYMOE_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new BackendError(`SKYMOE_THREADS=${env}: expected a positive integer`);
    return n;
  }
  return os.availableParallelism();
}

export async function createBackend(opts: BackendOptions = {}): Promise<Backend> {
  const env = process.env.SKYMOE_BACKEND;
  const name = opts.name ?? (env ? (env as BackendName) : undefined);
  if (name !== undefined && !NAMES.includes(name)) {
    throw new BackendError(`unknown backend '${name}'${opts.name ? '' : ' (from SKYMOE_BACKEND)'}: expected one of ${NAMES.join(', ')}`);
  }
  const threads = opts.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1) throw new BackendError(`threads=${threads}: expected a positive integer`);
  if (name === undefined) return createDefault(threads);
  switch (name) {
    case 'js':
      return createJsBackend();
    case 'wasm': {
      const { createWasmBackend } = await import('./wasm/index.js');
      return createWasmBackend({ threads });
    }
    case 'native': {
      const { createNativeBackend } = await import('./native/index.js');
      return createNativeBackend({ threads });
    }
  }
}

let warnedNoNative = false;

/** No backend named: native when its addon loads, else wasm (saying once on stderr why). */
async function createDefault(threads: number): Promise<Backend> {
  const { createNativeBackend, nativeInfo } = await import('./native/index.js');
  let reason = nativeInfo().reason;
  if (reason === undefined) {
    try {
      return createNativeBackend({ threads });
    } catch (e) {
      reason = (e as Error).message;
    }
  }
  if (!warnedNoNative) {
    warnedNoNative = true;
    process.stderr.write(`skymoe: native backend unavailable (${reason}); using wasm\n`);
  }
  const { createWasmBackend } = await import('./wasm/index.js');
  return createWasmBackend({ threads });
}

export type { Backend, BackendName } from './backend.js';
