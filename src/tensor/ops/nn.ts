/** Fused transformer ops: softmax, cross-entropy, RMSNorm, RoPE, causal attention (dense and paged). */
import type { Backend } from '../../backend/backend.js';
import { needsGrad, record } from '../autograd.js';
import { isGradEnabled } from '../engine.js';
import { empty, ShapeError, type Tensor, TensorError } from '../tensor.js';
import { checkF32, checkI32, checkIndices, checkRank, rowsCols, sameBackend } from './check.js';

/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor {
  checkF32('softmax', x);
  const [rows, cols] = rowsCols(x);
  const out = empty(x.shape, 'f32', x.backend);
  x.backend.kernels.softmax(x.ptr, out.ptr, rows, cols);
  return record('softmax', [x], out, [out], (g, [y]) => {
    const dx = empty(x.shape, 'f32', g.backend);
    g.backend.kernels.softmaxBackward(y!.ptr, g.ptr, dx.ptr, rows, cols);
    return [dx];
  });
}

export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (default -100, as in PyTorch). */
  ignoreIndex?: number;
}

/**
 * Mean cross-entropy of logits [N, V] against i32 targets [N], over the targets that are not
 * ignored (0 when all are ignored). Returns a scalar.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  checkF32('crossEntropy', logits);
  checkI32('crossEntropy', 'targets', targets);
  const be = sameBackend('crossEntropy', logits, targets);
  const [rows, cols] = rowsCols(logits);
  if (targets.size !== rows) throw new ShapeError(`crossEntropy: logits [${logits.shape}] have ${rows} rows but targets [${targets.shape}] have ${targets.size}`);
  const t = checkIndices('crossEntropy', 'targets', targets, cols, ignoreIndex);
  let count = 0;
  for (const v of t) if (v !== ignoreIndex) count++;
  const perRow = empty([rows], 'f32', be);
  const lse = empty([rows], 'f32', be);
  be.kernels.crossEntropy(logits.ptr, targets.ptr, perRow.ptr, lse.ptr, rows, cols, ignoreIndex);
  const out = empty([], 'f32', be);
  be.kernels.sumRows(perRow.ptr, out.ptr, 1, rows);
  be.kernels.axpby(out.ptr, out.ptr, 1, count > 0 ? 1 / count : 0, 0);
  perRow.dispose();
  record('crossEntropy', [logits], out, [logits, targets, lse], (g, [sl, st, sLse]) => {
    const dl = empty(logits.shape, 'f32', be);
    const scale = count > 0 ? g.item() / count : 0;
    be.kernels.crossEntropyBackward(sl!.ptr, st!.ptr, sLse!.ptr, dl.ptr, rows, cols, ignoreIndex, scale);
    return [dl];
  });
  lse.dispose();
  return out;
}

/** RMSNorm over the last axis with weight [C]: x / sqrt(mean(x^2) + eps) * w, in fp32. */
export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  checkF32('rmsnorm', x, w);
  const be = sameBackend('rmsnorm', x, w);
  const [rows, cols] = rowsCols(x);
  if (w.rank !== 1 || w.size !== cols) throw new ShapeError(`rmsnorm: weight [${w.shape}] does not match the last dim of x [${x.shape}]`);
  const out = empty(x.shape, 'f32', be);
  const rstd = empty([rows], 'f32', be);
  be.kernels.rmsnorm(x.ptr, w.ptr, out.ptr, rstd.ptr, rows, cols, eps);
  record('rmsnorm', [x, w], out, [x, w, rstd], (g, [sx, sw, sr]) => {
    const dx = empty(x.shape, 'f32', be);
    const dw = empty([cols], 'f32', be);
    be.kernels.fill(dw.ptr, cols, 0, false);
    be.kernels.rmsnormBackward(sx!.ptr, sw!.ptr, sr!.ptr, g.ptr, dx.ptr, dw.ptr, rows, cols);
    return [dx, dw];
  });
  rstd.dispose();
  return out;
}

/** cos/sin tables [maxPos, dim/2] for RoPE with base theta (rotate-half form). */
export function ropeTables(maxPos: number, dim: number, theta: number, backend?: Backend): { cos: Tensor; sin: Tensor } {
  const half = dim >> 1;
  const c = new Float32Array(maxPos * half);
  const s = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      const a = p * Math.pow(theta, (-2 * i) / dim);
      c[p * half + i] = Math.cos(a);
      s[p * half + i] = Math.sin(a);
    }
  const cos = empty([maxPos, half], 'f32', backend).assign(c);
  const sin = empty([maxPos, half], 'f32', backend).assign(s);
  return { cos, sin };
}

/** RoPE (rotate-half) on x [..., H, D] at i32 positions [ntok] (ntok = product of the leading dims). */
export function rope(x: Tensor, tables: { cos: Tensor; sin: Tensor }, positions: Tensor): Tensor {
  checkF32('rope', x);
  checkI32('rope', 'positions', positions);
  const be = sameBackend('rope', x, tables.cos, tables.sin, positions);
  if (x.rank < 2) throw new ShapeError(`rope: x must be [..., heads, dim], got [${x.shape}]`);
  const D = x.shape[x.rank - 1]!, H = x.shape[x.rank - 2]!;
  const ntok = x.size / (H * D);
  if (D % 2 !== 0) throw new ShapeError(`rope: head dim ${D} must be even`);
  if (tables.cos.shape[1] !== D / 2) throw new ShapeError(`rope: tables [${tables.cos.shape}] are for head dim ${2 * tables.cos.shape[1]!}, x has ${D}`);
  if (positions.size !== ntok) throw new ShapeError(`rope: ${positions.size} positions for ${ntok} tokens of x [${x.shape}]`);
  checkIndices('rope', 'positions', positions, tables.cos.shape[0]!);
  const out = empty(x.shape, 'f32', be);
  be.kernels.rope(x.ptr, out.ptr, tables.cos.ptr, tables.sin.ptr, positions.ptr, ntok, H, D, false);
  return record('rope', [x], out, [tables.cos, tables.sin, positions], (g, [c, s, p]) => {
    const dx = empty(x.shape, 'f32', be);
    be.kernels.rope(g.ptr, dx.ptr, c!.ptr, s!.ptr, p!.ptr, ntok, H, D, true);
    return [dx];
  });
}

export interface AttentionOptions {
  /** Softmax scale (default 1/sqrt(D)). */
  scale?: number;
  /** Keys in use when k/v are a larger KV cache [B, capacity, Hkv, D] (default: all). */
  kvLength?: number;
  /** Position of query 0 relative to key 0 (default kvLength - Tq: queries are the last tokens). */
  qOffset?: number;
}

/**
 * Causal scaled-dot-product attention. q [B, Tq, H, D]; k, v [B, S, Hkv, D] (H a multiple of
 * Hkv). Tiled in the kernels: memory does not grow as T^2.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  checkF32('attention', q, k, v);
  const be = sameBackend('attention', q, k, v);
  checkRank('attention', 'q', q, [4]);
  checkRank('attention', 'k', k, [4]);
  checkRank('attention', 'v', v, [4]);
  const [B, Tq, H, D] = q.shape as [number, number, number, number];
  const [Bk, S, Hkv, Dk] = k.shape as [number, number, number, number];
  if (Bk !== B || Dk !== D || H % Hkv !== 0) throw new ShapeError(`attention: q [${q.shape}] and k [${k.shape}] are incompatible (batch, head dim, or heads not a multiple of kv heads)`);
  if (v.shape.some((d, i) => d !== k.shape[i])) throw new ShapeError(`attention: k [${k.shape}] and v [${v.shape}] must have the same shape`);
  const Tk = opts.kvLength ?? S;
  if (Tk > S || Tk < 0) throw new ShapeError(`attention: kvLength ${Tk} exceeds the ${S} positions of k [${k.shape}]`);
  const qOffset = opts.qOffset ?? Tk - Tq;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const kvStride = S * Hkv * D;
  const out = empty(q.shape, 'f32', be);
  const lse = empty([B, H, Tq], 'f32', be);
  be.kernels.attention(q.ptr, k.ptr, v.ptr, out.ptr, lse.ptr, B, Tq, Tk, H, Hkv, D, kvStride, qOffset, scale);
  if (Tk !== S && (k.requiresGrad || k.node || v.requiresGrad || v.node)) {
    lse.dispose();
    out.dispose();
    throw new ShapeError('attention: gradients through a partially filled KV cache are not supported; use kvLength only for inference');
  }
  record('attention', [q, k, v], out, [q, k, v, out, lse], (g, [sq, sk, sv, so, sl]) => {
    const dq = empty(q.shape, 'f32', be);
    const dk = empty(k.shape, 'f32', be);
    const dv = empty(v.shape, 'f32', be);
    be.kernels.attentionBackward(sq!.ptr, sk!.ptr, sv!.ptr, so!.ptr, sl!.ptr, g.ptr, dq.ptr, dk.ptr, dv.ptr, B, Tq, Tk, H, Hkv, D, kvStride, qOffset, scale);
    return [dq, dk, dv];
  });
  lse.dispose();
  return out;
}

/** Where the query rows of a pagedAttention call find their keys (see Kernels.pagedAttention). */
export interface PagedAttentionMeta {
  /** Slots per block of the cache. */
  blockSize: number;
  /** The sequence of each query row: a row of blockTables. [n] */
  rowSeq: Int32Array;
  /** Keys each row sees, its own position + 1 (>= 1: its own key is in the cache already). [n] */
  rowLen: Int32Array;
  /** Block ids of each sequence, [sequences, maxBlocks] row-major; entries past a sequence's blocks are not read. */
  blockTables: Int32Array;
  /** Block-table entries per sequence. */
  maxBlocks: number;
  /** Softmax scale (default 1/sqrt(D)). */
  scale?: number;
}

/**
 * Causal attention of n query rows q [n, H, D], from any sequences in any order (decode rows,
 * prefill chunks, both), over a paged KV cache kCache, vCache [slots, Hkv, D] (slot = block *
 * blockSize + offset): row i sees the first rowLen[i] positions of sequence rowSeq[i]. Batch
 * invariant: a row's output is bit for bit the same whatever else the call holds and wherever its
 * blocks lie. Inference only (no autograd). Checks every shape, each row's sequence and length,
 * and that each block a row reads lies in the cache.
 *
 * @example
 * // two sequences of 3 and 1 tokens in blocks of 2: decode one row of each
 * const o = T.pagedAttention(q, kCache, vCache, {             // q [2, H, D]
 *   blockSize: 2, maxBlocks: 2, blockTables: Int32Array.of(4, 1, 0, -1),
 *   rowSeq: Int32Array.of(0, 1), rowLen: Int32Array.of(3, 1),
 * });                                                         // [2, H, D]
 */
export function pagedAttention(q: Tensor, kCache: Tensor, vCache: Tensor, meta: PagedAttentionMeta): Tensor {
  checkF32('pagedAttention', q, kCache, vCache);
  const be = sameBackend('pagedAttention', q, kCache, vCache);
  checkRank('pagedAttention', 'q', q, [3]);
  checkRank('pagedAttention', 'kCache', kCache, [3]);
  const [n, H, D] = q.shape as [number, number, number];
  const [slots, Hkv, Dk] = kCache.shape as [number, number, number];
  if (Dk !== D || Hkv === 0 || H % Hkv !== 0) throw new ShapeError(`pagedAttention: q [${q.shape}] and kCache [${kCache.shape}] are incompatible (head dim, or heads not a multiple of kv heads)`);
  if (vCache.shape.some((d, i) => d !== kCache.shape[i])) throw new ShapeError(`pagedAttention: kCache [${kCache.shape}] and vCache [${vCache.shape}] must have the same shape`);
  if (isGradEnabled() && (needsGrad(q) || needsGrad(kCache) || needsGrad(vCache))) {
    throw new TensorError('pagedAttention: inference only, no gradients (use attention to train, or run under noGrad)');
  }
  const { blockSize, rowSeq, rowLen, blockTables, maxBlocks } = meta;
  if (!Number.isInteger(blockSize) || blockSize < 1 || !Number.isInteger(maxBlocks) || maxBlocks < 1) {
    throw new ShapeError(`pagedAttention: blockSize ${blockSize} and maxBlocks ${maxBlocks} must be positive integers`);
  }
  if (rowSeq.length !== n || rowLen.length !== n) throw new ShapeError(`pagedAttention: rowSeq (${rowSeq.length}) and rowLen (${rowLen.length}) need one entry per query row of q [${q.shape}]`);
  if (blockTables.length % maxBlocks !== 0) throw new ShapeError(`pagedAttention: blockTables has ${blockTables.length} entries, not a multiple of maxBlocks ${maxBlocks}`);
  const seqs = blockTables.length / maxBlocks, capacity = maxBlocks * blockSize, blocks = Math.floor(slots / blockSize);
  const longest = new Map<number, number>(); // per sequence, the most keys a row reads
  for (let i = 0; i < n; i++) {
    const s = rowSeq[i]!, len = rowLen[i]!;
    if (!(s >= 0 && s < seqs)) throw new ShapeError(`pagedAttention: rowSeq[${i}] = ${s} has no block table (${seqs} sequences)`);
    if (!(len >= 1 && len <= capacity)) throw new ShapeError(`pagedAttention: rowLen[${i}] = ${len} is outside [1, ${capacity}] (maxBlocks x blockSize)`);
    longest.set(s, Math.max(longest.get(s) ?? 0, len));
  }
  for (const [s, len] of longest) {
    for (let b = 0; b < Math.ceil(len / blockSize); b++) {
      const id = blockTables[s * maxBlocks + b]!;
      if (!(id >= 0 && id < blocks)) throw new ShapeError(`pagedAttention: sequence ${s} block ${b} is ${id}, outside the ${blocks} blocks of kCache [${kCache.shape}]`);
    }
  }
  const out = empty(q.shape, 'f32', be);
  be.kernels.pagedAttention(q.ptr, kCache.ptr, vCache.ptr, out.ptr, n, H, Hkv, D, meta.scale ?? 1 / Math.sqrt(D), blockSize,
    rowSeq, rowLen, blockTables, maxBlocks);
  return out;
}
