/**
 * Memory of one GPU: weights, gradients and Adam states (sharded over DP for dense parameters and
 * over the expert-data-parallel group for experts), activations per layer with the MoE terms
 * (k x expert FFN, permuted tokens, router probabilities, a routing-imbalance factor), the
 * micro-batches in flight under the pipeline schedule, recomputation, and dispatch buffers.
 * Activation terms follow Korthikanti et al. 2022 (arXiv 2205.05198, table 2) for a pre-norm
 * transformer with flash attention, sequence parallelism and no dropout.
 */
import { shapeParams, type ModelShape } from './flops.js';
import type { Layout, Precision, Recompute, TrainingSetup } from './setup.js';

/** CUDA context, NCCL and cuBLAS workspaces: not in any formula, always there. */
export const RESERVED_BYTES = 3e9;
/** Allocator fragmentation on activations. */
export const FRAGMENTATION = 1.05;

export interface ParamBytes {
  weights: number;
  grads: number;
  optimizer: number;
}

/** Bytes per parameter in bf16 mixed precision (bf16 weights, fp32 main grads, fp32 master + Adam m, v) under ZeRO over a group of `g`. */
export function bytesPerParam(zero: 0 | 1 | 2 | 3, g: number, precision: Precision = 'bf16'): ParamBytes {
  const w = 2 + (precision === 'fp8' ? 1 : 0); // TE keeps an FP8 copy of each GEMM weight
  return {
    weights: zero >= 3 ? w / g : w,
    grads: zero >= 2 ? 4 / g : 4,
    optimizer: zero >= 1 ? 12 / g : 12,
  };
}

/** The expert-data-parallel group: ranks that hold the same experts (Megatron-Core's expert mesh). */
export function expertDataParallel(l: Layout): number {
  return (l.tp * l.dp) / (l.ep * l.etp);
}

/** Load of the busiest rank over the mean, for a rank holding `local` of the experts (1 + (imb-1)/sqrt(local)). */
export function rankImbalance(imbalance: number, local: number): number {
  return 1 + (imbalance - 1) / Math.sqrt(Math.max(1, local));
}

/** Activation bytes stored per token of the micro-batch on one GPU, for one attention block, one dense MLP and one MoE block. */
export interface LayerActivations {
  attention: number;
  mlp: number;
  moe: number;
  /** What full recomputation keeps per layer (the layer input). */
  input: number;
}

export function layerActivations(m: ModelShape, l: Layout, r: Recompute, imbalance: number): LayerActivations {
  const h = m.hidden, t = l.tp;
  const q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  const sel = r === 'selective';
  // norm input, q/k/v projection input (the norm output; recomputed under selective), q, k, v, attention output, softmax stats (fp32)
  const attention = (2 * h + (sel ? 0 : 2 * h) + 2 * (q + 2 * kv) + 2 * q + 4 * m.heads) / t;
  const F = m.ffn;
  const fc1 = (m.gated ? 4 : 2) * F;
  const mlp = (2 * h + (sel ? 0 : 2 * h) + fc1 + (sel ? 0 : 2 * F)) / t;
  let moe = 0;
  if (m.experts) {
    const E = m.experts, Fe = m.expertFfn / l.etp;
    const fc1e = (m.gated ? 4 : 2) * Fe;
    // routed (token, expert) pairs this GPU processes per token of the micro-batch
    const pairs = ((l.etp * m.topK) / t) * rankImbalance(imbalance, E / l.ep);
    const perPair = 2 * h /* permuted input */ + fc1e + (sel ? 0 : 2 * Fe) /* activation output */ + 2 * h; /* expert output before the weighted combine */
    moe = (2 * h + (sel ? 0 : 2 * h) + 8 * E) / t + pairs * perPair;
  }
  return { attention, mlp, moe, input: (2 * h) / t };
}

/** Average stored activation bytes per token per layer (MoE and dense layers mixed as in the model). */
export function activationPerLayer(m: ModelShape, l: Layout, r: Recompute, imbalance: number): number {
  const a = layerActivations(m, l, r === 'full' ? 'none' : r, imbalance);
  if (r === 'full') return a.input;
  const moeShare = m.moeLayers / m.layers;
  return a.attention + moeShare * a.moe + (1 - moeShare) * a.mlp;
}

/** The largest one-layer working set (what full recomputation rebuilds for one layer at a time). */
export function layerWorkingSet(m: ModelShape, l: Layout, imbalance: number): number {
  const a = layerActivations(m, l, 'none', imbalance);
  return a.attention + Math.max(m.moeLayers ? a.moe : 0, m.moeLayers < m.layers ? a.mlp : 0);
}

/** Parameters one GPU of a stage holds: `perLayer` for an average layer, `fixed` for embedding / output layer. */
export interface StageParams {
  densePerLayer: number;
  expertPerLayer: number;
  denseFixed: number;
}

/**
 * `vocabParallel`: the embedding and output layer split over TP (Megatron's), or replicated (the
 * reference runtime's). With tied embeddings over a pipeline the last stage holds a copy of the
 * embedding as its output layer.
 */
export function stageParams(m: ModelShape, l: Layout, first: boolean, last: boolean, vocabParallel = true): StageParams {
  const p = shapeParams(m);
  const moeShare = m.moeLayers / m.layers;
  const densePerLayer = (p.attention + (1 - moeShare) * p.mlp) / l.tp + p.norms + moeShare * p.router;
  const expertPerLayer = moeShare * (m.experts / l.ep) * (p.expert / l.etp);
  const vocab = vocabParallel ? l.tp : 1;
  const head = m.tied && !first ? p.embedding : p.lmHead;
  const denseFixed = (first ? p.embedding / vocab : 0) + (last ? head / vocab + m.hidden : 0);
  return { densePerLayer, expertPerLayer, denseFixed };
}

/** Micro-batches whose activations a pipeline stage holds at its peak (1F1B; interleaved per Megatron's warm-up count). */
export function inFlight(stage: number, pp: number, vp: number, micro: number): number {
  if (pp === 1) return 1;
  if (vp === 1) return Math.min(micro, pp - stage);
  // interleaved: warm-up chunks 2(p - i - 1) + (v - 1)p, plus the one in its forward, each 1/v of the stage
  const chunks = Math.min(micro * vp, 2 * (pp - stage - 1) + (vp - 1) * pp + 1);
  return chunks / vp;
}

export interface MemoryBreakdown {
  weights: number;
  grads: number;
  optimizer: number;
  activations: number;
  /** Dispatch buffers, logits, the recompute working set, reserved workspace. */
  buffers: number;
  total: number;
}

/** Memory of one GPU of stage `i` holding `n` layers with recomputation `r`. */
export function stageMemory(m: ModelShape, s: TrainingSetup, l: Layout, i: number, n: number, r: Recompute): MemoryBreakdown {
  const first = i === 0, last = i === l.pp - 1;
  const sp = stageParams(m, l, first, last);
  const dense = sp.densePerLayer * n + sp.denseFixed;
  const experts = sp.expertPerLayer * n;
  const bd = bytesPerParam(s.zero, l.dp, s.precision);
  const be = bytesPerParam(s.zero, expertDataParallel(l), s.precision);
  const T = l.microBatch * s.seq; // tokens per micro-batch
  const micro = s.globalBatch / (l.dp * l.microBatch);
  const flight = inFlight(i, l.pp, l.vp, micro);
  let act = n * activationPerLayer(m, l, r, s.routingImbalance) * T * flight;
  if (first) act += T * ((2 * m.hidden) / l.tp + 8) * flight; // embedding output, token ids
  act *= FRAGMENTATION;
  let buffers = RESERVED_BYTES;
  if (r === 'full' && n > 0) buffers += layerWorkingSet(m, l, s.routingImbalance) * T;
  if (last) buffers += (T * (4 * m.hidden + 4 * m.vocab)) / l.tp; // final norm output, fp32 logits and their gradient
  if (m.experts && n > 0) buffers += 2 * T * ((l.etp * m.topK) / l.tp) * 2 * m.hidden * rankImbalance(s.routingImbalance, m.experts / l.ep); // all-to-all send + receive
  const weights = dense * bd.weights + experts * be.weights;
  const grads = dense * bd.grads + experts * be.grads;
  const optimizer = dense * bd.optimizer + experts * be.optimizer;
  return { weights, grads, optimizer, activations: act, buffers, total: weights + grads + optimizer + act + buffers };
}
