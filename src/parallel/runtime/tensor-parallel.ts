/**
 * Tensor parallelism on the runtime side: the model's seams bound to a group, a whole model cut
 * into a rank's slices (from a seed, a model directory or a checkpoint), and the slices gathered
 * back into whole tensors (checkpoints are always written whole, in the Hugging Face layout, so a
 * run resumes under any layout).
 */
import type { Backend } from '../../backend/backend.js';
import { type ExpertParallelOps, shardPlan, slicedShape, sliceValues, type SliceSpec, type TensorParallelOps, type TensorShard, unevenSplit } from '../../model/shard.js';
import { type Param, parallelPlan, type PipelineStage, SkyworkMoE, stageHolds } from '../../model/skywork-moe.js';
import * as T from '../../tensor/index.js';
import { AdamW } from '../../train/optimizer.js';
import { allToAllRows, copyToGroup, gatherRows, gatherRowsReplicated, reduceFromGroup, reduceScatterRows, scatterRows } from './autograd-comm.js';
import type { Group } from './comm.js';

/** The model's seams over `group` (rank `group.index` of `group.size`). */
export function tensorParallelOps(group: Group, experts: TensorShard['experts'], sequenceParallel = false): TensorParallelOps {
  const ops: TensorParallelOps = { shard: { size: group.size, index: group.index, experts }, copy: (x) => copyToGroup(x, group), reduce: (x) => reduceFromGroup(x, group) };
  if (sequenceParallel && group.size > 1) {
    const counts = (rows: number) => unevenSplit(rows, group.size);
    ops.sequence = {
      rows: (N) => {
        const c = counts(N);
        const from = c.slice(0, group.index).reduce((a, b) => a + b, 0);
        return [from, from + c[group.index]!];
      },
      scatter: (x) => scatterRows(x, group, counts(x.shape[0]!)),
      gather: (x, N) => gatherRows(x, group, counts(N)),
      gatherReplicated: (x, N) => gatherRowsReplicated(x, group, counts(N)),
      reduceScatter: (x) => reduceScatterRows(x, group, counts(x.shape[0]!)),
    };
  }
  return ops;
}

/**
 * This rank's model: the slices of a whole model's weights (tensor parallelism) of its pipeline
 * stage's parameters (pipeline parallelism); the whole model is left to the caller.
 */
export function sliceModel(whole: SkyworkMoE, tp?: TensorParallelOps, stage?: PipelineStage, ep?: ExpertParallelOps): SkyworkMoE {
  const plan = parallelPlan(whole.config, tp, ep);
  const params = new Map<string, Param>();
  for (const [name, p] of whole.params) {
    if (!stageHolds(whole.config, stage, name)) continue;
    if (!(p instanceof T.Tensor)) throw new Error(`parallel training needs f32 weights; '${name}' is not one`);
    const cut = plan.get(name);
    params.set(name, T.keep(cut ? T.tensor(sliceValues(p.toFloat32(), p.shape, cut), slicedShape(p.shape, cut), 'f32', whole.backend) : T.tensor(p.toFloat32(), p.shape, 'f32', whole.backend)));
  }
  return SkyworkMoE.fromParams(whole.config, params, whole.backend, tp, stage, ep);
}

/**
 * The model's expert-parallel seams over `group` (the tensor- and data-parallel ranks of a stage,
 * tensor-parallel index fastest): whole experts per rank, rows by all-to-all. `tp` is this rank's
 * place in its tensor-parallel group: each of its ranks sends a share of the (replicated) rows.
 */
export function expertParallelOps(group: Group, tp: { size: number; index: number } = { size: 1, index: 0 }): ExpertParallelOps {
  return {
    shard: { size: group.size, index: group.index },
    rows: (N) => {
      const counts = unevenSplit(N, tp.size);
      const from = counts.slice(0, tp.index).reduce((a, b) => a + b, 0);
      return [from, from + counts[tp.index]!];
    },
    exchange: (x, send, recv) => allToAllRows(x, group, send, recv),
    counts: (perRank) => group.exchangeCountVectors(perRank, perRank[group.index]!.length),
  };
}

/** Rank blocks [outer, count_r, inner] (concatenated in rank order) joined into [outer, total, inner]. */
function joinSlices(blocks: Float32Array, shape: readonly number[], specs: readonly SliceSpec[]): Float32Array {
  const dim = specs[0]!.dim, total = specs[0]!.total;
  const outer = shape.slice(0, dim).reduce((a, b) => a * b, 1), inner = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(outer * total * inner);
  let src = 0;
  for (const s of specs) {
    for (let o = 0; o < outer; o++) out.set(blocks.subarray(src + o * s.count * inner, src + (o + 1) * s.count * inner), (o * total + s.from) * inner);
    src += outer * s.count * inner;
  }
  return out;
}

/**
 * Whole values of every parameter (and of two per-parameter optimizer moments, when given) from
 * the slices of a TP group: each split tensor is all-gathered over the group and joined along its
 * split dimension. Every rank of the group must call it, in the same order.
 */
export function gatherWhole(model: SkyworkMoE, groups: { tp?: Group; ep?: Group }, extra: ((name: string) => Float32Array)[] = []): WholeTensor[] {
  const c = model.config;
  const tpPlans = groups.tp && model.tp ? Array.from({ length: groups.tp.size }, (_, index) => shardPlan(c, { ...model.tp!.shard, index })) : null;
  const epPlans = groups.ep && model.ep ? Array.from({ length: groups.ep.size }, (_, index) => shardPlan(c, { size: 1, index: 0, experts: 'ep' }, { size: groups.ep!.size, index })) : null;
  const out: WholeTensor[] = [];
  for (const [name, p] of model.params) {
    const t = p as T.Tensor;
    // a parameter is cut by one of the two (experts by EP, the rest by TP), or by neither
    const byEp = epPlans?.[groups.ep!.index]!.get(name);
    const plans = byEp ? epPlans! : tpPlans;
    const group = byEp ? groups.ep! : groups.tp!;
    const cut = byEp ?? tpPlans?.[groups.tp!.index]!.get(name);
    const sources = [() => t.toFloat32(), ...extra.map((f) => () => f(name))];
    if (!cut || !plans) {
      out.push({ name, shape: [...t.shape], values: sources.map((f) => f()) });
      continue;
    }
    const specs = plans.map((pl) => pl.get(name)!);
    const shape = [...t.shape];
    shape[cut.dim] = cut.total;
    const sizes = specs.map((s) => (t.size / cut.count) * s.count);
    out.push({ name, shape, values: sources.map((f) => joinSlices(group.allGather(f(), sizes), shape, specs)) });
  }
  return out;
}

/** A parameter's whole values (and its optimizer moments, and its AdamW step count when it came from another rank). */
export interface WholeTensor {
  name: string;
  shape: number[];
  values: Float32Array[];
  step?: number;
}

/** A whole model (and its whole AdamW, when moments are given) from gatherWhole's values, for saving. */
export function wholeModel(model: SkyworkMoE, tensors: readonly WholeTensor[], backend: Backend, opt?: AdamW): { model: SkyworkMoE; opt?: AdamW } {
  const params = new Map<string, Param>();
  for (const t of tensors) params.set(t.name, T.keep(T.tensor(t.values[0]!, t.shape, 'f32', backend)));
  const whole = SkyworkMoE.fromParams(model.config, params, backend);
  if (!opt) return { model: whole };
  const full = new AdamW(whole.parameters(), opt.opts);
  full.step = opt.step;
  for (const [n, s] of opt.steps) full.steps.set(n, s);
  for (const t of tensors) {
    if (t.step !== undefined) full.steps.set(t.name, t.step);
    full.m.get(t.name)!.assign(t.values[1]!);
    full.v.get(t.name)!.assign(t.values[2]!);
  }
  return { model: whole, opt: full };
}

/** Moments of a whole AdamW cut into this rank's slices of its stage's parameters (a checkpoint resumed under tensor or pipeline parallelism). */
export function sliceOptimizer(whole: AdamW, local: AdamW, model: SkyworkMoE): void {
  const plan = parallelPlan(model.config, model.tp, model.ep);
  local.step = whole.step;
  for (const [name, m] of whole.m) {
    if (!local.m.has(name)) continue; // another pipeline stage's
    local.steps.set(name, whole.steps.get(name)!);
    const cut = plan.get(name);
    const v = whole.v.get(name)!;
    local.m.get(name)!.assign(cut ? sliceValues(m.toFloat32(), m.shape, cut) : m.toFloat32());
    local.v.get(name)!.assign(cut ? sliceValues(v.toFloat32(), v.shape, cut) : v.toFloat32());
  }
}
