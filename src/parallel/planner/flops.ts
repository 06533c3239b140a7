/**
 * FLOPs of a training step, counted the way Megatron-Core counts them
 * (megatron/training/training.py `num_floating_point_operations`, appendix of arXiv 2104.04473):
 * every GEMM costs 2mnk forward and twice that backward (dgrad + wgrad), so training = 3 x forward;
 * core attention is counted causally (half of the s x s score matrix) as in current Megatron-Core;
 * the router, norms and element-wise work are not model FLOPs (we count the router separately).
 */
import { isMoeLayer, type ModelConfig, type QkNorm } from '../../model/config.js';

/** The shapes the planner needs; `shapeOf` derives them from a model config. */
export interface ModelShape {
  name: string;
  vocab: number;
  hidden: number;
  layers: number;
  /** How many of the layers are MoE layers. */
  moeLayers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Dense MLP width (layers that are not MoE). */
  ffn: number;
  /** Width of one expert. */
  expertFfn: number;
  experts: number;
  topK: number;
  /** SwiGLU (3 matrices) rather than a 2-matrix GeLU MLP. */
  gated: boolean;
  tied: boolean;
  /** RMSNorm of q and k (Qwen3 per head, OLMoE over the projection): a few weights per layer, no GEMM FLOPs. */
  qkNorm: QkNorm;
}

export function shapeOf(c: ModelConfig, name = 'model'): ModelShape {
  let moeLayers = 0;
  for (let i = 0; i < c.numLayers; i++) if (isMoeLayer(c, i)) moeLayers++;
  return {
    name,
    vocab: c.vocabSize,
    hidden: c.hiddenSize,
    layers: c.numLayers,
    moeLayers,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    ffn: c.intermediateSize,
    expertFfn: c.moeIntermediateSize,
    experts: c.numExperts,
    topK: c.numExperts ? c.topK : 0,
    gated: true,
    tied: c.tieWordEmbeddings,
    qkNorm: c.qkNorm,
  };
}

/** Parameters, split the way the planner shards them. */
export interface ShapeParams {
  /** Attention (q, k, v, o) of one layer. */
  attention: number;
  /** Dense MLP of one non-MoE layer. */
  mlp: number;
  /** One expert. */
  expert: number;
  router: number;
  /** Norm weights of one layer. */
  norms: number;
  embedding: number;
  lmHead: number;
  total: number;
  active: number;
}

export function shapeParams(m: ModelShape): ShapeParams {
  const q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  const attention = m.hidden * (q + 2 * kv) + q * m.hidden;
  const mats = m.gated ? 3 : 2;
  const mlp = mats * m.hidden * m.ffn;
  const expert = mats * m.hidden * m.expertFfn;
  const router = m.experts ? m.hidden * m.experts : 0;
  const norms = 2 * m.hidden + (m.qkNorm === 'head' ? 2 * m.headDim : m.qkNorm === 'full' ? q + kv : 0);
  const embedding = m.vocab * m.hidden;
  const lmHead = m.tied ? 0 : embedding;
  const dense = m.layers - m.moeLayers;
  const shared = m.layers * (attention + norms) + dense * mlp + m.moeLayers * router + embedding + lmHead + m.hidden;
  return {
    attention, mlp, expert, router, norms, embedding, lmHead,
    total: shared + m.moeLayers * m.experts * expert,
    active: shared + m.moeLayers * m.topK * expert,
  };
}

/** Forward FLOPs per token, by part, for a sequence length. */
export interface ForwardFlops {
  /** q, k, v, o projections of one layer. */
  attnProj: number;
  /** QK^T and attention-weighted V of one layer. */
  attnCore: number;
  /** The MLP of one dense layer. */
  mlp: number;
  /** top-k experts of one MoE layer. */
  experts: number;
  router: number;
  /** The output layer (logits). */
  logits: number;
}

export interface FlopsOptions {
  /** Count the causal half of the attention matrix (current Megatron-Core); false: the full s x s (Megatron before 2025). */
  causal?: boolean;
}

export function forwardFlops(m: ModelShape, seq: number, o: FlopsOptions = {}): ForwardFlops {
  const q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
  const mats = m.gated ? 3 : 2;
  return {
    attnProj: 2 * (m.hidden * (q + 2 * kv) + q * m.hidden),
    attnCore: 2 * 2 * seq * q * (o.causal === false ? 1 : 0.5),
    mlp: 2 * mats * m.hidden * m.ffn,
    experts: 2 * m.topK * mats * m.hidden * m.expertFfn,
    router: 2 * m.hidden * m.experts,
    logits: 2 * m.hidden * m.vocab,
  };
}

/** Forward FLOPs per token of one layer (MoE or dense), without the router. */
export function layerForwardFlops(f: ForwardFlops, moe: boolean): number {
  return f.attnProj + f.attnCore + (moe ? f.experts : f.mlp);
}

/**
 * Model FLOPs per token of one training step (forward + backward = 3 x forward), Megatron's count:
 * no router, no recomputation. This is the numerator of MFU.
 */
export function trainFlopsPerToken(m: ModelShape, seq: number, o: FlopsOptions = {}): number {
  const f = forwardFlops(m, seq, o);
  const dense = m.layers - m.moeLayers;
  return 3 * (m.moeLayers * layerForwardFlops(f, true) + dense * layerForwardFlops(f, false) + f.logits);
}
