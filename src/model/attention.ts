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
export function attentionBlock(x: Tensor, w: AttentionWeights, cfg: ModelConfig, rope: RopeTables, positions: Tensor, cache?: { kv: KVCache; layer: number }, heads?: { heads: number; kvHeads: number }, recomputeCore = false): Tensor {
  const [B, Tn] = x.shape as [number, number, number];
  // a tensor-parallel rank runs its share of the heads (model/shard.ts); o_proj then gives a partial sum
  const H = heads?.heads ?? cfg.numHeads, Hkv = heads?.kvHeads ?? cfg.numKvHeads, D = cfg.headDim;
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
    // selective recomputation (Megatron's): the core attention runs again in the backward instead of keeping its state
    a = recomputeCore ? T.checkpoint((q, k, v) => T.attention(q!, k!, v!), [q, k, v]) : T.attention(q, k, v); // (B, T, H, D)
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

/** Where each row of a paged step reads and writes its keys and values (see paged-kv.ts). */
export interface PagedAttentionMeta {
  /** The caches of this layer: [slots, Hkv, D]. */
  k: Tensor;
  v: Tensor;
  /** i32 [N]: the cache slot each new row's key and value go to. */
  slots: Tensor;
  blockSize: number;
  /** Per row: its sequence (a row of blockTables) and the keys it sees (its position + 1). */
  rowSeq: Int32Array;
  rowLen: Int32Array;
  /** [sequences * maxBlocks] block ids. */
  blockTables: Int32Array;
  maxBlocks: number;
}

/**
 * Attention over a paged KV cache for N rows of any number of sequences (continuous batching):
 * x [N, C] normalized, positions i32 [N]. The rows' keys and values are written to their slots
 * first, then each row attends to its sequence's keys up to its own position.
 */
export function pagedAttentionBlock(x: Tensor, w: AttentionWeights, cfg: ModelConfig, rope: RopeTables, positions: Tensor, kv: PagedAttentionMeta, heads?: { heads: number; kvHeads: number }): Tensor {
  const [N] = x.shape as [number, number];
  // a tensor-parallel rank: its heads, its caches' key/value heads, a partial sum out of o_proj
  const H = heads?.heads ?? cfg.numHeads, Hkv = heads?.kvHeads ?? cfg.numKvHeads, D = cfg.headDim;
  const x3 = T.reshape(x, [1, N, cfg.hiddenSize]);
  const q = T.reshape(T.rope(projectHeads(x3, w.q, w.qNorm, H, D, cfg), rope, positions), [N, H, D]);
  const k = T.reshape(T.rope(projectHeads(x3, w.k, w.kNorm, Hkv, D, cfg), rope, positions), [N, Hkv, D]);
  const v = T.reshape(T.linear(x, w.v), [N, Hkv, D]);
  T.scatterRows(kv.k, k, kv.slots);
  T.scatterRows(kv.v, v, kv.slots);
  const a = T.pagedAttention(q, kv.k, kv.v, {
    blockSize: kv.blockSize,
    rowSeq: kv.rowSeq,
    rowLen: kv.rowLen,
    blockTables: kv.blockTables,
    maxBlocks: kv.maxBlocks,
  }); // (N, H, D)
  return T.linear(T.reshape(a, [N, H * D]), w.o); // (N, C)
}
