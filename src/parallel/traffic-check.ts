/**
 * The planner's bytes model checked against bytes that moved (`skymoe plan --measure`): a few
 * training steps of a small model run under a layout on worker-thread ranks (train/parallel-train.ts),
 * every rank counts what it sent per collective kind, group and phase (runtime/comm.ts), and the
 * step traffic is set beside planner/traffic.ts's prediction for the same model, setup and layout,
 * priced with the runtime's element sizes and choices (RUNTIME_TRAFFIC).
 *
 * Phases (runtime/comm.ts CommPhase):
 *   step     what the planner models: the TP seams (attention, dense MLP, experts and their gate
 *            weights), pipeline activations and gradients, the gradient all-reduce (or ZeRO's
 *            reduce-scatter and all-gather of the updated weights), the tied-embedding all-reduce.
 *   control  what it does not: setup (barriers, the tokenizer broadcast), losses and router
 *            statistics summed for the metrics, gradient-norm scalars, the stop agreement,
 *            evaluation, checkpoint gathers. Measured and printed on their own lines.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackendName } from '../backend/backend.js';
import { readConfig } from '../io/hf.js';
import type { ModelConfig } from '../model/config.js';
import { preset } from '../model/presets.js';
import { type TrainLayout, parseTrainLayout, trainDataParallel } from '../train/parallel-train.js';
import { applyOverrides, DEFAULT_TRAIN } from '../train/run.js';
import { shapeOf, type ModelShape } from './planner/flops.js';
import { PlanError } from './planner/gpus.js';
import { checkLayout, defaultSetup, formatLayout, type Layout, parseLayout, type TrainingSetup } from './planner/setup.js';
import { sentBytes, stepTransfers, trafficTotals, type TrafficOptions, type Transfer } from './planner/traffic.js';
import type { CommStat } from './runtime/comm.js';

/**
 * The reference runtime: fp32 activations, gradients and weights; embedding and lm_head
 * replicated (stages take and give whole rows); every TP rank routes all tokens; TP seams as
 * all-reduces unless the layout asks for sequence parallelism (sp=1).
 */
export const RUNTIME_TRAFFIC: TrafficOptions = { elements: { activation: 4, gradient: 4, parameter: 4 }, sequenceParallel: false, vocabParallel: false, routing: 'replicated' };

/** Measured over predicted may differ by this much (relative) per collective kind and group. */
export const TRAFFIC_TOLERANCE = 0.01;

/*
 * An all-to-all moves the routed copies whose expert is on another rank. How many those are
 * depends on which experts the tokens chose: the planner assumes an even spread, (ep-1)/ep of
 * them, and a few steps of a small model route a little unevenly between ranks (1-2% here, more
 * with tiny batches). So an all-to-all row is checked on what the model determines, every routed
 * copy of the rows a rank dispatches (the bytes it sent plus those that stayed on it, the
 * all-to-all's whole buffer), to 1% like the rest; the bytes sent and the share that stayed are
 * printed beside the even spread the planner assumes.
 */

export interface TrafficCheckOptions {
  /** The planner's notation (tp, pp, dp, expert, ep, etp, stages, recompute), plus sp=1 for sequence parallelism. */
  layout: string;
  /** 0 or 1 (ZeRO-1, the default as in skymoe train). */
  zero?: number;
  /** A preset (default tiny) or a model directory with its tokenizer. */
  preset?: string;
  modelDir?: string;
  steps: number;
  /** Sequences per micro-batch and their length. */
  batch: number;
  seq: number;
  /** Micro-batches per optimizer step over all replicas (default dp x pp). */
  accum?: number;
  backend?: BackendName;
  cores?: number;
  /** Lines the ranks log (default: dropped). */
  log?: (line: string) => void;
}

/** Bytes per optimizer step per rank (mean over the ranks) of one collective kind over one kind of group. */
export interface TrafficRow {
  kind: string;
  group: string;
  predicted: number;
  /** null when the layout was not run. */
  measured: number | null;
  ratio: number | null;
  /** How far the ratio may be from 1. */
  tolerance: number;
  /**
   * All-to-all rows: the ratio is of the routed bytes (sent + kept on the rank, the whole buffer);
   * `predicted`/`measured` stay the bytes sent, whose share depends on routing.
   */
  routed?: { predicted: number; measured: number | null; keptShare: number | null; evenKeptShare: number };
}

export interface TrafficPrediction {
  model: ModelShape;
  setup: TrainingSetup;
  layout: Layout;
  traffic: TrafficOptions;
  transfers: Transfer[];
  /** The layout as skymoe train runs it, or why it does not yet. */
  train: TrainLayout | null;
  notRun: string | null;
}

export interface TrafficCheck {
  layout: string;
  plannerLayout: string;
  model: string;
  zero: number;
  sequenceParallel: boolean;
  steps: number;
  batch: number;
  seq: number;
  accum: number;
  ranks: number;
  notRun: string | null;
  rows: TrafficRow[];
  /** Measured control traffic, bytes per rank over the whole run (setup and the last checkpoint are once per run). */
  control: { kind: string; group: string; bytes: number }[];
  transfers: Transfer[];
  /** Largest |measured / predicted - 1| over the rows (null: not run). */
  worst: number | null;
  /** Every row within its tolerance (false when not run). */
  ok: boolean;
}

/** The planner's group kind of a runtime group name: dp0 -> dp, tp1 -> tp, ep0 -> ep, pp0 and p2p -> pp, embedding2 -> embedding, world. */
export function groupKind(name: string): string {
  const base = name.replace(/\d+(-.*)?$/, '');
  return base === 'p2p' ? 'pp' : base;
}

function layoutKeys(text: string): Map<string, string> {
  const kv = new Map<string, string>();
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new PlanError(`expected key=value, got '${part}'`, '--layout');
    kv.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return kv;
}

function modelConfig(o: Pick<TrafficCheckOptions, 'preset' | 'modelDir'>): { cfg: ModelConfig; name: string } {
  if (o.preset !== undefined && o.modelDir !== undefined) throw new PlanError('give --preset or --model, not both', '--model');
  if (o.modelDir !== undefined) return { cfg: readConfig(o.modelDir), name: o.modelDir };
  const name = o.preset ?? 'tiny';
  return { cfg: preset(name), name };
}

/**
 * What the planner predicts for the run `checkTraffic` makes: the layout as the runtime reads it
 * (expert=etp without ep: every DP replica holds every expert's slice, ep 1), the setup of the
 * run (global batch = accum x batch sequences), the runtime's element sizes.
 */
export function predictTraffic(cfg: ModelConfig, name: string, o: Omit<TrafficCheckOptions, 'preset' | 'modelDir' | 'backend' | 'cores' | 'log'>): TrafficPrediction {
  const kv = layoutKeys(o.layout);
  if (kv.has('mb')) throw new PlanError(`mb=${kv.get('mb')}: the micro-batch of a measured run is --batch (sequences per micro-batch)`, '--layout');
  let sequenceParallel = false;
  if (kv.has('sp')) {
    const v = kv.get('sp')!.toLowerCase();
    if (!['0', '1', 'true', 'false'].includes(v)) throw new PlanError(`sp must be 1 or 0, got '${kv.get('sp')}'`, '--layout');
    sequenceParallel = v === '1' || v === 'true';
  }
  const plannerText = [...kv].filter(([k]) => k !== 'sp').map(([k, v]) => `${k}=${v}`).join(',');
  const int = (k: string) => (/^\d+$/.test(kv.get(k) ?? '') ? Number(kv.get(k)) : 1); // bad values: parseLayout names them
  const gpus = int('tp') * int('pp') * int('dp');
  const m = shapeOf(cfg, name);
  let layout = { ...parseLayout(plannerText, m, Math.max(1, gpus)), microBatch: o.batch };
  if (m.experts && layout.expert === 'etp' && !kv.has('ep')) layout = { ...layout, ep: 1 };
  const zero = o.zero ?? 1;
  if (![0, 1, 2, 3].includes(zero)) throw new PlanError(`expected 0 or 1 (2 and 3 are planned only), got ${zero}`, '--zero');
  const accum = o.accum ?? layout.dp * layout.pp;
  const setup = defaultSetup({ seq: o.seq, globalBatch: accum * o.batch, zero: zero as 0 | 1 | 2 | 3 });
  let train: TrainLayout | null = null, notRun: string | null = null;
  try {
    train = parseTrainLayout(o.layout, zero);
  } catch (e) {
    notRun = (e as Error).message;
  }
  // what runs is checked by the runtime (uneven heads and experts are fine there); what does not is checked as Megatron-Core would
  if (!train) checkLayout(layout, m, gpus, setup);
  else if (accum % layout.dp !== 0) throw new PlanError(`${accum} micro-batches per step do not divide over dp=${layout.dp}`, '--accum');
  const traffic = { ...RUNTIME_TRAFFIC, sequenceParallel };
  return { model: m, setup, layout, traffic, transfers: stepTransfers(m, setup, layout, traffic), train, notRun };
}

/**
 * Every rank's statistics summed by collective kind and group kind, as bytes per rank (the mean
 * over the ranks): step traffic per optimizer step, control traffic over the whole run.
 */
export function measuredTraffic(ranks: readonly (readonly CommStat[])[], steps: number): { step: Map<string, number>; control: Map<string, number>; kept: Map<string, number> } {
  const step = new Map<string, number>(), control = new Map<string, number>(), kept = new Map<string, number>();
  for (const stats of ranks) {
    for (const s of stats) {
      const [into, per] = s.phase === 'control' ? [control, ranks.length] : [step, ranks.length * steps];
      // the runtime counts an all-to-all's split-size exchange apart ('counts'); it is an all-to-all, as the planner has it
      const key = `${s.kind === 'counts' ? 'all-to-all' : s.kind} ${groupKind(s.group)}`;
      into.set(key, (into.get(key) ?? 0) + s.bytes / per);
      if (s.phase !== 'control' && s.kept) kept.set(key, (kept.get(key) ?? 0) + s.kept / per);
    }
  }
  return { step, control, kept };
}

/** An all-to-all's whole buffer (what it sends plus what stays), per rank per step, as the planner predicts it. */
function routedPredicted(transfers: readonly Transfer[], kind: string, group: string): { bytes: number; evenKeptShare: number } {
  let bytes = 0, sent = 0;
  for (const t of transfers) {
    if (t.kind !== kind || t.group !== group) continue;
    bytes += t.calls * t.bytes;
    sent += sentBytes(t);
  }
  return { bytes, evenKeptShare: bytes > 0 ? 1 - sent / bytes : 0 };
}

/**
 * Run `steps` training steps of the model under the layout on worker-thread ranks (a throwaway
 * run directory) and set each rank's step traffic beside the prediction; a layout skymoe train
 * does not run yet gets its prediction and `notRun`.
 *
 * @example const r = await checkTraffic({ layout: 'tp=2,dp=2,expert=edp', steps: 2, batch: 2, seq: 32 }); r.ok
 */
export async function checkTraffic(o: TrafficCheckOptions): Promise<TrafficCheck> {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new PlanError(`expected a positive integer, got ${o.steps}`, '--steps');
  const { cfg, name } = modelConfig(o);
  const p = predictTraffic(cfg, name, o);
  const predicted = trafficTotals(p.transfers);
  const ranks = p.layout.tp * p.layout.pp * p.layout.dp;
  const base = {
    layout: o.layout, plannerLayout: formatLayout(p.layout, p.model.experts > 0), model: name, zero: p.setup.zero, sequenceParallel: p.traffic.sequenceParallel,
    steps: o.steps, batch: o.batch, seq: o.seq, accum: p.setup.globalBatch / o.batch, ranks, transfers: p.transfers,
  };
  const routed = (kind: string, group: string, measured: number | null, kept: number) => {
    if (kind !== 'all-to-all') return {};
    const r = routedPredicted(p.transfers, kind, group);
    const total = measured === null ? null : measured + kept;
    return { routed: { predicted: r.bytes, measured: total, keptShare: total ? kept / total : null, evenKeptShare: r.evenKeptShare } };
  };
  if (!p.train) {
    return { ...base, notRun: p.notRun, rows: predicted.map((t) => ({ kind: t.kind, group: t.group, predicted: t.bytes, measured: null, ratio: null, tolerance: TRAFFIC_TOLERANCE, ...routed(t.kind, t.group, null, 0) })), control: [], worst: null, ok: false };
  }
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-measure-'));
  let traffic: CommStat[][];
  try {
    // dropless, as the planner's all-to-all assumes (a copy a capacity limit drops never travels)
    const options = applyOverrides(DEFAULT_TRAIN, { steps: o.steps, batch: o.batch, seq: o.seq, accum: base.accum, evalEvery: 0, saveEvery: 0, keep: 1, capacityFactor: null });
    const run = trainDataParallel(
      { runDir: dir, layout: p.train, backend: o.backend, cores: o.cores, start: { source: { ...(o.modelDir ? { modelDir: o.modelDir } : { preset: name }), corpus: [], valFraction: 0.05, modelSeed: 0 }, options } },
      () => {},
      o.log ?? (() => {}),
    );
    const r = await run.done;
    traffic = r.ranksTraffic ?? [];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const measured = measuredTraffic(traffic, o.steps);
  const rows: TrafficRow[] = predicted.map((t) => {
    const key = `${t.kind} ${t.group}`;
    const got = measured.step.get(key) ?? 0;
    measured.step.delete(key);
    const a2a = routed(t.kind, t.group, got, measured.kept.get(key) ?? 0);
    const ratio = a2a.routed ? a2a.routed.measured! / a2a.routed.predicted : got / t.bytes;
    return { kind: t.kind, group: t.group, predicted: t.bytes, measured: got, ratio, tolerance: TRAFFIC_TOLERANCE, ...a2a };
  });
  // traffic the model does not predict at all is a mismatch too
  for (const [key, got] of measured.step) {
    if (got <= 0) continue;
    const [kind, group] = key.split(' ') as [string, string];
    rows.push({ kind, group, predicted: 0, measured: got, ratio: Infinity, tolerance: TRAFFIC_TOLERANCE });
  }
  const control = [...measured.control].filter(([, b]) => b > 0).map(([key, bytes]) => {
    const [kind, group] = key.split(' ') as [string, string];
    return { kind, group, bytes };
  });
  const worst = rows.reduce((w, r) => Math.max(w, Math.abs(r.ratio! - 1)), 0);
  return { ...base, notRun: null, rows, control, worst, ok: rows.every((r) => Math.abs(r.ratio! - 1) <= r.tolerance) };
}

