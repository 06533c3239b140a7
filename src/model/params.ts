/**
 * Parameter counts from a config alone (nothing allocated): total, and active per token (the
 * top-k experts of each MoE layer instead of all of them).
 */
import { isMoeLayer, type ModelConfig } from './config.js';

export interface ParamCount {
  total: number;
  active: number;
  embedding: number;
  lmHead: number;
  attention: number;
  experts: number;
  router: number;
  denseMlp: number;
  norms: number;
}

/** Gate parameters of one MoE layer: Linear(H, E), or Linear(H, 8E) -> tanh -> Linear(8E, E). */
export function routerParams(c: ModelConfig): number {
  return c.twoLayerGate ? c.hiddenSize * 8 * c.numExperts + 8 * c.numExperts * c.numExperts : c.hiddenSize * c.numExperts;
}

/** Weights of one layer's q/k norm (Qwen3: D each; OLMoE: the q and k projection widths). */
export function qkNormParams(c: ModelConfig): number {
  if (c.qkNorm === 'head') return 2 * c.headDim;
  if (c.qkNorm === 'full') return (c.numHeads + c.numKvHeads) * c.headDim;
  return 0;
}

export function countParams(c: ModelConfig): ParamCount {
  const H = c.hiddenSize;
  const qo = 2 * H * c.numHeads * c.headDim;
  const kv = 2 * H * c.numKvHeads * c.headDim;
  const mlp = 3 * H * c.intermediateSize;
  const expert = 3 * H * c.moeIntermediateSize;
  let attention = 0, experts = 0, activeExperts = 0, router = 0, denseMlp = 0, norms = 0;
  for (let i = 0; i < c.numLayers; i++) {
    attention += qo + kv;
    norms += 2 * H + qkNormParams(c);
    if (isMoeLayer(c, i)) {
      experts += c.numExperts * expert;
      activeExperts += c.topK * expert;
      router += routerParams(c);
    } else denseMlp += mlp;
  }
  norms += H;
  const embedding = c.vocabSize * H;
  const lmHead = c.tieWordEmbeddings ? 0 : c.vocabSize * H;
  const shared = embedding + lmHead + attention + router + denseMlp + norms;
  return { total: shared + experts, active: shared + activeExperts, embedding, lmHead, attention, experts, router, denseMlp, norms };
}

/** 146356130304 -> "146.4B". */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}
