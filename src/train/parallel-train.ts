/**
 * `skymoe train --layout tp=T,dp=D[,expert=edp|etp]`: the run on T x D ranks (worker threads, see
 * parallel/runtime/ranks.ts). Each DP replica runs its share of each step's micro-batches; within
 * a replica the T ranks hold slices of the model (model/shard.ts) and run every micro-batch of the
 * replica together. Rank 0 writes metrics and whole checkpoints in the usual layout, so a run
 * started here resumes on one rank or under another layout, and the other way.
 * The launcher receives progress as messages and stops every rank at the same step when asked.
 */
import type { BackendName } from '../backend/backend.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readConfig } from '../io/hf.js';
import { configFromHF, type ModelConfig } from '../model/config.js';
import { preset } from '../model/presets.js';
import { evenStages } from '../parallel/planner/setup.js';
import { checkStages, type StageRecompute } from '../parallel/runtime/pipeline.js';
import type { CommStat } from '../parallel/runtime/comm.js';
import { runRanks } from '../parallel/runtime/ranks.js';
import type { RunSource, TrainOverrides } from './run.js';
import type { StepMetrics, TrainOptions } from './trainer.js';

export interface TrainLayout {
  dp: number;
  /** Tensor parallelism (heads split unevenly when they do not divide); 1: none. */
  tp: number;
  /** Pipeline stages (1F1B); 1: none. */
  pp: number;
  /** Sequence parallelism under tp > 1 (Megatron's --sequence-parallel): activations between the blocks split by token. */
  sequenceParallel?: boolean;
  /** Decoder layers per stage (the planner's non-uniform split); absent: as even as possible, the extra layers first. */
  stages?: number[];
  /** Recomputation per stage (one entry: every stage). */
  recompute: StageRecompute[];
  /** Set by the launcher under pipeline parallelism: the model ties lm_head to the embedding (first and last stage both hold it). */
  tiedEmbeddings?: boolean;
  /**
   * How experts are placed: on the TP group, whole experts per rank (edp, Skywork's) or each split
   * (etp); or whole over the TP x DP ranks of a stage, tokens sent to them by all-to-all (ep).
   */
  experts: 'edp' | 'etp' | 'ep';
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
  /** Bytes this rank sent, per collective kind, group and phase ('step' or 'control'), for `skymoe plan --measure`. */
  traffic?: CommStat[];
  /** From trainDataParallel: every rank's `traffic`, in rank order. */
  ranksTraffic?: CommStat[][];
  /** Rank 0's pipeline schedule figures (the first stage), under pipeline parallelism. */
  pipeline?: { maxInFlight: number; recomputedForwards: number; recomputedAttention: number };
}

/**
 * `--layout` of `skymoe train`, in the planner's notation (`dp=2`, `tp=2,pp=2,dp=2`,
 * `pp=2,stages=3+1,recompute=full+none`). What is not run yet (interleaved stages, expert=ep) is
 * refused by name.
 */
export function parseTrainLayout(text: string, zero: number | undefined): TrainLayout {
  const kv = new Map<string, string>();
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new Error(`--layout: expected key=value, got '${part}'`);
    kv.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const known = ['tp', 'pp', 'dp', 'vp', 'mb', 'expert', 'ep', 'etp', 'stages', 'recompute', 'sp'];
  for (const k of kv.keys()) if (!known.includes(k)) throw new Error(`--layout: unknown key '${k}' (the planner's keys: ${known.join(', ')})`);
  const int = (k: string): number => {
    const v = kv.get(k) ?? '1';
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--layout: ${k} must be a positive integer, got '${v}'`);
    return n;
  };
  if (int('vp') !== 1) throw new Error(`--layout: vp=${kv.get('vp')} (the interleaved schedule) is not run by skymoe train yet (pp=N with stages and recompute is); plan it with skymoe plan`);
  if (int('mb') !== 1 && kv.has('mb')) throw new Error(`--layout: mb=${kv.get('mb')}: the micro-batch of skymoe train is --batch (sequences per micro-batch)`);
  const tp = int('tp'), pp = int('pp');
  const spText = kv.get('sp') ?? '0';
  if (spText !== '0' && spText !== '1') throw new Error(`--layout: sp must be 0 or 1 (sequence parallelism off or on), got '${spText}'`);
  if (spText === '1' && tp === 1) throw new Error('--layout: sp=1 splits activations over the tensor-parallel ranks: it needs tp > 1');
  let stages: number[] | undefined;
  if (kv.has('stages')) {
    stages = kv.get('stages')!.split(/[+/ ]/).filter(Boolean).map(Number);
    if (stages.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`--layout: stages must be non-negative integers joined by '+', got '${kv.get('stages')}'`);
    if (stages.length !== pp) throw new Error(`--layout: stages ${kv.get('stages')} has ${stages.length} entries for pp=${pp}`);
  }
  const recompute = (kv.get('recompute') ?? 'none').split(/[+/ ]/).filter(Boolean).map((r) => r.toLowerCase());
  for (const r of recompute) if (r !== 'none' && r !== 'selective' && r !== 'full') throw new Error(`--layout: recompute must be none, selective or full (one, or one per stage joined by '+'), got '${r}'`);
  if (recompute.length !== 1 && recompute.length !== pp) throw new Error(`--layout: recompute ${kv.get('recompute')} has ${recompute.length} entries for pp=${pp} (give one, or one per stage)`);
  const experts = (kv.get('expert') ?? 'edp').toLowerCase();
  if (experts !== 'edp' && experts !== 'etp' && experts !== 'ep') throw new Error(`--layout: expert must be edp, etp or ep, got '${experts}'`);
  const dp = int('dp');
  // the planner's ep/etp sizes, when given, must be the ones the placement implies (SPEC section 5)
  const epSize = { edp: tp, etp: 1, ep: tp * dp }[experts], etpSize = experts === 'etp' ? tp : 1;
  const what = { edp: 'tp', etp: '1', ep: 'tp x dp' }[experts];
  if (kv.has('ep') && int('ep') !== epSize) throw new Error(`--layout: ep=${kv.get('ep')} does not match expert=${experts} with tp=${tp}${experts === 'ep' ? `, dp=${dp}` : ''} (ep is ${what} = ${epSize})`);
  if (kv.has('etp') && int('etp') !== etpSize) throw new Error(`--layout: etp=${kv.get('etp')} does not match expert=${experts} with tp=${tp} (etp is ${experts === 'etp' ? 'tp' : '1'})`);
  if (zero !== undefined && zero !== 0 && zero !== 1) throw new Error(`--zero must be 0 or 1, got ${zero}`);
  if (dp * tp * pp > 64) throw new Error(`--layout: tp x pp x dp = ${dp * tp * pp} ranks are worker threads of this process; at most 64`);
  return { dp, tp, pp, ...(spText === '1' ? { sequenceParallel: true } : {}), ...(stages ? { stages } : {}), recompute: recompute as StageRecompute[], experts, zero: (zero ?? 1) === 1 };
}

/** The layout's stages and per-stage recomputation for a model of `layers` layers (even split by default, as the planner's). */
export function resolveStages(layout: TrainLayout, c: ModelConfig): { stages: number[]; recompute: StageRecompute[] } {
  const stages = layout.stages ?? evenStages(c.numLayers, layout.pp);
  const recompute = layout.recompute.length === 1 ? Array<StageRecompute>(layout.pp).fill(layout.recompute[0]!) : layout.recompute;
  if (layout.pp > c.numLayers && !layout.stages) throw new Error(`--layout: pp=${layout.pp} stages for a model of ${c.numLayers} layers`);
  checkStages(c, stages, recompute);
  return { stages, recompute };
}

/** The model a request trains: its config (from the preset, the model directory or the run), to check the layout against before any rank starts. */
function configOf(req: ParallelTrainRequest): ModelConfig {
  if (req.start) return req.start.source.modelDir ? readConfig(req.start.source.modelDir) : preset(req.start.source.preset ?? 'tiny');
  const runPath = join(req.runDir, 'run.json');
  let run: { config?: unknown };
  try {
    run = JSON.parse(readFileSync(runPath, 'utf8')) as { config?: unknown };
  } catch (e) {
    throw new Error(`${runPath}: cannot be read (${(e as Error).message}); is ${req.runDir} a training run?`);
  }
  if (run.config === undefined) throw new Error(`${runPath}: records no model config (a run from an older skymoe); resume it without --layout pp`);
  return configFromHF(run.config, runPath);
}

/** Run the training on the layout's ranks; `onEvent` gets rank 0's progress; `requestStop()` on the returned handle stops at the next step. */
export function trainDataParallel(req: ParallelTrainRequest, onEvent: (e: ParallelTrainEvent) => void, log?: (line: string) => void): { done: Promise<RankTrainResult>; requestStop: () => void } {
  const { dp, tp, pp } = req.layout;
  if (![dp, tp, pp].every((n) => Number.isInteger(n) && n >= 1)) throw new Error(`--layout: dp, tp and pp must be positive integers, got dp=${dp} tp=${tp} pp=${pp}`);
  if (pp > 1) {
    const c = configOf(req);
    const { stages, recompute } = resolveStages(req.layout, c);
    req = { ...req, layout: { ...req.layout, stages, recompute, tiedEmbeddings: c.tieWordEmbeddings } };
  }
  const stop = new SharedArrayBuffer(4);
  const done = runRanks<RankTrainData, RankTrainResult>({
    size: dp * tp * pp,
    entry: new URL('./rank-train.js', import.meta.url),
    data: { req, stop },
    backend: req.backend,
    cores: req.cores,
    log,
    onMessage: (_rank, m) => onEvent(m as ParallelTrainEvent),
  }).then((r) => ({ ...r[0]!, ranksTraffic: r.map((x) => x.traffic ?? []) }));
  return { done, requestStop: () => Atomics.store(new Int32Array(stop), 0, 1) };
}
