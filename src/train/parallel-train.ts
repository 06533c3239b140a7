/**
 * `skymoe train --layout tp=T,dp=D[,expert=edp|etp]`: the run on T x D ranks (worker threads, see
 * parallel/runtime/ranks.ts). Each DP replica runs its share of each step's micro-batches; within
 * a replica the T ranks hold slices of the model (model/shard.ts) and run every micro-batch of the
 * replica together. Rank 0 writes metrics and whole checkpoints in the usual layout, so a run
 * started here resumes on one rank or under another layout, and the other way.
 * The launcher receives progress as messages and stops every rank at the same step when asked.
 */
import type { BackendName } from '../backend/backend.js';
import { runRanks } from '../parallel/runtime/ranks.js';
import type { RunSource, TrainOverrides } from './run.js';
import type { StepMetrics, TrainOptions } from './trainer.js';

export interface TrainLayout {
  dp: number;
  /** Tensor parallelism (heads split unevenly when they do not divide); 1: none. */
  tp: number;
  /** How experts are placed on the TP group: whole experts per rank (edp, Skywork's) or each split (etp). */
  experts: 'edp' | 'etp';
  /** ZeRO-1: AdamW's moments sharded over the DP group. */
  zero: boolean;
}

export interface ParallelTrainRequest {
  runDir: string;
  /** A new run (source + options) or a resume (overrides). */
  start?: { source: RunSource; options: TrainOptions };
  resume?: { overrides: TrainOverrides };
  layout: TrainLayout;
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
export function parseTrainLayout(text: string, zero: number | undefined): TrainLayout {
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
  for (const k of ['pp', 'vp']) if (int(k) !== 1) throw new Error(`--layout: ${k}=${kv.get(k)} is not run by skymoe train yet (data and tensor parallelism are: dp=N, tp=N, expert=edp|etp); plan it with skymoe plan`);
  if (kv.has('stages') || kv.has('recompute')) throw new Error('--layout: stages and recompute need pipeline parallelism, which skymoe train does not run yet');
  const tp = int('tp');
  const experts = (kv.get('expert') ?? 'edp').toLowerCase();
  if (experts === 'ep') throw new Error('--layout: expert=ep (all-to-all dispatch over tp x dp) is not run by skymoe train yet; expert=edp and expert=etp are');
  if (experts !== 'edp' && experts !== 'etp') throw new Error(`--layout: expert must be edp or etp, got '${experts}'`);
  // the planner's ep/etp sizes, when given, must be the ones the placement implies
  if (kv.has('ep') && int('ep') !== (experts === 'edp' ? tp : 1)) throw new Error(`--layout: ep=${kv.get('ep')} does not match expert=${experts} with tp=${tp} (ep is ${experts === 'edp' ? 'tp' : '1'})`);
  if (kv.has('etp') && int('etp') !== (experts === 'etp' ? tp : 1)) throw new Error(`--layout: etp=${kv.get('etp')} does not match expert=${experts} with tp=${tp} (etp is ${experts === 'etp' ? 'tp' : '1'})`);
  if (zero !== undefined && zero !== 0 && zero !== 1) throw new Error(`--zero must be 0 or 1, got ${zero}`);
  const dp = int('dp');
  if (dp * tp > 64) throw new Error(`--layout: tp x dp = ${dp * tp} ranks are worker threads of this process; at most 64`);
  return { dp, tp, experts, zero: (zero ?? 1) === 1 };
}

/** Run the training on the layout's ranks; `onEvent` gets rank 0's progress; `requestStop()` on the returned handle stops at the next step. */
export function trainDataParallel(req: ParallelTrainRequest, onEvent: (e: ParallelTrainEvent) => void, log?: (line: string) => void): { done: Promise<RankTrainResult>; requestStop: () => void } {
  const { dp, tp } = req.layout;
  if (!Number.isInteger(dp) || dp < 1 || !Number.isInteger(tp) || tp < 1) throw new Error(`--layout: dp and tp must be positive integers, got dp=${dp} tp=${tp}`);
  const stop = new SharedArrayBuffer(4);
  const done = runRanks<RankTrainData, RankTrainResult>({
    size: dp * tp,
    entry: new URL('./rank-train.js', import.meta.url),
    data: { req, stop },
    backend: req.backend,
    cores: req.cores,
    log,
    onMessage: (_rank, m) => onEvent(m as ParallelTrainEvent),
  }).then((r) => r[0]!);
  return { done, requestStop: () => Atomics.store(new Int32Array(stop), 0, 1) };
}
