/** The attention block: q/k/v projections, the q/k norm of Qwen3 and OLMoE, RoPE, causal attention (fused, tiled), output projection. */
import * as T from '../tensor/index.js';
import type { Tensor, Weight } from '../tensor/index.js';
import type { ModelConfig } from './config.js';
import type { KVCache } from './kv-cache.js';

/** The projections: f32 tensors (trainable) or weights in a storage dtype. */
export interface AttentionWeights {
  q: Tensor | Weight; // (H*D, C)
  k: Tensor | Weight; // (Hkv*D, C)
  v: Tensor | Weight; // (Hkv*D, C)
  o: Tensor | Weight; // (C, H*D)
  /** RMSNorm weights of q and k: (D) each for qkNorm 'head', (H*D) and (Hkv*D) for 'full'. */
  qNorm?: Tensor;
  kNorm?: Tensor;
}

export interface RopeTables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * x [B, T, C] normalized; positions i32 [B*T]. With a cache (inference), the new keys and values
 * are written at cache.length and attention runs over everything cached so far.
 */
export function attentionBlock(x: Tensor, w: AttentionWeights, cfg: ModelConfig, rope: RopeTables, positions: Tensor, cache?: { kv: KVCache; layer: number }): Tensor {
  const [B, Tn] = x.shape as [number, number, number];
  const H = cfg.numHeads, Hkv = cfg.numKvHeads, D = cfg.headDim;
  const q = T.rope(projectHeads(x, w.q, w.qNorm, H, D, cfg), rope, positions); // (B, T, H, D)
  const k = T.rope(projectHeads(x, w.k, w.kNorm, Hkv, D, cfg), rope, positions); // (B, T, Hkv, D)
  const v = T.reshape(T.linear(x, w.v), [B, Tn, Hkv, D]); // (B, T, Hkv, D)
  let a: Tensor;
  if (cache) {
    const { kv, layer } = cache;
    T.writeSlice(kv.k[layer]!, k, kv.length);
    T.writeSlice(kv.v[layer]!, v, kv.length);
    a = T.attention(q, kv.k[layer]!, kv.v[layer]!, { kvLength: kv.length + Tn, qOffset: kv.length }); // (B, T, H, D)
  } else {
    a = T.attention(q, k, v); // (B, T, H, D)
  }
  return T.linear(T.reshape(a, [B, Tn, H * D]), w.o); // (B, T, C)
}

/**
 * A projection split into heads, with the layout's q/k norm before RoPE: over the whole projection
 * (OLMoE: HF OlmoeAttention normalizes q_proj(x) before the view into heads) or per head over D
 * (Qwen3: HF Qwen3Attention normalizes after the view). x (B, T, C) -> (B, T, heads, D).
 */
function projectHeads(x: Tensor, w: Tensor | Weight, norm: Tensor | undefined, heads: number, D: number, cfg: ModelConfig): Tensor {
  const [B, Tn] = x.shape as [number, number, number];
  let p = T.linear(x, w); // (B, T, heads*D)
  if (cfg.qkNorm === 'full') p = T.rmsnorm(p, norm!, cfg.rmsNormEps);
  p = T.reshape(p, [B, Tn, heads, D]); // (B, T, heads, D)
  if (cfg.qkNorm === 'head') p = T.rmsnorm(p, norm!, cfg.rmsNormEps);
  return p;
}
