// Causal attention over a paged KV cache (see Kernels.pagedAttention): the decode and prefill steps
// of a continuous-batching server, every query row of any sequence in one call.
//
// Work units are (query row, kv head): a unit computes the G = H / Hkv query heads that share the
// kv head, so each key and value row is read once per group. Per unit, two passes: the scores of
// every visible key into the thread's scratch, then per head the max, exp and sum, then the values
// weighted by the exponentials, and o = that / sum. Every reduction runs in an order fixed by D
// and the row's key count alone (never by n, the unit's index, the thread or the block layout), so
// a row's output is batch invariant, bit for bit.
import { at, hmax, hsum, madd, vexp } from './simd-math';

/** Keys per row of a unit's score scratch, rounded up to whole vectors; padded with -inf (exp 0). */
// @ts-ignore: decorator
@inline function paddedLen(len: i32): i32 {
  return (len + 3) & ~3;
}

/** Bytes of scratch one thread needs for rows of up to maxLen keys (the JS side allocates nthreads x this). */
export function k_paged_attention_scratch_bytes(tid: i32, nthreads: i32, G: i32, D: i32, maxLen: i32): i32 {
  const floats = G * paddedLen(maxLen) + G * ((D + 3) & ~3) + G;
  return ((floats * 4 + 63) >> 6) << 6;
}

/** q . k over D floats: two 4-wide madd chains (even and odd vectors), then the scalar tail. */
// @ts-ignore: decorator
@inline function dot(q: usize, k: usize, D: i32): f32 {
  const d8 = D & ~7, d4 = D & ~3;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let d = 0;
  for (; d < d8; d += 8) {
    a0 = madd(v128.load(at(q, d)), v128.load(at(k, d)), a0);
    a1 = madd(v128.load(at(q, d + 4)), v128.load(at(k, d + 4)), a1);
  }
  if (d < d4) {
    a0 = madd(v128.load(at(q, d)), v128.load(at(k, d)), a0);
    d += 4;
  }
  let s = hsum(f32x4.add(a0, a1));
  for (; d < D; d++) s += load<f32>(at(q, d)) * load<f32>(at(k, d));
  return s;
}

/** acc[0, D) += e * v[0, D). */
// @ts-ignore: decorator
@inline function axpy(acc: usize, e: f32, v: usize, D: i32): void {
  const ve = f32x4.splat(e);
  let d = 0;
  for (; d + 4 <= D; d += 4) v128.store(at(acc, d), madd(ve, v128.load(at(v, d)), v128.load(at(acc, d))));
  for (; d < D; d++) store<f32>(at(acc, d), load<f32>(at(acc, d)) + e * load<f32>(at(v, d)));
}

/** Byte address of the cache row (slot, kv head 0) of position p of the sequence whose block ids are at `table`. */
// @ts-ignore: decorator
@inline function slotRow(cache: usize, table: usize, p: i32, blockSize: i32, ldkv: i32): usize {
  const slot = load<i32>(at(table, p / blockSize)) * blockSize + p % blockSize;
  return cache + ((<usize>slot * <usize>ldkv) << 2);
}

/**
 * One unit: query heads [G] at q (D floats apart) against the `len` keys of a sequence (k, v already
 * offset to the kv head), output o [G, D]. Scratch: G rows of scores, G accumulators of D, G sums.
 */
function pagedUnit(q: usize, k: usize, v: usize, o: usize, G: i32, D: i32, ldkv: i32, len: i32, table: usize,
  blockSize: i32, scale: f32, scratch: usize): void {
  const lp = paddedLen(len), dp = (D + 3) & ~3;
  const acc = at(scratch, G * lp), sums = at(acc, G * dp);
  for (let p = 0; p < len; p++) {
    const kr = slotRow(k, table, p, blockSize, ldkv);
    for (let g = 0; g < G; g++) store<f32>(at(scratch, g * lp + p), dot(at(q, g * D), kr, D) * scale);
  }
  for (let g = 0; g < G; g++) {
    const s = at(scratch, g * lp);
    for (let p = len; p < lp; p++) store<f32>(at(s, p), -Infinity);
    let vm = f32x4.splat(-Infinity);
    for (let p = 0; p < lp; p += 4) vm = f32x4.pmax(vm, v128.load(at(s, p)));
    const vmax = f32x4.splat(hmax(vm));
    let vsum = f32x4.splat(0);
    for (let p = 0; p < lp; p += 4) {
      const e = vexp(f32x4.sub(v128.load(at(s, p)), vmax));
      v128.store(at(s, p), e);
      vsum = f32x4.add(vsum, e);
    }
    store<f32>(at(sums, g), hsum(vsum));
  }
  memory.fill(acc, 0, <usize>(G * dp) << 2);
  for (let p = 0; p < len; p++) {
    const vr = slotRow(v, table, p, blockSize, ldkv);
    for (let g = 0; g < G; g++) axpy(at(acc, g * dp), load<f32>(at(scratch, g * lp + p)), vr, D);
  }
  for (let g = 0; g < G; g++) {
    const og = at(o, g * D), ag = at(acc, g * dp);
    const inv: f32 = 1.0 / load<f32>(at(sums, g));
    const vinv = f32x4.splat(inv);
    let d = 0;
    for (; d + 4 <= D; d += 4) v128.store(at(og, d), f32x4.mul(v128.load(at(ag, d)), vinv));
    for (; d < D; d++) store<f32>(at(og, d), load<f32>(at(ag, d)) * inv);
  }
}

/**
 * rowSeq, rowLen [n] and blockTables [seqs * maxBlocks] are i32 arrays the JS side copied into the
 * heap. Units (row, kv head) are dealt in rounds of nthreads, alternating direction, so rows of
 * different lengths even out between threads.
 */
export function k_paged_attention(tid: i32, nthreads: i32, q: usize, k: usize, v: usize, o: usize, n: i32, H: i32, Hkv: i32,
  D: i32, scale: f32, blockSize: i32, rowSeq: usize, rowLen: usize, tables: usize, maxBlocks: i32, scratch: usize,
  scratchStride: i32): void {
  const G = H / Hkv, ldkv = Hkv * D;
  const sc = scratch + <usize>tid * <usize>scratchStride;
  const units = n * Hkv;
  for (let round = 0; ; round++) {
    const u = round * nthreads + ((round & 1) ? nthreads - 1 - tid : tid);
    if (u >= units) break;
    const i = u / Hkv, hk = u % Hkv;
    const table = at(tables, load<i32>(at(rowSeq, i)) * maxBlocks);
    const row = (i * H + hk * G) * D;
    pagedUnit(at(q, row), at(k, hk * D), at(v, hk * D), at(o, row), G, D, ldkv, load<i32>(at(rowLen, i)), table, blockSize,
      scale, sc);
  }
}
