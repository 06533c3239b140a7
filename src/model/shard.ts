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
 *   every token identically. 'ep' leaves the experts out of the TP cut: they are placed whole over
 *   an expert-parallel group (tp x dp ranks) and tokens travel to them by all-to-all
 *   (ExpertParallelOps).
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
  /** How MoE experts are placed on the group ('ep': not on it, see ExpertParallelOps). */
  experts: 'etp' | 'edp' | 'ep';
}

/**
 * Expert parallelism (Megatron's EP, SPEC section 5): whole experts spread over a group of ranks
 * that route different tokens (data-parallel replicas, and each tensor-parallel rank's share of
 * the rows); a token's hidden state goes to the rank of each expert it chose and its output comes
 * back, by all-to-all.
 */
export interface ExpertParallelOps {
  /** This rank in the expert-parallel group; experts split over it as unevenSplit(E, size). */
  shard: { size: number; index: number };
  /** Under tensor parallelism, this rank's share of the rows [from, to) of N (the others' go from their TP peers). */
  rows(N: number): [number, number];
  /** Differentiable all-to-all of rows [sum(send), H]: send[j] rows to group rank j, recv[j] from it. */
  exchange(x: Tensor, send: readonly number[], recv: readonly number[]): Tensor;
  /** Per group rank j, the counts this rank sends it (one per expert of j); returns what each rank sends this one. */
  counts(perRank: readonly (readonly number[])[]): number[][];
}

/** What the model calls at the seams of a split (differentiable; see parallel/runtime/autograd-comm.ts). */
export interface TensorParallelOps {
  shard: TensorShard;
  /** Identity forward, gradient summed over the group (before a split). */
  copy(x: Tensor): Tensor;
  /** Partial results summed over the group (after a split). */
  reduce(x: Tensor): Tensor;
  /** Sequence parallelism: between the split blocks each rank holds only its rows of the tokens. */
  sequence?: SequenceParallelOps;
}

/**
 * Megatron's sequence parallelism (Korthikanti et al. 2022): the norms and residual adds between
 * the tensor-parallel blocks run on this rank's rows of the tokens; each block's input is
 * all-gathered (its backward a reduce-scatter) and its partial output reduce-scattered (backward
 * an all-gather) instead of all-reduced. Work every rank repeats on all tokens (routing, the head)
 * takes an all-gather whose backward keeps this rank's rows. Rows are [N, C], split unevenly.
 */
export interface SequenceParallelOps {
  /** This rank's rows [from, to) of N (unevenSplit, the extra rows first). */
  rows(N: number): [number, number];
  /** All rows -> this rank's (backward all-gather). */
  scatter(x: Tensor): Tensor;
  /** This rank's rows of N -> all, into a split block (backward reduce-scatter). */
  gather(x: Tensor, N: number): Tensor;
  /** This rank's rows of N -> all, into replicated work (backward: this rank's rows of the gradient). */
  gatherReplicated(x: Tensor, N: number): Tensor;
  /** A split block's partial sums of all rows -> this rank's rows of the sum (backward all-gather). */
  reduceScatter(x: Tensor): Tensor;
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

/** Refuse an expert-parallel group the experts cannot be placed on. */
export function checkExpertShard(c: ModelConfig, ep: { size: number; index: number }): void {
  if (!Number.isInteger(ep.size) || ep.size < 1 || !Number.isInteger(ep.index) || ep.index < 0 || ep.index >= ep.size) throw new ConfigError(`expert parallel: rank ${ep.index} of ${ep.size} is not a rank of the group`);
  if (c.numExperts === 0) throw new ConfigError('expert parallel: the model has no experts (a dense model); use tensor or data parallelism');
  if (c.numExperts < ep.size) throw new ConfigError(`expert parallel: ${c.numExperts} experts cannot be placed over ${ep.size} ranks (each rank needs at least one)`);
}

/** The expert slice (whole experts, dim 0 of the stacked [E, ...] tensors) of rank `index` of `size`. */
export function expertSlice(c: ModelConfig, ep: { size: number; index: number }): SliceSpec {
  const counts = unevenSplit(c.numExperts, ep.size);
  return { dim: 0, from: start(counts, ep.index), count: counts[ep.index]!, total: c.numExperts };
}

/**
 * The slice of every split parameter on this rank (replicated parameters are absent); with
 * expert parallelism (`ep`), the experts are this rank's whole experts.
 */
export function shardPlan(c: ModelConfig, s: TensorShard, ep?: { size: number; index: number }): Map<string, SliceSpec> {
  checkShard(c, s);
  const plan = new Map<string, SliceSpec>();
  if (ep && ep.size > 1) {
    checkExpertShard(c, ep);
    const e = expertSlice(c, ep);
    for (let l = 0; l < c.numLayers; l++) {
      if (!isMoeLayer(c, l)) continue;
      const m = moeParamNames(c, l);
      for (const n of [m.w1, m.w3, m.w2]) plan.set(n, e);
    }
  }
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
      if (s.experts === 'ep') {
        // placed by the expert-parallel group (above), not cut by tensor parallelism
      } else if (s.experts === 'edp') {
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
