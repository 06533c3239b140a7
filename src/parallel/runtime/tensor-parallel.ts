/**
 * Tensor parallelism on the runtime side: the model's seams bound to a group, a whole model cut
 * into a rank's slices (from a seed, a model directory or a checkpoint), and the slices gathered
 * back into whole tensors (checkpoints are always written whole, in the Hugging Face layout, so a
 * run resumes under any layout).
 */
import type { Backend } from '../../backend/backend.js';
import { shardPlan, slicedShape, sliceValues, type SliceSpec, type TensorParallelOps, type TensorShard } from '../../model/shard.js';
import { type Param, SkyworkMoE } from '../../model/skywork-moe.js';
import * as T from '../../tensor/index.js';
import { AdamW } from '../../train/optimizer.js';
import { copyToGroup, reduceFromGroup } from './autograd-comm.js';
import type { Group } from './comm.js';

/** The model's seams over `group` (rank `group.index` of `group.size`). */
export function tensorParallelOps(group: Group, experts: TensorShard['experts']): TensorParallelOps {
  return { shard: { size: group.size, index: group.index, experts }, copy: (x) => copyToGroup(x, group), reduce: (x) => reduceFromGroup(x, group) };
}

/** This rank's model: the slices of a whole model's weights (the whole model is left to the caller). */
export function sliceModel(whole: SkyworkMoE, tp: TensorParallelOps): SkyworkMoE {
  const plan = shardPlan(whole.config, tp.shard);
  const params = new Map<string, Param>();
  for (const [name, p] of whole.params) {
    if (!(p instanceof T.Tensor)) throw new Error(`tensor parallel training needs f32 weights; '${name}' is not one`);
    const cut = plan.get(name);
    params.set(name, T.keep(cut ? T.tensor(sliceValues(p.toFloat32(), p.shape, cut), slicedShape(p.shape, cut), 'f32', whole.backend) : T.tensor(p.toFloat32(), p.shape, 'f32', whole.backend)));
  }
  return SkyworkMoE.fromParams(whole.config, params, whole.backend, tp);
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
export function gatherWhole(model: SkyworkMoE, tp: TensorParallelOps, group: Group, extra: ((name: string) => Float32Array)[] = []): { name: string; shape: number[]; values: Float32Array[] }[] {
  const c = model.config;
  const plans = Array.from({ length: group.size }, (_, index) => shardPlan(c, { ...tp.shard, index }));
  const out: { name: string; shape: number[]; values: Float32Array[] }[] = [];
  for (const [name, p] of model.params) {
    const t = p as T.Tensor;
    const cut = plans[group.index]!.get(name);
    const sources = [() => t.toFloat32(), ...extra.map((f) => () => f(name))];
    if (!cut) {
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

/** A whole model (and its whole AdamW, when moments are given) from gatherWhole's values, for saving. */
export function wholeModel(model: SkyworkMoE, tensors: ReturnType<typeof gatherWhole>, backend: Backend, opt?: AdamW): { model: SkyworkMoE; opt?: AdamW } {
  const params = new Map<string, Param>();
  for (const t of tensors) params.set(t.name, T.keep(T.tensor(t.values[0]!, t.shape, 'f32', backend)));
  const whole = SkyworkMoE.fromParams(model.config, params, backend);
  if (!opt) return { model: whole };
  const full = new AdamW(whole.parameters(), opt.opts);
  full.step = opt.step;
  for (const [n, s] of opt.steps) full.steps.set(n, s);
  for (const t of tensors) {
    full.m.get(t.name)!.assign(t.values[1]!);
    full.v.get(t.name)!.assign(t.values[2]!);
  }
  return { model: whole, opt: full };
}

/** Moments of a whole AdamW cut into this rank's slices (a checkpoint resumed under tensor parallelism). */
export function sliceOptimizer(whole: AdamW, local: AdamW, model: SkyworkMoE, tp: TensorParallelOps): void {
  const plan = shardPlan(model.config, tp.shard);
  local.step = whole.step;
  for (const [n, s] of whole.steps) local.steps.set(n, s);
  for (const [name, m] of whole.m) {
    const cut = plan.get(name);
    const v = whole.v.get(name)!;
    local.m.get(name)!.assign(cut ? sliceValues(m.toFloat32(), m.shape, cut) : m.toFloat32());
    local.v.get(name)!.assign(cut ? sliceValues(v.toFloat32(), v.shape, cut) : v.toFloat32());
  }
}
