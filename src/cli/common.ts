/** Shared CLI plumbing: backend options, number parsing, human-readable figures. */
import { InvalidArgumentError, Option } from 'commander';
import { type Backend, BackendError, type BackendName } from '../backend/backend.js';
import { createBackend } from '../backend/index.js';
import { loadModelWithReport, readConfig } from '../io/hf.js';
import { LOAD_DTYPES, type LoadDType, type LoadReport } from '../io/weights.js';
import { ConfigError } from '../model/config.js';
import { checkShard } from '../model/shard.js';
import type { SkyworkMoE } from '../model/skywork-moe.js';
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
export const threadsOption = () => new Option('--threads <n>', 'kernel threads (default: SKYMOE_THREADS, else all cores; with --tp, of all ranks together)').argParser(positiveInt);

export const tpOption = () => new Option('--tp <n>', 'tensor-parallel ranks (worker threads): heads split by key/value group, unevenly when they do not divide (default 1: no split)').argParser(positiveInt);
export const tpExpertsOption = () => new Option('--tp-experts <placement>', "with --tp: MoE experts whole per rank (edp, Skywork's) or each expert's FFN split over the ranks (etp)").choices(['edp', 'etp']).default('edp');

/** Refuse a --tp the model in `dir` cannot be split over, naming the flag and why (model/shard.ts). */
export function checkTensorParallelFlag(dir: string, tp: number | undefined, experts: 'edp' | 'etp' = 'edp'): void {
  if (tp === undefined || tp === 1) return;
  const cfg = readConfig(dir);
  try {
    checkShard(cfg, { size: tp, index: 0, experts });
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`--tp ${tp}: ${e.message.replace(/^tensor parallel: /, '')}`);
    throw e;
  }
}

/** `--compute` of the serving commands (the engine's row-invariant products with bf16 / fp8 weights). */
export const computeOption = () =>
  new Option('--compute <arith>', 'arithmetic of the products with bf16/fp8 weights: f32 (default: weights decoded to fp32) or bf16 (activations rounded to bf16, products on Intel AMX, as bf16 inference engines compute; native backend)').choices(['f32', 'bf16']);

/**
 * Apply `--compute` before the engine starts: checked here (the native backend with AMX-BF16), then
 * handed to the engine's threads through SKYMOE_COMPUTE, which the native backend reads.
 */
export async function applyCompute(o: { compute?: string; backend?: BackendName }): Promise<void> {
  if (o.compute === undefined) return;
  if (o.compute === 'bf16') {
    if (o.backend !== undefined && o.backend !== 'native') throw new BackendError(`--compute bf16 runs on the native backend's AMX kernels, not --backend ${o.backend}`);
    const { createNativeBackend } = await import('../backend/native/index.js');
    try {
      await createNativeBackend({ threads: 1, compute: 'bf16', initialBytes: 2 ** 20 }).dispose();
    } catch (e) {
      throw new BackendError(`--compute bf16: ${(e as Error).message}`);
    }
  }
  process.env.SKYMOE_COMPUTE = o.compute;
}

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

export const dtypeOption = () =>
  new Option('--dtype <dtype>', 'weights in memory: auto (as stored; read in place from the mapped files on native), f32, bf16 or fp8 (converted)').choices([...LOAD_DTYPES]).default('auto');

/** Where a load put the weights, in one line. */
export function describeLoad(r: LoadReport): string {
  const dtypes = Object.entries(r.bytesByDtype).map(([k, v]) => `${k} ${fmtBytes(v)}`).join(', ');
  return `${fmtBytes(r.mappedBytes)} mapped in place from ${r.mappedFiles} file(s), ${fmtBytes(r.heapBytes)} in the heap (${dtypes})`;
}

/** Load a model for inference, printing the load time and where the weights went (stderr). */
export function loadForInference(dir: string, be: Backend, dtype: LoadDType = 'auto'): SkyworkMoE {
  const t0 = performance.now();
  const { model, report } = loadModelWithReport(dir, be, { dtype });
  process.stderr.write(`[loaded ${dir} in ${((performance.now() - t0) / 1000).toFixed(2)} s: ${describeLoad(report)}]\n`);
  return model;
}
