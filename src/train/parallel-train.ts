/**
 * `skymoe train --layout dp=N`: the run on N data-parallel ranks (worker threads, see
 * parallel/runtime/ranks.ts). Every rank builds the same model, draws the same batches and runs
 * its share of each step's micro-batches; rank 0 writes metrics and checkpoints in the usual
 * layout, so a run started here resumes on one rank or under another layout, and the other way.
 * The launcher receives progress as messages and stops every rank at the same step when asked.
 */
import type { BackendName } from '../backend/backend.js';
import { runRanks } from '../parallel/runtime/ranks.js';
import type { RunSource, TrainOverrides } from './run.js';
import type { StepMetrics, TrainOptions } from './trainer.js';

export interface DataParallelLayout {
  dp: number;
  /** ZeRO-1: AdamW's moments sharded over the DP group. */
  zero: boolean;
}

export interface ParallelTrainRequest {
  runDir: string;
  /** A new run (source + options) or a resume (overrides). */
  start?: { source: RunSource; options: TrainOptions };
  resume?: { overrides: TrainOverrides };
  layout: DataParallelLayout;
  backend?: BackendName;
  /** Cores for all ranks (default: the machine's). */
  cores?: number;
}

/** What rank 0 reports while training. */
export type ParallelTrainEvent =
  | { type: 'started'; resumedFrom?: string; step: number; steps: number; layout: string; corpus: string; tokens: number; cached: boolean; backend: string }
  | { type: 'step'; m: StepMetrics; step: number; steps: number }
  | { type: 'warn'; message: string }
  | { type: 'checkpoint'; dir: string };

export interface RankTrainData {
  req: ParallelTrainRequest;
  /** Int32 [1]: set to 1 by the launcher to stop after the current step (with a checkpoint). */
  stop: SharedArrayBuffer;
}

export interface RankTrainResult {
  step: number;
  stopped: boolean;
  last?: StepMetrics;
}

/**
 * `--layout` of `skymoe train`, in the planner's notation (`dp=2`, `tp=1,pp=1,dp=4`). Data
 * parallelism runs; tensor, pipeline and expert parallel layouts are planned (`skymoe plan`) but
 * not run by `train` yet, and are refused by name.
 */
export function parseTrainLayout(text: string, zero: number | undefined): DataParallelLayout {
  const kv = new Map<string, string>();
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new Error(`--layout: expected key=value, got '${part}'`);
    kv.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const known = ['tp', 'pp', 'dp', 'vp', 'mb', 'expert', 'ep', 'etp', 'stages', 'recompute'];
  for (const k of kv.keys()) if (!known.includes(k)) throw new Error(`--layout: unknown key '${k}' (the planner's keys: ${known.join(', ')})`);
  const int = (k: string): number => {
    const v = kv.get(k) ?? '1';
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--layout: ${k} must be a positive integer, got '${v}'`);
    return n;
  };
  for (const k of ['tp', 'pp', 'vp', 'ep', 'etp']) if (int(k) !== 1) throw new Error(`--layout: ${k}=${kv.get(k)} is not run by skymoe train yet (data parallelism is: dp=N); plan it with skymoe plan`);
  if (kv.has('stages') || kv.has('expert') || kv.has('recompute')) throw new Error('--layout: stages, expert and recompute need pipeline or tensor parallelism, which skymoe train does not run yet');
  if (zero !== undefined && zero !== 0 && zero !== 1) throw new Error(`--zero must be 0 or 1, got ${zero}`);
  const dp = int('dp');
  if (dp > 64) throw new Error(`--layout: dp=${dp} ranks are worker threads of this process; at most 64`);
  return { dp, zero: (zero ?? 1) === 1 };
}

/** Run the training on the layout's ranks; `onEvent` gets rank 0's progress; `requestStop()` on the returned handle stops at the next step. */
export function trainDataParallel(req: ParallelTrainRequest, onEvent: (e: ParallelTrainEvent) => void, log?: (line: string) => void): { done: Promise<RankTrainResult>; requestStop: () => void } {
  const { dp } = req.layout;
  if (!Number.isInteger(dp) || dp < 1) throw new Error(`--layout: dp must be a positive integer, got ${dp}`);
  const stop = new SharedArrayBuffer(4);
  const done = runRanks<RankTrainData, RankTrainResult>({
    size: dp,
    entry: new URL('./rank-train.js', import.meta.url),
    data: { req, stop },
    backend: req.backend,
    cores: req.cores,
    log,
    onMessage: (_rank, m) => onEvent(m as ParallelTrainEvent),
  }).then((r) => r[0]!);
  return { done, requestStop: () => Atomics.store(new Int32Array(stop), 0, 1) };
}
