// Causal attention over a paged KV cache (see Kernels.pagedAttention): the decode and prefill steps
// of a continuous-batching server, every query row of any sequence in one call.
//
// Consecutive rows of one sequence (a prefill chunk) form groups (of up to 16, see ../op-kernels.ts); work units are
// (group, kv head): a unit computes, for each row, the G = H / Hkv query heads that share the kv head,
// so each key and value row is read once per unit. Two passes: the scores of every key a row sees
// into the thread's scratch, then per row and head the max, exp and sum, then the values weighted
// by the exponentials, divided by the sum.
//
// Batch invariance: every reduction runs in an order fixed by D and the row's own key count (never
// by n, the grouping, the unit's index, the thread or the block layout; a row's score rows are laid
// out by its own length), so a row's output is bit for bit what it gets alone.
import { at, hmax, hsum, madd, vexp } from './simd-math';

/** Keys per score row of a row with `len` keys, rounded up to whole vectors; padded with -inf (exp 0). */
// @ts-ignore: decorator
@inline function scoreStride(len: i32): i32 {
  return (len + 3) & ~3;
}

/**
 * Bytes of scratch one thread needs for units of up to `heads` (rows x G) and rows of up to maxLen
 * keys: score rows, accumulators of D, sums, the byte offsets of the keys' cache rows, 4 value-row
 * addresses and 4 dot products.
 */
export function k_paged_attention_scratch_bytes(tid: i32, nthreads: i32, heads: i32, D: i32, maxLen: i32): i32 {
  const floats = heads * scoreStride(maxLen) + heads * ((D + 3) & ~3) + heads + maxLen + 8;
  return ((floats * 4 + 63) >> 6) << 6;
}

/** Keys ahead whose cache rows the passes touch (see touchAhead). */
const AHEAD: i32 = 8;

/**
 * A load from each cache line of the rows of keys [p, p + 4) (byte offsets at keyRows, from base),
 * summed so the loads stay. wasm has no prefetch: these demand loads, issued AHEAD keys before the
 * rows are used, keep more cache misses in flight than the dot products alone (a unit's rows are
 * Hkv * D floats apart, too far for the hardware prefetcher). The score pass's key rows only: the
 * value pass, four rows at a time, measured no better with it.
 */
// @ts-ignore: decorator
@inline function touchAhead(base: usize, keyRows: usize, p: i32, D: i32): f32 {
  let t: f32 = 0;
  for (let j = 0; j < 4; j++) {
    const row = base + <usize>load<u32>(at(keyRows, p + j));
    for (let d = 0; d < D; d += 16) t += load<f32>(at(row, d));
  }
  return t;
}

/** s + the scalar tail [d, D) of q . k. */
// @ts-ignore: decorator
@inline function dotTail(s: f32, q: usize, k: usize, d: i32, D: i32): f32 {
  for (; d < D; d++) s += load<f32>(at(q, d)) * load<f32>(at(k, d));
  return s;
}

/**
 * q . k_j over D floats for four keys at once, each key's sum in an order set by D alone: two 4-wide
 * madd chains (even and odd vectors), a lone last vector into the first, their sum, the scalar tail.
 * The four rows' loads are issued together, so their cache misses overlap. Results at out[0..4).
 */
function dot4(q: usize, k0: usize, k1: usize, k2: usize, k3: usize, D: i32, out: usize): void {
  const d8 = D & ~7, d4 = D & ~3;
  let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
  let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
  let d = 0;
  for (; d < d8; d += 8) {
    const qa = v128.load(at(q, d)), qb = v128.load(at(q, d + 4));
    a0 = madd(qa, v128.load(at(k0, d)), a0);
    b0 = madd(qb, v128.load(at(k0, d + 4)), b0);
    a1 = madd(qa, v128.load(at(k1, d)), a1);
    b1 = madd(qb, v128.load(at(k1, d + 4)), b1);
    a2 = madd(qa, v128.load(at(k2, d)), a2);
    b2 = madd(qb, v128.load(at(k2, d + 4)), b2);
    a3 = madd(qa, v128.load(at(k3, d)), a3);
    b3 = madd(qb, v128.load(at(k3, d + 4)), b3);
  }
  if (d < d4) {
    const qa = v128.load(at(q, d));
    a0 = madd(qa, v128.load(at(k0, d)), a0);
    a1 = madd(qa, v128.load(at(k1, d)), a1);
    a2 = madd(qa, v128.load(at(k2, d)), a2);
    a3 = madd(qa, v128.load(at(k3, d)), a3);
    d += 4;
  }
  store<f32>(out, dotTail(hsum(f32x4.add(a0, b0)), q, k0, d, D));
  store<f32>(out, dotTail(hsum(f32x4.add(a1, b1)), q, k1, d, D), 4);
  store<f32>(out, dotTail(hsum(f32x4.add(a2, b2)), q, k2, d, D), 8);
  store<f32>(out, dotTail(hsum(f32x4.add(a3, b3)), q, k3, d, D), 12);
}

/**
 * acc[0, D) += e[j] * v_j[0, D) for j < nv (1 to 4, in order): the same as nv single-key updates,
 * with the accumulator kept in a register between them. vrows holds the value rows' addresses.
 */
function axpyKeys(acc: usize, e: usize, vrows: usize, nv: i32, D: i32): void {
  const v0 = load<usize>(vrows), v1 = load<usize>(vrows, 4), v2 = load<usize>(vrows, 8), v3 = load<usize>(vrows, 12);
  const e0 = f32x4.splat(load<f32>(e)), e1 = f32x4.splat(load<f32>(e, 4));
  const e2 = f32x4.splat(load<f32>(e, 8)), e3 = f32x4.splat(load<f32>(e, 12));
  let d = 0;
  if (nv == 4) {
    for (; d + 4 <= D; d += 4) {
      let a = v128.load(at(acc, d));
      a = madd(e0, v128.load(at(v0, d)), a);
      a = madd(e1, v128.load(at(v1, d)), a);
      a = madd(e2, v128.load(at(v2, d)), a);
      a = madd(e3, v128.load(at(v3, d)), a);
      v128.store(at(acc, d), a);
    }
  } else {
    for (; d + 4 <= D; d += 4) {
      let a = madd(e0, v128.load(at(v0, d)), v128.load(at(acc, d)));
      if (nv > 1) a = madd(e1, v128.load(at(v1, d)), a);
      if (nv > 2) a = madd(e2, v128.load(at(v2, d)), a);
      v128.store(at(acc, d), a);
    }
  }
  for (; d < D; d++) {
    for (let j = 0; j < nv; j++) {
      const vr = load<usize>(vrows + (<usize>j << 2));
      store<f32>(at(acc, d), load<f32>(at(acc, d)) + load<f32>(at(e, j)) * load<f32>(at(vr, d)));
    }
  }
}

/**
 * One unit: `rows` consecutive query rows of one sequence (row r's G heads at q + r * ldq, D floats
 * apart; its key count at lens + 4r) against the sequence's keys (k, v already offset to the kv head;
 * its block ids at `table`); outputs at o + r * ldq.
 */
function pagedUnit(q: usize, k: usize, v: usize, o: usize, rows: i32, lens: usize, G: i32, D: i32, ldq: i32, ldkv: i32,
  table: usize, blockSize: i32, scale: f32, scratch: usize): void {
  const dp = (D + 3) & ~3, heads = rows * G;
  let len = 0, total = 0;
  for (let r = 0; r < rows; r++) {
    const lr = load<i32>(at(lens, r));
    total += G * scoreStride(lr);
    len = max(len, lr);
  }
  const acc = at(scratch, total), sums = at(acc, heads * dp), keyRows = at(sums, heads);
  // byte offset of each key's row in the caches, block by block (no division per key)
  for (let b = 0, p = 0; p < len; b++) {
    const end = min(len, p + blockSize);
    for (let slot = load<i32>(at(table, b)) * blockSize; p < end; p++, slot++) store<u32>(at(keyRows, p), <u32>slot * <u32>ldkv << 2);
  }
  const vrows = at(keyRows, len); // 4 addresses of value rows, after the offsets
  const dots = at(vrows, 4); // 4 scores
  let touched: f32 = 0;
  for (let p = 0; p < len; p += 4) {
    if (p + AHEAD + 4 <= len) touched += touchAhead(k, keyRows, p + AHEAD, D);
    const nk = min(4, len - p);
    const k0 = k + <usize>load<u32>(at(keyRows, p));
    const k1 = k + <usize>load<u32>(at(keyRows, min(p + 1, len - 1)));
    const k2 = k + <usize>load<u32>(at(keyRows, min(p + 2, len - 1)));
    const k3 = k + <usize>load<u32>(at(keyRows, min(p + 3, len - 1)));
    let before = 0; // score floats of the rows before r
    for (let r = 0; r < rows; r++) {
      const lr = load<i32>(at(lens, r)), ls = scoreStride(lr);
      if (p < lr) {
        const n = min(nk, lr - p);
        const qr = at(q, r * ldq), s = at(scratch, before + p);
        for (let g = 0; g < G; g++) {
          dot4(at(qr, g * D), k0, k1, k2, k3, D, dots);
          for (let j = 0; j < n; j++) store<f32>(at(s, g * ls + j), load<f32>(at(dots, j)) * scale);
        }
      }
      before += G * ls;
    }
  }
  let base = 0;
  for (let r = 0; r < rows; r++) {
    const lr = load<i32>(at(lens, r)), ls = scoreStride(lr);
    for (let g = 0; g < G; g++) {
      const sg = at(scratch, base + g * ls);
      for (let p = lr; p < ls; p++) store<f32>(at(sg, p), -Infinity);
      let vm = f32x4.splat(-Infinity);
      for (let p = 0; p < ls; p += 4) vm = f32x4.pmax(vm, v128.load(at(sg, p)));
      const vmax = f32x4.splat(hmax(vm));
      let vsum = f32x4.splat(0);
      for (let p = 0; p < ls; p += 4) {
        const e = vexp(f32x4.sub(v128.load(at(sg, p)), vmax));
        v128.store(at(sg, p), e);
        vsum = f32x4.add(vsum, e);
      }
      store<f32>(at(sums, r * G + g), hsum(vsum));
    }
    base += G * ls;
  }
  memory.fill(acc, 0, <usize>(heads * dp) << 2);
  for (let p = 0; p < len; p += 4) {
    const nv = min(4, len - p);
    for (let j = 0; j < 4; j++) store<usize>(vrows + (<usize>j << 2), v + <usize>load<u32>(at(keyRows, min(p + j, len - 1))));
    base = 0;
    for (let r = 0; r < rows; r++) {
      const lr = load<i32>(at(lens, r)), ls = scoreStride(lr);
      if (p < lr) {
        const n = min(nv, lr - p);
        for (let g = 0; g < G; g++) axpyKeys(at(acc, (r * G + g) * dp), at(scratch, base + g * ls + p), vrows, n, D);
      }
      base += G * ls;
    }
  }
  store<f32>(dots, touched);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < G; g++) {
      const og = at(o, r * ldq + g * D), ag = at(acc, (r * G + g) * dp);
      const inv: f32 = 1.0 / load<f32>(at(sums, r * G + g));
      const vinv = f32x4.splat(inv);
      let d = 0;
      for (; d + 4 <= D; d += 4) v128.store(at(og, d), f32x4.mul(v128.load(at(ag, d)), vinv));
      for (; d < D; d++) store<f32>(at(og, d), load<f32>(at(ag, d)) * inv);
    }
  }
}

/**
 * rowSeq, rowLen [n] and blockTables [seqs * maxBlocks] are i32 arrays the JS side copied into the
 * heap, with `first` [groups + 1]: the first row of each group. Units (group, kv head) are dealt in
 * rounds of nthreads, alternating direction, so groups of different cost even out between threads.
 */
export function k_paged_attention(tid: i32, nthreads: i32, q: usize, k: usize, v: usize, o: usize, H: i32, Hkv: i32,
  D: i32, scale: f32, blockSize: i32, rowSeq: usize, rowLen: usize, tables: usize, maxBlocks: i32, first: usize,
  groups: i32, scratch: usize, scratchStride: i32): void {
  const G = H / Hkv, ldq = H * D;
  const sc = scratch + <usize>tid * <usize>scratchStride;
  const units = groups * Hkv;
  for (let round = 0; ; round++) {
    const u = round * nthreads + ((round & 1) ? nthreads - 1 - tid : tid);
    if (u >= units) break;
    const gi = u / Hkv, hk = u % Hkv;
    const i = load<i32>(at(first, gi)), rows = load<i32>(at(first, gi + 1)) - i;
    const table = at(tables, load<i32>(at(rowSeq, i)) * maxBlocks);
    const row = i * ldq + hk * G * D;
    pagedUnit(at(q, row), at(k, hk * D), at(v, hk * D), at(o, row), rows, at(rowLen, i), G, D, ldq, Hkv * D, table,
      blockSize, scale, sc);
  }
}
