/**
 * Inference planning (SPEC section 6): weights in FP8 (E4M3, per-tensor scales; gate, embeddings,
 * lm_head and norms stay bf16) or BF16, tensor parallel with the non-uniform head split when the
 * GPUs do not divide the heads, KV cache per token, per-GPU memory, and a roofline of decode
 * tokens/s by batch size: each decode step reads every weight the batch touches (attention, the
 * distinct experts the batch routes to, lm_head) and the KV cache, at the GPU's memory bandwidth,
 * or is compute-bound past the ridge point; plus two all-reduces per layer.
 */
import { collectiveTime } from './comm.js';
import { shapeParams, type ModelShape } from './flops.js';
import { PlanError, type Cluster } from './gpus.js';

/** Heads per GPU: [q+1] * r + [q] * (p - r) with q, r = divmod(heads, p) (SPEC section 6). */
export function headSplit(heads: number, gpus: number): number[] {
  if (!Number.isInteger(gpus) || gpus < 1) throw new PlanError(`expected a positive GPU count, got ${gpus}`, '--gpus');
  if (gpus > heads) throw new PlanError(`${gpus} GPUs for ${heads} heads: some GPUs would hold no head`, '--gpus');
  const q = Math.floor(heads / gpus), r = heads % gpus;
  return Array.from({ length: gpus }, (_, i) => q + (i < r ? 1 : 0));
}

export type WeightFormat = 'fp8' | 'bf16';

export interface InferenceOptions {
  weights: WeightFormat;
  /** KV cache element bytes (2 bf16, 1 fp8). */
  kvBytes?: number;
  /** Average context length a decode step attends over. */
  context?: number;
  batchSizes?: number[];
  /** Fraction of GPU memory the server may use (vLLM's gpu_memory_utilization). */
  memoryUtilization?: number;
}

export interface DecodePoint {
  batch: number;
  /** Seconds per decode step and what bounds it. */
  step: number;
  bound: 'memory bandwidth' | 'compute' | 'all-reduce';
  tokensPerSecond: number;
  /** Whether the KV cache of `batch` sequences at the context length fits. */
  fits: boolean;
}

export interface InferencePlan {
  gpus: number;
  headSplit: number[];
  /** Bytes of weights on the most loaded GPU, by part. */
  weightsPerGpu: { attention: number; experts: number; embeddings: number; other: number; total: number };
  totalWeightBytes: number;
  /** KV-cache bytes per token on the most loaded GPU, and over all GPUs. */
  kvPerTokenGpu: number;
  kvPerToken: number;
  /** Tokens of KV cache that fit in what is left on the most loaded GPU. */
  kvCapacityTokens: number;
  fits: boolean;
  decode: DecodePoint[];
}

const WORKSPACE_BYTES = 1.5e9;

export function planInference(m: ModelShape, c: Cluster, o: InferenceOptions): InferencePlan {
  const p = c.gpus;
  const split = headSplit(m.heads, p);
  if (m.kvHeads !== m.heads && m.kvHeads % p !== 0 && p % m.kvHeads !== 0) throw new PlanError(`${m.kvHeads} KV heads cannot be shared by ${p} GPUs`, '--gpus');
  const maxHeads = Math.max(...split);
  const share = maxHeads / m.heads; // the most loaded GPU's share of attention
  const kvShare = m.kvHeads === m.heads ? share : Math.max(1 / m.kvHeads, Math.ceil(m.kvHeads / p) / m.kvHeads);
  const w = o.weights === 'fp8' ? 1 : 2;
  const P = shapeParams(m);
  const attention = m.layers * P.attention * share * w;
  const expertBytesPerLayer = m.experts ? m.experts * P.expert * w : P.mlp * w;
  const experts = (m.moeLayers * (m.experts ? expertBytesPerLayer : 0) + (m.layers - m.moeLayers) * P.mlp * w) / p; // FFN widths split evenly
  const embeddings = ((P.embedding + P.lmHead) * 2) / p; // vocabulary-parallel, bf16
  const other = (m.moeLayers * P.router + m.layers * P.norms + m.hidden) * 2; // replicated, bf16
  const total = attention + experts + embeddings + other;
  const totalWeightBytes = m.layers * P.attention * w + m.moeLayers * m.experts * P.expert * w + (m.layers - m.moeLayers) * P.mlp * w + (P.embedding + P.lmHead) * 2 + (m.moeLayers * P.router + m.layers * P.norms + m.hidden) * 2;
  const kvBytes = o.kvBytes ?? 2;
  const kvPerToken = 2 * m.layers * m.kvHeads * m.headDim * kvBytes;
  const kvPerTokenGpu = kvPerToken * kvShare;
  const usable = c.gpu.memoryBytes * (o.memoryUtilization ?? 0.9);
  const free = usable - total - WORKSPACE_BYTES;
  const kvCapacityTokens = Math.max(0, Math.floor(free / kvPerTokenGpu));
  const ctx = o.context ?? 2048;
  const peak = (o.weights === 'fp8' && c.gpu.fp8Tflops ? c.gpu.fp8Tflops : c.gpu.bf16Tflops) * 1e12 * c.gpu.gemmEfficiency;
  const bw = c.gpu.memoryTBs * 1e12;
  const decode = (o.batchSizes ?? [1, 8, 32, 64, 128, 256]).map((B) => {
    // distinct experts a batch of B tokens touches per MoE layer: E (1 - (1 - k/E)^B)
    const touched = m.experts ? m.experts * (1 - Math.pow(1 - m.topK / m.experts, B)) : 0;
    const ffnBytes = (m.moeLayers * touched * P.expert * w + (m.layers - m.moeLayers) * P.mlp * w) / p;
    const bytes = attention + ffnBytes + (P.lmHead * 2) / p + other + B * ctx * kvPerTokenGpu;
    const flops = B * (2 * (m.layers * P.attention * share + (m.moeLayers * m.topK * P.expert + (m.layers - m.moeLayers) * P.mlp) / p + P.lmHead / p) + m.layers * 4 * ctx * m.heads * m.headDim * share);
    const tMem = bytes / bw, tFlops = flops / peak;
    const tComm = 2 * m.layers * collectiveTime(c, 'all-reduce', B * m.hidden * 2, p);
    const step = Math.max(tMem, tFlops) + tComm;
    const bound: DecodePoint['bound'] = tComm > Math.max(tMem, tFlops) ? 'all-reduce' : tMem >= tFlops ? 'memory bandwidth' : 'compute';
    return { batch: B, step, bound, tokensPerSecond: B / step, fits: B * ctx <= kvCapacityTokens };
  });
  return { gpus: p, headSplit: split, weightsPerGpu: { attention, experts, embeddings, other, total }, totalWeightBytes, kvPerTokenGpu, kvPerToken, kvCapacityTokens, fits: free > 0, decode };
}
