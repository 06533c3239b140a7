/**
 * `skymoe plan`: choose and explain a parallel layout for training on a cluster (memory, tokens/s
 * per GPU, MFU, EP vs ETP vs EDP, the top layouts and what bounds them, the balanced pipeline
 * split, Megatron-Core arguments), or, with --inference, the FP8/BF16 serving plan; --validate
 * prints the step model against published runs; --measure runs a few training steps under a layout
 * and sets the bytes the ranks sent beside the planner's bytes model.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readConfig } from '../io/hf.js';
import { configFromHF, ConfigError, type ModelConfig } from '../model/config.js';
import { formatCount } from '../model/params.js';
import { preset } from '../model/presets.js';
import { shapeOf, shapeParams, trainFlopsPerToken, type ModelShape } from '../parallel/planner/flops.js';
import { cluster, PlanError, type Cluster } from '../parallel/planner/gpus.js';
import { planInference, type InferencePlan } from '../parallel/planner/inference.js';
import { formatArgs, megatronArgs, type MegatronExport } from '../parallel/planner/megatron.js';
import { expertRanks } from '../parallel/planner/placement.js';
import { balanceReport, comparePlacements, search, splitFor, type BalanceReport, type PlacementComparison, type RankedPlan } from '../parallel/planner/search.js';
import { checkLayout, defaultSetup, formatLayout, parseLayout, RECOMPUTE_MODES, type Recompute, type TrainingSetup } from '../parallel/planner/setup.js';
import { boundOf, evaluate, type Evaluation } from '../parallel/planner/step.js';
import { validate } from '../parallel/planner/validation.js';
import { checkTraffic, TRAFFIC_TOLERANCE, type TrafficCheck } from '../parallel/traffic-check.js';
import { sentBytes } from '../parallel/planner/traffic.js';
import type { BackendName } from '../backend/backend.js';
import { DEFAULT_TRAIN } from '../train/run.js';

export interface PlanCliOptions {
  preset?: string;
  config?: string;
  gpus?: number;
  gpu?: string;
  gpusPerNode?: number;
  intraNodeGbs?: number;
  interNodeGbs?: number;
  globalBatchTokens?: number;
  seq?: number;
  microBatch?: number;
  precision?: string;
  zero?: number;
  distributedOptimizer?: boolean;
  recompute?: string;
  layout?: string;
  inference?: boolean;
  batchSizes?: string;
  context?: number;
  top?: number;
  validate?: boolean;
  json?: boolean;
  /** Run a few training steps under --layout and compare the bytes sent with the planner's. */
  measure?: boolean;
  /** --measure: a model directory to train from (with its tokenizer). */
  model?: string;
  steps?: number;
  batch?: number;
  accum?: number;
  backend?: BackendName;
}

/** Left-aligned first column, right-aligned numbers, two spaces between columns. */
export function table(rows: string[][], header?: string[]): string[] {
  const all = header ? [header, ...rows] : rows;
  const widths = all[0]!.map((_, j) => Math.max(...all.map((r) => (r[j] ?? '').length)));
  const numeric = widths.map((_, j) => rows.every((r) => /^[-+]?[\d.,]+( ?%| GB| ms| s)?$|^-$/.test(r[j] ?? '')));
  const fmt = (r: string[]) => r.map((c, j) => (numeric[j] ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join('  ').trimEnd();
  const out = all.map(fmt);
  if (header) out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return out.map((l) => `  ${l}`);
}

const gb = (b: number) => `${(b / 1e9).toFixed(1)} GB`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const ms = (s: number) => `${(s * 1e3).toFixed(1)} ms`;

function loadModel(o: PlanCliOptions): { cfg: ModelConfig; name: string } {
  if ((o.preset === undefined) === (o.config === undefined)) throw new PlanError('give a model: --preset NAME or --config FILE (one of them)', '--preset');
  if (o.preset) return { cfg: preset(o.preset), name: o.preset };
  const path = o.config!;
  if (!existsSync(path)) throw new ConfigError('not found', path);
  if (statSync(path).isDirectory()) return { cfg: readConfig(path), name: path };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`not valid JSON: ${(e as Error).message}`, path);
  }
  return { cfg: configFromHF(raw, path), name: path };
}

function setupFrom(o: PlanCliOptions): TrainingSetup {
  const seq = o.seq ?? 4096;
  const tokens = o.globalBatchTokens ?? 2048 * seq;
  if (!Number.isFinite(tokens) || tokens < seq) throw new PlanError(`expected at least one sequence (${seq} tokens), got ${tokens}`, '--global-batch-tokens');
  if (tokens % seq !== 0) throw new PlanError(`${tokens} tokens is not a whole number of ${seq}-token sequences`, '--global-batch-tokens');
  if (o.precision !== undefined && o.precision !== 'bf16' && o.precision !== 'fp8') throw new PlanError(`expected bf16 or fp8, got '${o.precision}'`, '--precision');
  if (o.zero !== undefined && o.distributedOptimizer) throw new PlanError('give --zero or --distributed-optimizer, not both', '--zero');
  if (o.zero !== undefined && ![0, 1, 2, 3].includes(o.zero)) throw new PlanError(`expected 0, 1, 2 or 3, got ${o.zero}`, '--zero');
  return defaultSetup({ seq, globalBatch: tokens / seq, precision: (o.precision ?? 'bf16') as 'bf16' | 'fp8', zero: (o.zero ?? 1) as 0 | 1 | 2 | 3 });
}

function recomputeModes(o: PlanCliOptions): readonly Recompute[] {
  if (o.recompute === undefined) return RECOMPUTE_MODES;
  if (!RECOMPUTE_MODES.includes(o.recompute as Recompute)) throw new PlanError(`expected none, selective or full, got '${o.recompute}'`, '--recompute');
  return [o.recompute as Recompute];
}

export interface TrainingPlanReport {
  model: { name: string; totalParams: number; activeParams: number; trainFlopsPerToken: number };
  cluster: { gpu: string; gpus: number; gpusPerNode: number; intraNodeGBs: number; interNodeGBs: number; memoryBytes: number };
  setup: TrainingSetup;
  search: { considered: number; feasible: number; elapsedMs: number } | null;
  chosen: Evaluation & { layoutText: string; bound: string; why: string };
  top: (RankedPlan & { layoutText: string })[];
  placements: PlacementComparison[];
  balance: BalanceReport;
  megatron: MegatronExport;
}

/** The training plan as data (what --json prints). */
export function trainingPlan(cfg: ModelConfig, name: string, c: Cluster, s: TrainingSetup, o: { layout?: string; microBatch?: number; recompute?: readonly Recompute[]; top?: number } = {}): TrainingPlanReport {
  const m = shapeOf(cfg, name);
  const p = shapeParams(m);
  const moe = m.experts > 0;
  let chosen: Evaluation;
  let searched: ReturnType<typeof search> | null = null;
  if (o.layout) {
    let l = parseLayout(o.layout, m, c.gpus);
    const explicitStages = /(^|,)\s*stages\s*=/.test(o.layout);
    const explicitRecompute = /(^|,)\s*recompute\s*=/.test(o.layout);
    checkLayout(l, m, c.gpus, s);
    if (!explicitStages || !explicitRecompute) {
      const b = splitFor(m, s, l, c, explicitRecompute ? [l.recompute[0]!] : o.recompute, !explicitStages);
      if (!b) throw new PlanError(`${formatLayout(l, moe)} does not fit in ${gb(c.gpu.memoryBytes)} per GPU with any recomputation`, '--layout');
      l = explicitStages ? { ...l, recompute: b.recompute } : b;
    }
    chosen = evaluate(m, s, l, c);
    if (!chosen.fits) throw new PlanError(`${formatLayout(l, moe)} needs ${gb(chosen.peakMemory)} per GPU, more than the ${gb(c.gpu.memoryBytes)} of a ${c.gpu.name}`, '--layout');
  } else {
    searched = search(m, s, c, { microBatches: o.microBatch ? [o.microBatch] : undefined, recompute: o.recompute });
    if (!searched.ranked.length) throw new PlanError(`no layout of ${c.gpus} x ${c.gpu.name} fits ${name} (${formatCount(p.total)} parameters) with a global batch of ${s.globalBatch} x ${s.seq} tokens; add GPUs, use --zero 3, or shrink the micro-batch or sequence`, '--gpus');
    chosen = searched.ranked[0]!.evaluation;
  }
  const b = boundOf(chosen, c.gpu.memoryBytes);
  const top = (searched?.ranked ?? [])
    .filter((r, i, all) => all.findIndex((x) => sameGrid(x.evaluation, r.evaluation)) === i)
    .slice(0, o.top ?? 3)
    .map((r) => ({ ...r, layoutText: formatLayout(r.evaluation.layout, moe) }));
  return {
    model: { name, totalParams: p.total, activeParams: p.active, trainFlopsPerToken: trainFlopsPerToken(m, s.seq) },
    cluster: { gpu: c.gpu.name, gpus: c.gpus, gpusPerNode: c.gpusPerNode, intraNodeGBs: c.intraNodeGBs, interNodeGBs: c.interNodeGBs, memoryBytes: c.gpu.memoryBytes },
    setup: s,
    search: searched && { considered: searched.considered, feasible: searched.feasible, elapsedMs: Math.round(searched.elapsedMs) },
    chosen: { ...chosen, layoutText: formatLayout(chosen.layout, moe), bound: b.bound, why: b.why },
    top,
    placements: searched ? comparePlacements(m, c, searched) : [],
    balance: balanceReport(m, s, chosen.layout, c, searched ?? undefined),
    megatron: megatronArgs(m, s, chosen.layout, cfg),
  };
}

function sameGrid(a: Evaluation, b: Evaluation): boolean {
  const x = a.layout, y = b.layout;
  return x.tp === y.tp && x.pp === y.pp && x.dp === y.dp && x.expert === y.expert && x.ep === y.ep && x.etp === y.etp;
}

function stageRows(e: Evaluation): string[][] {
  const l = e.layout;
  return l.stages.map((n, i) => [String(i), String(n), l.recompute[i]!, ms(e.time.stageTimes[i]!), gb(e.memory[i]!.total)]);
}

export function renderTrainingPlan(r: TrainingPlanReport, m: ModelShape): string[] {
  const out: string[] = [];
  const e = r.chosen;
  const t = e.time;
  out.push(`model    ${r.model.name}: ${formatCount(r.model.totalParams)} parameters, ${formatCount(r.model.activeParams)} active; ${(r.model.trainFlopsPerToken / 1e9).toFixed(1)} GFLOP per token (fwd+bwd, seq ${r.setup.seq})`);
  out.push(`cluster  ${r.cluster.gpus} x ${r.cluster.gpu} (${gb(r.cluster.memoryBytes)}), ${r.cluster.gpusPerNode} per node, ${r.cluster.intraNodeGBs} GB/s in the node, ${r.cluster.interNodeGBs} GB/s per GPU across nodes`);
  out.push(`training global batch ${r.setup.globalBatch} x ${r.setup.seq} = ${(r.setup.globalBatch * r.setup.seq / 1e6).toFixed(2)}M tokens, ${r.setup.precision}, ${r.setup.zero === 1 ? 'ZeRO-1 (distributed optimizer)' : `ZeRO-${r.setup.zero}`}, routing imbalance ${r.setup.routingImbalance}`);
  if (r.search) out.push(`search   ${r.search.considered} layouts, ${r.search.feasible} fit, ${r.search.elapsedMs} ms`);
  out.push('', `chosen layout  ${e.layoutText}`);
  out.push(`  ${t.micro} micro-batches of ${e.layout.microBatch} x ${r.setup.seq} tokens per data-parallel rank; bound: ${e.bound} (${e.why})`);
  out.push(...table(stageRows(e), ['stage', 'layers', 'recompute', 'per micro-batch', 'memory']));
  const peak = e.memory.reduce((a, b) => (b.total > a.total ? b : a));
  out.push('', `memory per GPU (most loaded stage, stage ${e.memory.indexOf(peak)})`);
  out.push(...table([
    ['weights (bf16)', gb(peak.weights)],
    ['gradients (fp32)', gb(peak.grads)],
    ['optimizer (fp32 master + Adam)', gb(peak.optimizer)],
    ['activations (in-flight micro-batches)', gb(peak.activations)],
    ['buffers (dispatch, logits, workspace)', gb(peak.buffers)],
    ['total', `${gb(peak.total)}`],
    ['capacity', gb(r.cluster.memoryBytes)],
  ]));
  out.push('', 'throughput');
  out.push(...table([
    ['tokens/s per GPU', e.tokensPerGpuSecond.toFixed(0)],
    ['model TFLOP/s per GPU', e.tflopsPerGpu.toFixed(1)],
    ['MFU (bf16 peak)', pct(e.mfu)],
    ['step time', `${t.step.toFixed(2)} s`],
  ]));
  out.push(...table([
    ['compute', `${t.compute.toFixed(2)} s`, pct(t.compute / t.step)],
    ['pipeline bubble', `${t.bubble.toFixed(2)} s`, pct(t.bubble / t.step)],
    ['tensor-parallel collectives', `${t.tp.toFixed(2)} s`, pct(t.tp / t.step)],
    ['expert all-to-all', `${t.a2a.toFixed(2)} s`, pct(t.a2a / t.step)],
    ['pipeline send/recv', `${t.p2p.toFixed(2)} s`, pct(t.p2p / t.step)],
    ['recomputation', `${t.recompute.toFixed(2)} s`, pct(t.recompute / t.step)],
    ['data-parallel (exposed)', `${t.dataParallel.toFixed(2)} s`, pct(t.dataParallel / t.step)],
    ['optimizer step', `${t.optimizer.toFixed(2)} s`, pct(t.optimizer / t.step)],
  ], ['step breakdown (slowest stage)', 'seconds', 'share']));
  if (r.placements.length) {
    out.push('', 'expert placement (SPEC section 5), best layout of each at its SPEC sizes');
    out.push(...table(r.placements.map((p) => {
      const name = { ep: 'EP  (EP = DP x TP)', etp: 'ETP (EP = DP, experts split over TP)', edp: 'EDP (EP = TP, Skywork)' }[p.placement];
      if (!p.best) return [name, '-', '-', '-', '-', '-', p.problem ?? ''];
      const be = p.best.evaluation;
      return [name, formatLayout(be.layout, true).replace(/,stages=[^,]*/, ''), be.tokensPerGpuSecond.toFixed(0), pct(be.mfu), gb(be.peakMemory), pct(be.time.a2a / be.time.step), p.best.bound];
    }), ['placement', 'layout', 'tok/s/GPU', 'MFU', 'memory', 'all-to-all', 'bound / why not']));
    out.push('  which ranks hold which experts in the chosen layout (one pipeline stage):');
    for (const line of expertRanks(m, e.layout, 8)) out.push(`    ${line}`);
  }
  if (r.top.length) {
    out.push('', `top ${r.top.length} layouts`);
    out.push(...table(r.top.map((p, i) => [String(i + 1), p.layoutText.replace(/,stages=[^,]*/, ''), p.evaluation.tokensPerGpuSecond.toFixed(0), pct(p.evaluation.mfu), gb(p.evaluation.peakMemory), p.bound]), ['#', 'layout', 'tok/s/GPU', 'MFU', 'memory', 'bound']));
    for (const [i, p] of r.top.entries()) out.push(`  ${i + 1}. ${p.why}`);
  }
  const bal = r.balance;
  out.push('', 'pipeline balance (embedding on the first stage, output layer and loss on the last)');
  const rows = [[`balanced, pp ${bal.balanced.layout.pp}`, bal.balanced.layout.stages.join(','), String(r.cluster.gpus), bal.balanced.tokensPerGpuSecond.toFixed(0), ms(Math.max(...bal.balanced.time.stageTimes))]];
  if (bal.even) rows.push([`even, pp ${bal.even.layout.pp} (tp ${bal.even.layout.tp}, dp ${bal.even.layout.dp})`, bal.even.layout.stages.join(','), String(r.cluster.gpus), bal.even.tokensPerGpuSecond.toFixed(0), ms(Math.max(...bal.even.time.stageTimes))]);
  for (const u of bal.nearby) rows.push([`even, pp ${u.evaluation.layout.pp} (other GPU count)`, u.evaluation.layout.stages.join(','), String(u.gpus), u.evaluation.tokensPerGpuSecond.toFixed(0), ms(Math.max(...u.evaluation.time.stageTimes))]);
  out.push(...table(rows, ['split', 'layers per stage', 'GPUs', 'tok/s/GPU', 'slowest stage']));
  if (bal.gain !== null) out.push(`  predicted gain of the balanced split over the best even split on these GPUs: ${bal.gain >= 0 ? '+' : ''}${pct(bal.gain)} tokens/s per GPU`);
  else out.push(`  no even split of the ${m.layers} layers fits these ${r.cluster.gpus} GPUs and batch: Megatron-Core needs the uneven-split arguments below; the other rows are even splits on stage counts that divide the layers (other GPU counts: compare per GPU)`);
  out.push('', 'Megatron-Core arguments');
  out.push(...formatArgs(r.megatron.args));
  for (const n of r.megatron.notes) out.push(`  note: ${n}`);
  if (r.megatron.missing.length) {
    out.push('', 'what Megatron-Core has no flag for (add these yourself)');
    for (const x of r.megatron.missing) out.push(`  - ${x.feature}: ${x.add}`);
    out.push('  (skymoe export megatron writes a training kit whose plugin adds the router ones: docs/megatron.md)');
  }
  return out;
}

export function renderInference(p: InferencePlan, name: string, c: Cluster, weights: string): string[] {
  const out: string[] = [];
  out.push(`model    ${name}, ${weights.toUpperCase()} weights (${gb(p.totalWeightBytes)} in all)`);
  out.push(`cluster  ${c.gpus} x ${c.gpu.name} (${gb(c.gpu.memoryBytes)}, ${c.gpu.memoryTBs} TB/s)`);
  out.push(`heads    split ${JSON.stringify(p.headSplit)} over the ${c.gpus} GPUs; q/k/v columns and o_proj rows follow it, FFN widths split evenly`);
  out.push('', 'memory per GPU (most loaded)');
  out.push(...table([
    ['attention', gb(p.weightsPerGpu.attention)],
    ['experts / MLP', gb(p.weightsPerGpu.experts)],
    ['embedding + lm_head (bf16, vocab-parallel)', gb(p.weightsPerGpu.embeddings)],
    ['router, norms (bf16, replicated)', gb(p.weightsPerGpu.other)],
    ['weights total', gb(p.weightsPerGpu.total)],
    ['KV cache per token (this GPU / all GPUs)', `${(p.kvPerTokenGpu / 1e3).toFixed(0)} KB / ${(p.kvPerToken / 1e3).toFixed(0)} KB`],
    ['KV cache capacity', `${p.kvCapacityTokens} tokens`],
  ]));
  if (!p.fits) out.push('  the weights do not fit: more GPUs or FP8 weights are needed');
  out.push('', 'decode roofline');
  out.push(...table(p.decode.map((d) => [String(d.batch), d.tokensPerSecond.toFixed(0), ms(d.step), d.bound, d.fits ? 'yes' : 'no']), ['batch', 'tokens/s', 'per step', 'bound', 'KV fits']));
  return out;
}

export function renderValidation(): string[] {
  const rows = validate().map((v) => [v.run.what, v.run.unit, String(v.run.reported), v.predicted.toFixed(1), `${v.error >= 0 ? '+' : ''}${pct(v.error)}`]);
  return table(rows, ['published run', 'unit', 'reported', 'predicted', 'error']);
}

export function runPlan(o: PlanCliOptions): void | Promise<void> {
  if (o.measure) return runMeasure(o);
  if (o.validate) {
    const v = validate();
    if (o.json) console.log(JSON.stringify(v.map((x) => ({ id: x.run.id, what: x.run.what, source: x.run.source, unit: x.run.unit, reported: x.run.reported, predicted: x.predicted, error: x.error, assumptions: x.run.assumptions })), null, 2));
    else for (const l of renderValidation()) console.log(l);
    return;
  }
  const { cfg, name } = loadModel(o);
  if (o.gpus === undefined) throw new PlanError('how many GPUs? (e.g. --gpus 1536)', '--gpus');
  if (o.gpu === undefined) throw new PlanError('which GPU? (e.g. --gpu a800-80g)', '--gpu');
  const c = cluster(o.gpu, o.gpus, { gpusPerNode: o.gpusPerNode, intraNodeGBs: o.intraNodeGbs, interNodeGBs: o.interNodeGbs });
  if (o.inference) {
    const weights = o.precision ?? 'fp8';
    if (weights !== 'fp8' && weights !== 'bf16') throw new PlanError(`expected bf16 or fp8, got '${weights}'`, '--precision');
    const batchSizes = o.batchSizes?.split(',').map((x) => {
      const n = Number(x.trim());
      if (!Number.isInteger(n) || n < 1) throw new PlanError(`expected positive integers separated by commas, got '${o.batchSizes}'`, '--batch-sizes');
      return n;
    });
    const p = planInference(shapeOf(cfg, name), c, { weights, batchSizes, context: o.context });
    if (o.json) console.log(JSON.stringify(p, null, 2));
    else for (const l of renderInference(p, name, c, weights)) console.log(l);
    return;
  }
  const s = setupFrom(o);
  const r = trainingPlan(cfg, name, c, s, { layout: o.layout, microBatch: o.microBatch, recompute: recomputeModes(o), top: o.top });
  if (o.json) console.log(JSON.stringify(r, null, 2));
  else for (const l of renderTrainingPlan(r, shapeOf(cfg, name))) console.log(l);
}

const intBytes = (b: number) => Math.round(b).toString();

/** The lines of `skymoe plan --measure`: one per collective kind and group, control traffic apart, a summary. */
export function renderTrafficCheck(r: TrafficCheck): string[] {
  const at = `measure layout=${r.layout}`;
  const out = [`${at} planner_layout=${r.plannerLayout} zero=${r.zero} sp=${r.sequenceParallel ? 1 : 0} model=${r.model} seq=${r.seq} batch=${r.batch} accum=${r.accum} steps=${r.steps} ranks=${r.ranks} unit=bytes/step/rank elements=fp32`];
  const ratio = (x: number | null) => (x === null ? '-' : Number.isFinite(x) ? x.toFixed(3) : 'inf');
  for (const row of r.rows) {
    const r2 = row.routed;
    // an all-to-all's ratio is of its routed bytes (sent + kept); the share kept depends on routing
    const routed = r2 ? ` routed_predicted_bytes=${intBytes(r2.predicted)} routed_measured_bytes=${r2.measured === null ? '-' : intBytes(r2.measured)} kept_share=${r2.keptShare === null ? '-' : r2.keptShare.toFixed(3)} even_kept_share=${r2.evenKeptShare.toFixed(3)}` : '';
    out.push(`${at} kind=${row.kind} group=${row.group} predicted_bytes=${intBytes(row.predicted)} measured_bytes=${row.measured === null ? '-' : intBytes(row.measured)}${routed} ratio=${ratio(row.ratio)}${row.measured === null ? ' not run' : ''}`);
    for (const t of r.transfers.filter((t) => t.kind === row.kind && t.group === row.group)) {
      out.push(`${at}   predicted ${t.what}, ${t.pass}: ${+t.calls.toFixed(3)} x ${intBytes(t.bytes)} B over ${t.size} ranks = ${intBytes(sentBytes(t))} B sent`);
    }
  }
  for (const c of r.control) out.push(`${at} phase=control kind=${c.kind} group=${c.group} run_bytes=${intBytes(c.bytes)} (not modeled)`);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const predicted = intBytes(sum(r.rows.map((x) => x.predicted)));
  if (r.notRun !== null) {
    out.push(`${at} summary predicted_bytes=${predicted} measured_bytes=- result=not-run (skymoe train does not run this layout yet: ${r.notRun})`);
    return out;
  }
  const worst = Number.isFinite(r.worst!) ? `${(100 * r.worst!).toFixed(2)}%` : 'inf';
  const tolerance = `${100 * TRAFFIC_TOLERANCE}%`;
  out.push(`${at} summary predicted_bytes=${predicted} measured_bytes=${intBytes(sum(r.rows.map((x) => x.measured!)))} control_run_bytes=${intBytes(sum(r.control.map((c) => c.bytes)))} worst_ratio_error=${worst} tolerance=${tolerance} result=${r.ok ? 'ok' : 'MISMATCH'}`);
  return out;
}

/** `--measure`: train a few steps under --layout on worker-thread ranks; exit code 1 when a kind and group is off by more than 1% (an all-to-all: its routed bytes). */
async function runMeasure(o: PlanCliOptions): Promise<void> {
  if (!o.layout) throw new PlanError('--measure needs a layout to run, e.g. --layout tp=2,dp=2,expert=edp', '--layout');
  if (o.config !== undefined) throw new PlanError('--measure trains the model: give --preset NAME or --model DIR (with its tokenizer), not --config', '--config');
  for (const [flag, v] of [['--inference', o.inference], ['--validate', o.validate], ['--micro-batch', o.microBatch], ['--global-batch-tokens', o.globalBatchTokens]] as const) {
    if (v !== undefined && v !== false) throw new PlanError(`not with --measure (${flag === '--micro-batch' ? 'the micro-batch is --batch' : flag === '--global-batch-tokens' ? 'the step is --accum micro-batches of --batch sequences' : 'another kind of plan'})`, flag);
  }
  const r = await checkTraffic({
    layout: o.layout,
    zero: o.zero,
    preset: o.model ? o.preset : o.preset ?? 'tiny',
    modelDir: o.model,
    steps: o.steps ?? 3,
    batch: o.batch ?? DEFAULT_TRAIN.batch,
    seq: o.seq ?? DEFAULT_TRAIN.seq,
    accum: o.accum,
    backend: o.backend,
    cores: process.env.SKYMOE_THREADS ? Number(process.env.SKYMOE_THREADS) : undefined,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (o.json) console.log(JSON.stringify(r, (_, v: unknown) => (v === Infinity ? 'inf' : v), 2));
  else for (const l of renderTrafficCheck(r)) console.log(l);
  if (r.notRun === null && !r.ok) process.exitCode = 1;
}
