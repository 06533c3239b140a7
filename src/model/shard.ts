/**
 * Tensor parallelism's cut of the model (Megatron-LM's column/row-parallel layers, SPEC section 5):
 * which slice of every parameter a rank of a TP group holds, and how many heads and experts it runs.
 *
 * - Attention: heads are split by key/value group, unevenly when they do not divide
 *   ([q+1]*r + [q]*(p-r), Skywork's 36 heads over 8 GPUs as [5,5,5,5,4,4,4,4]); q/k/v rows and
 *   o_proj columns follow the heads. The output is a partial sum, reduced over the group.
 * - Dense MLP: gate/up rows and down columns split evenly (the remainder on the first ranks).
 * - Experts: 'etp' splits every expert's FFN the same way; 'edp' (Skywork's expert data parallel)
 *   gives each rank whole experts (E split over the group); both end in a reduction of partial
 *   outputs. Routing (the router's weights, top-k, capacity) is replicated: every rank routes
 *   every token identically.
 * - Embeddings, norms, router and lm_head are replicated.
 * The model knows only its slice and two functions from its caller (copy before a split, reduce
 * after it); which ranks they talk to is the runtime's business.
 */
import type { Tensor } from '../tensor/index.js';
import { ConfigError, isMoeLayer, type ModelConfig } from './config.js';
import { moeParamNames } from './skywork-moe.js';

export interface TensorShard {
  size: number;
  index: number;
  /** How MoE experts are placed on the group. */
  experts: 'etp' | 'edp';
}

/** What the model calls at the seams of a split (differentiable; see parallel/runtime/autograd-comm.ts). */
export interface TensorParallelOps {
  shard: TensorShard;
  /** Identity forward, gradient summed over the group (before a split). */
  copy(x: Tensor): Tensor;
  /** Partial results summed over the group (after a split). */
  reduce(x: Tensor): Tensor;
}

/** A parameter's slice on one rank: `count` of `total` along `dim`, from `from`. */
export interface SliceSpec {
  dim: number;
  from: number;
  count: number;
  total: number;
}

/** n split over p parts, the extra ones first: [q+1]*r + [q]*(p-r). */
export function unevenSplit(n: number, p: number): number[] {
  const q = Math.floor(n / p), r = n % p;
  return Array.from({ length: p }, (_, i) => q + (i < r ? 1 : 0));
}

const start = (counts: readonly number[], i: number) => counts.slice(0, i).reduce((a, b) => a + b, 0);

/** This rank's heads: key/value groups split unevenly, the query heads of each group with it. */
export function headSplit(c: ModelConfig, s: TensorShard): { heads: number; kvHeads: number; kvFrom: number } {
  const groups = unevenSplit(c.numKvHeads, s.size);
  const perGroup = c.numHeads / c.numKvHeads;
  return { heads: groups[s.index]! * perGroup, kvHeads: groups[s.index]!, kvFrom: start(groups, s.index) };
}

/** Refuse what cannot be split, naming why. */
export function checkShard(c: ModelConfig, s: TensorShard): void {
  if (!Number.isInteger(s.size) || s.size < 1 || !Number.isInteger(s.index) || s.index < 0 || s.index >= s.size) throw new ConfigError(`tensor parallel: rank ${s.index} of ${s.size} is not a rank of the group`);
  if (s.size === 1) return;
  if (c.numKvHeads < s.size) throw new ConfigError(`tensor parallel: ${c.numKvHeads} key/value heads cannot be split over ${s.size} ranks (each rank needs at least one)`);
  if (c.qkNorm === 'full') throw new ConfigError(`tensor parallel: the ${c.layout} layout's q/k norm spans all heads (a full-projection RMSNorm), which a head split would change`);
  if (c.numExperts > 0 && s.experts === 'edp' && c.numExperts < s.size) throw new ConfigError(`tensor parallel: ${c.numExperts} experts cannot be placed over ${s.size} ranks with edp (each rank needs at least one); use etp`);
  if (c.numExperts > 0 && s.experts === 'etp' && c.moeIntermediateSize < s.size) throw new ConfigError(`tensor parallel: moe_intermediate_size ${c.moeIntermediateSize} cannot be split over ${s.size} ranks`);
  if (c.intermediateSize < s.size) throw new ConfigError(`tensor parallel: intermediate_size ${c.intermediateSize} cannot be split over ${s.size} ranks`);
}

/** The slice of every split parameter on this rank (replicated parameters are absent). */
export function shardPlan(c: ModelConfig, s: TensorShard): Map<string, SliceSpec> {
  checkShard(c, s);
  const plan = new Map<string, SliceSpec>();
  if (s.size === 1) return plan;
  const D = c.headDim;
  const { heads, kvHeads, kvFrom } = headSplit(c, s);
  const perGroup = c.numHeads / c.numKvHeads;
  const slice = (count: number, from: number, total: number, dim: number): SliceSpec => ({ dim, from, count, total });
  const ff = (F: number) => {
    const counts = unevenSplit(F, s.size);
    return { count: counts[s.index]!, from: start(counts, s.index) };
  };
  for (let l = 0; l < c.numLayers; l++) {
    const a = `model.layers.${l}.self_attn`;
    plan.set(`${a}.q_proj.weight`, slice(heads * D, kvFrom * perGroup * D, c.numHeads * D, 0));
    plan.set(`${a}.k_proj.weight`, slice(kvHeads * D, kvFrom * D, c.numKvHeads * D, 0));
    plan.set(`${a}.v_proj.weight`, slice(kvHeads * D, kvFrom * D, c.numKvHeads * D, 0));
    plan.set(`${a}.o_proj.weight`, slice(heads * D, kvFrom * perGroup * D, c.numHeads * D, 1));
    if (isMoeLayer(c, l)) {
      const m = moeParamNames(c, l);
      if (s.experts === 'edp') {
        const counts = unevenSplit(c.numExperts, s.size);
        const e = slice(counts[s.index]!, start(counts, s.index), c.numExperts, 0);
        for (const n of [m.w1, m.w3, m.w2]) plan.set(n, e);
      } else {
        const f = ff(c.moeIntermediateSize);
        plan.set(m.w1, slice(f.count, f.from, c.moeIntermediateSize, 1));
        plan.set(m.w3, slice(f.count, f.from, c.moeIntermediateSize, 1));
        plan.set(m.w2, slice(f.count, f.from, c.moeIntermediateSize, 2));
      }
    } else {
      const f = ff(c.intermediateSize), p = `model.layers.${l}.mlp`;
      plan.set(`${p}.gate_proj.weight`, slice(f.count, f.from, c.intermediateSize, 0));
      plan.set(`${p}.up_proj.weight`, slice(f.count, f.from, c.intermediateSize, 0));
      plan.set(`${p}.down_proj.weight`, slice(f.count, f.from, c.intermediateSize, 1));
    }
  }
  return plan;
}

/** The shape of a parameter's slice. */
export function slicedShape(shape: readonly number[], s: SliceSpec): number[] {
  const out = [...shape];
  out[s.dim] = s.count;
  return out;
}

/** Host values of the slice of a row-major tensor of `shape`. */
export function sliceValues(values: Float32Array, shape: readonly number[], s: SliceSpec): Float32Array {
  const outer = shape.slice(0, s.dim).reduce((a, b) => a * b, 1);
  const inner = shape.slice(s.dim + 1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(outer * s.count * inner);
  for (let o = 0; o < outer; o++) out.set(values.subarray((o * s.total + s.from) * inner, (o * s.total + s.from + s.count) * inner), o * s.count * inner);
  return out;
}
