/** Shared CLI plumbing: backend options, number parsing, human-readable figures. */
import { InvalidArgumentError, Option } from 'commander';
import type { Backend, BackendName } from '../backend/backend.js';
import { createBackend } from '../backend/index.js';
import { setBackend } from '../tensor/index.js';

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got '${v}'`);
  return n;
}

export function nonNegInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got '${v}'`);
  return n;
}

export function number(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got '${v}'`);
  return n;
}

export const backendOption = () => new Option('--backend <name>', 'compute backend (default: SKYMOE_BACKEND, else fastest available)').choices(['js', 'wasm', 'native']);
export const threadsOption = () => new Option('--threads <n>', 'kernel threads (default: SKYMOE_THREADS, else all cores)').argParser(positiveInt);

/** Create the backend the options ask for and make it current. */
export async function useBackend(o: { backend?: BackendName; threads?: number }): Promise<Backend> {
  const be = await createBackend({ name: o.backend, threads: o.threads });
  setBackend(be);
  return be;
}

export function fmtBytes(n: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
