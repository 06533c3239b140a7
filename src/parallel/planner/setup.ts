/**
 * What the planner is asked about: the training setup (batch, sequence, precision, optimizer
 * sharding) and a parallel layout (TP, PP, DP, virtual stages, expert placement, micro-batch,
 * layers and recomputation per pipeline stage), with the checks Megatron-Core would make.
 */
import type { ModelShape } from './flops.js';
import { PlanError } from './gpus.js';

export type Precision = 'bf16' | 'fp8';
export type Recompute = 'none' | 'selective' | 'full';
export const RECOMPUTE_MODES: readonly Recompute[] = ['none', 'selective', 'full'];
/** SPEC section 5: EP (whole experts per rank), ETP (experts split over the TP group), EDP (Skywork's, EP group = TP group). */
export type ExpertPlacement = 'ep' | 'etp' | 'edp';

export interface TrainingSetup {
  seq: number;
  /** Global batch in sequences (tokens = globalBatch x seq). */
  globalBatch: number;
  precision: Precision;
  /** 0: replicated Adam states; 1: states sharded over DP (Megatron's distributed optimizer); 2: + gradients; 3: + weights. */
  zero: 0 | 1 | 2 | 3;
  /** Max/mean tokens of the busiest expert (dropless routing with a balancing loss; capacity factor if tokens are dropped). */
  routingImbalance: number;
  /** Fraction of TP and expert all-to-all traffic hidden behind compute (0: none, Megatron without --tp-comm-overlap). */
  tpOverlap: number;
  a2aOverlap: number;
  /** DP gradient reduce-scatter overlapped with the last micro-batch's backward (--overlap-grad-reduce). */
  dpOverlap: boolean;
  /** Count core attention causally (current Megatron-Core) in MFU. */
  causalFlops: boolean;
}

export function defaultSetup(o: Partial<TrainingSetup> = {}): TrainingSetup {
  return { seq: 4096, globalBatch: 1024, precision: 'bf16', zero: 1, routingImbalance: 1.2, tpOverlap: 0, a2aOverlap: 0, dpOverlap: true, causalFlops: true, ...o };
}

export interface Layout {
  tp: number;
  pp: number;
  dp: number;
  /** Virtual pipeline stages per rank (interleaved 1F1B when > 1). */
  vp: number;
  microBatch: number;
  expert: ExpertPlacement;
  /** Expert-parallel group size and expert tensor-parallel size (Megatron's --expert-model-parallel-size, --expert-tensor-parallel-size). */
  ep: number;
  etp: number;
  /** Transformer layers of each pipeline stage (sums to the layer count). */
  stages: number[];
  /** Recomputation of each pipeline stage. */
  recompute: Recompute[];
}

/** The expert mesh the SPEC's placements imply for a TP x DP grid. */
export function placementSizes(kind: ExpertPlacement, tp: number, dp: number): { ep: number; etp: number } {
  switch (kind) {
    case 'ep': return { ep: tp * dp, etp: 1 };
    case 'etp': return { ep: dp, etp: tp };
    case 'edp': return { ep: tp, etp: 1 };
  }
}

/** The expert mesh of a layout (placement.ts describes the three placements). */
export interface ExpertGroups {
  ep: number;
  etp: number;
  /** Replicas of each expert (the group its gradients are reduced over). */
  edp: number;
  expertsPerRank: number;
  /** Token dispatch: 'local' (EDP), or an all-to-all over `ep` ranks `stride` apart. */
  dispatch: 'local' | 'all-to-all';
  stride: number;
}

export function expertGroups(m: ModelShape, l: Layout): ExpertGroups {
  const edp = (l.tp * l.dp) / (l.ep * l.etp);
  const local = l.expert === 'edp' || l.ep === 1;
  return { ep: l.ep, etp: l.etp, edp, expertsPerRank: m.experts / l.ep, dispatch: local ? 'local' : 'all-to-all', stride: l.etp };
}

/** Layers split as evenly as possible, the extra layers on the first stages. */
export function evenStages(layers: number, pp: number): number[] {
  const q = Math.floor(layers / pp), r = layers % pp;
  return Array.from({ length: pp }, (_, i) => q + (i < r ? 1 : 0));
}

/** Check a layout against the model, the GPU count and the batch; throws a PlanError naming the field. */
export function checkLayout(l: Layout, m: ModelShape, gpus: number, s: TrainingSetup): void {
  const bad = (field: string, msg: string): never => {
    throw new PlanError(msg, `layout.${field}`);
  };
  for (const k of ['tp', 'pp', 'dp', 'vp', 'microBatch', 'ep', 'etp'] as const) {
    if (!Number.isInteger(l[k]) || l[k] < 1) bad(k, `expected a positive integer, got ${l[k]}`);
  }
  if (l.tp * l.pp * l.dp !== gpus) bad('dp', `tp ${l.tp} x pp ${l.pp} x dp ${l.dp} = ${l.tp * l.pp * l.dp}, not the ${gpus} GPUs`);
  if (m.heads % l.tp !== 0 || m.kvHeads % l.tp !== 0) bad('tp', `${l.tp} does not divide the ${m.heads} attention heads${m.kvHeads !== m.heads ? ` and ${m.kvHeads} KV heads` : ''}`);
  if (l.pp > m.layers) bad('pp', `${l.pp} stages for ${m.layers} layers`);
  if (l.stages.length !== l.pp) bad('stages', `${l.stages.length} stage sizes for pp ${l.pp}`);
  if (l.stages.some((n) => !Number.isInteger(n) || n < 0)) bad('stages', `expected non-negative integers, got [${l.stages.join(',')}]`);
  const sum = l.stages.reduce((a, b) => a + b, 0);
  if (sum !== m.layers) bad('stages', `[${l.stages.join(',')}] sums to ${sum}, not the ${m.layers} layers`);
  if (l.recompute.length !== l.pp) bad('recompute', `${l.recompute.length} entries for pp ${l.pp}`);
  if (l.vp > 1) {
    if (l.pp < 2) bad('vp', 'virtual stages need pp > 1');
    if (l.stages.some((n) => n % l.vp !== 0)) bad('vp', `each stage's layers [${l.stages.join(',')}] must divide into ${l.vp} virtual stages`);
  }
  if (s.globalBatch % (l.dp * l.microBatch) !== 0) bad('microBatch', `global batch ${s.globalBatch} sequences is not a multiple of dp ${l.dp} x micro-batch ${l.microBatch}`);
  const micro = s.globalBatch / (l.dp * l.microBatch);
  if (l.vp > 1 && micro % l.pp !== 0) bad('vp', `the interleaved schedule needs the ${micro} micro-batches to be a multiple of pp ${l.pp}`);
  if (m.experts) {
    if (m.experts % l.ep !== 0) bad('ep', `${l.ep} does not divide the ${m.experts} experts`);
    if ((l.tp * l.dp) % (l.ep * l.etp) !== 0) bad('ep', `ep ${l.ep} x etp ${l.etp} does not divide tp ${l.tp} x dp ${l.dp} (Megatron-Core's expert mesh)`);
    if (m.expertFfn % l.etp !== 0) bad('etp', `${l.etp} does not divide the expert width ${m.expertFfn}`);
    if (l.expert === 'edp' && (l.ep !== l.tp || l.etp !== 1)) bad('expert', `EDP places experts on the TP group: ep must be tp (${l.tp}) and etp 1`);
    if (l.expert === 'etp' && l.etp !== l.tp) bad('expert', `ETP splits each expert over the TP group: etp must be tp (${l.tp})`);
    if (l.expert === 'ep' && l.etp !== 1) bad('expert', 'EP keeps experts whole: etp must be 1');
  }
}

/**
 * Parse `tp=4,pp=12,dp=32,vp=1,mb=1,expert=edp,ep=4,etp=1,stages=4+5+...,recompute=selective` (any
 * subset; dp defaults to the GPUs left, ep/etp to the placement's sizes, stages to an even split).
 */
export function parseLayout(text: string, m: ModelShape, gpus: number): Layout {
  const kv = new Map<string, string>();
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new PlanError(`expected key=value, got '${part}'`, '--layout');
    kv.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const known = new Set(['tp', 'pp', 'dp', 'vp', 'mb', 'expert', 'ep', 'etp', 'stages', 'recompute']);
  for (const k of kv.keys()) if (!known.has(k)) throw new PlanError(`unknown key '${k}': expected ${[...known].join(', ')}`, '--layout');
  const int = (k: string, d: number): number => {
    const v = kv.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new PlanError(`${k} must be a positive integer, got '${v}'`, '--layout');
    return n;
  };
  const tp = int('tp', 1), pp = int('pp', 1);
  if (gpus % (tp * pp) !== 0) throw new PlanError(`tp ${tp} x pp ${pp} does not divide ${gpus} GPUs`, '--layout');
  const dp = int('dp', gpus / (tp * pp));
  const expertText = (kv.get('expert') ?? (m.experts ? 'edp' : 'edp')).toLowerCase();
  if (expertText !== 'ep' && expertText !== 'etp' && expertText !== 'edp') throw new PlanError(`expert must be ep, etp or edp, got '${expertText}'`, '--layout');
  const expert = expertText as ExpertPlacement;
  const sizes = placementSizes(expert, tp, dp);
  const stagesText = kv.get('stages');
  let stages = evenStages(m.layers, pp);
  if (stagesText) {
    stages = stagesText.split(/[+/ ]/).filter(Boolean).map(Number);
    if (stages.some((n) => !Number.isInteger(n))) throw new PlanError(`stages must be integers joined by '+', got '${stagesText}'`, '--layout');
  }
  const rc = (kv.get('recompute') ?? 'none').split(/[+/ ]/).filter(Boolean);
  for (const r of rc) if (!RECOMPUTE_MODES.includes(r as Recompute)) throw new PlanError(`recompute must be none, selective or full, got '${r}'`, '--layout');
  const recompute = rc.length === 1 ? Array<Recompute>(pp).fill(rc[0] as Recompute) : (rc as Recompute[]);
  return { tp, pp, dp, vp: int('vp', 1), microBatch: int('mb', 1), expert, ep: int('ep', m.experts ? sizes.ep : 1), etp: int('etp', m.experts ? sizes.etp : 1), stages, recompute };
}

/** The layout in the syntax parseLayout reads. */
export function formatLayout(l: Layout, moe: boolean): string {
  const rc = l.recompute.every((r) => r === l.recompute[0]) ? l.recompute[0] : l.recompute.join('+');
  return [`tp=${l.tp}`, `pp=${l.pp}`, `dp=${l.dp}`, l.vp > 1 ? `vp=${l.vp}` : '', `mb=${l.microBatch}`, moe ? `expert=${l.expert},ep=${l.ep},etp=${l.etp}` : '', l.pp > 1 ? `stages=${l.stages.join('+')}` : '', `recompute=${rc}`].filter(Boolean).join(',');
}
