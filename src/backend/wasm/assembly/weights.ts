// Kernels over weights in their storage dtype (see WeightDType in ../../backend.ts): f32, bf16,
// f16 and f8_e4m3 rows decoded four at a time in SIMD registers, with a per-tensor scale and
// optional per-row scales (rowScale == NO_ROW_SCALE: none; any other value is a heap address,
// which may be anywhere below 4 GiB, so the sentinel is the one value no aligned f32 array has). With few activation rows each thread streams its
// share of the weight rows once (GEMV-like, bound by memory); with more, blocks of rows are decoded
// into the thread's scratch and multiplied by the row kernels of gemv.ts. Row-invariant products
// keep streamRows' per-row summation order for every row count, from weight rows decoded once
// per block (invariantRows).
// Weight pointers may be unaligned (they point into a checkpoint's bytes copied into the heap).
import { gemmDotRows } from './gemv';
import { madd, hsum } from './gemv';
import { shareEnd, shareStart } from './simd-math';

const NO_ROW_SCALE: usize = 0xffffffff;

const F32: i32 = 0;
const BF16: i32 = 1;
const F16: i32 = 2;
const F8: i32 = 3;

/** Rows of activations up to which the streaming path is used. */
const STREAM_ROWS: i32 = 16;
/** Weight rows decoded per block on the packed path. */
const BLOCK_ROWS: i32 = 32;

// @ts-ignore: decorator
@inline function bytesOf(dtype: i32): i32 {
  return dtype == F32 ? 4 : dtype == F8 ? 1 : 2;
}

/** Four f16 (as u32 lanes) -> four f32, exactly: normals rebias the exponent, subnormals scale, Inf/NaN keep theirs. */
// @ts-ignore: decorator
@inline function f16x4(h: v128): v128 {
  const mag = v128.and(h, i32x4.splat(0x7fff));
  const e = i32x4.shr_u(mag, 10);
  const normal = i32x4.add(i32x4.shl(mag, 13), i32x4.splat(0x38000000));
  const special = i32x4.add(i32x4.shl(mag, 13), i32x4.splat(0x70000000));
  const sub = f32x4.mul(f32x4.convert_i32x4_u(mag), f32x4.splat(5.9604644775390625e-8)); // m x 2^-24
  let bits = v128.bitselect(special, normal, i32x4.eq(e, i32x4.splat(31)));
  bits = v128.bitselect(sub, bits, i32x4.eq(e, i32x4.splat(0)));
  return v128.or(bits, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** Four e4m3 codes (as u32 lanes) -> four f32: normals by exponent rebias (bias 7 -> 127), subnormals m x 2^-9. */
// @ts-ignore: decorator
@inline function e4m3x4(b: v128): v128 {
  const mag = v128.and(b, i32x4.splat(0x7f));
  const normal = i32x4.add(i32x4.shl(mag, 20), i32x4.splat(120 << 23));
  const sub = f32x4.mul(f32x4.convert_i32x4_u(mag), f32x4.splat(0.001953125)); // m x 2^-9 (e = 0: mag = m)
  const bits = v128.bitselect(sub, normal, i32x4.eq(i32x4.shr_u(mag, 3), i32x4.splat(0)));
  return v128.or(bits, i32x4.shl(v128.and(b, i32x4.splat(0x80)), 24));
}

/** Four weights starting at element p of a row. */
// @ts-ignore: decorator
@inline function load4(w: usize, dtype: i32, p: i32): v128 {
  if (dtype == BF16) return i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(w + (<usize>p << 1))), 16);
  if (dtype == F8) return e4m3x4(i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(w + <usize>p))));
  if (dtype == F16) return f16x4(i32x4.extend_low_i16x8_u(v128.load64_zero(w + (<usize>p << 1))));
  return v128.load(w + (<usize>p << 2));
}

/** One weight, exactly as load4 decodes it. */
function load1(w: usize, dtype: i32, p: i32): f32 {
  if (dtype == BF16) return reinterpret<f32>(<i32>load<u16>(w + (<usize>p << 1)) << 16);
  if (dtype == F8) return f32x4.extract_lane(e4m3x4(i32x4.splat(<i32>load<u8>(w + <usize>p))), 0);
  if (dtype == F16) return f32x4.extract_lane(f16x4(i32x4.splat(<i32>load<u16>(w + (<usize>p << 1)))), 0);
  return load<f32>(w + (<usize>p << 2));
}

// @ts-ignore: decorator
@inline function rowMul(scale: f32, rowScale: usize, r: i32): f32 {
  return rowScale == NO_ROW_SCALE ? scale : scale * load<f32>(rowScale + (<usize>r << 2));
}

/** y[i, j] for x rows [0, m) and weight rows [j0, j1): two weight rows at a time against each x row. */
function streamRows(x: usize, m: i32, k: i32, w: usize, dtype: i32, scale: f32, rowScale: usize, n: i32, j0: i32, j1: i32, y: usize): void {
  const ldw = <usize>k * bytesOf(dtype);
  const k4 = k & ~3;
  let j = j0;
  for (; j + 2 <= j1; j += 2) {
    const w0 = w + <usize>j * ldw, w1 = w0 + ldw;
    const m0 = rowMul(scale, rowScale, j), m1 = rowMul(scale, rowScale, j + 1);
    for (let i = 0; i < m; i++) {
      const xr = x + (<usize>i * k << 2);
      let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
      for (let p = 0; p < k4; p += 4) {
        const u = v128.load(xr + (<usize>p << 2));
        s0 = madd(u, load4(w0, dtype, p), s0);
        s1 = madd(u, load4(w1, dtype, p), s1);
      }
      let t0 = hsum(s0), t1 = hsum(s1);
      for (let p = k4; p < k; p++) {
        const xv = load<f32>(xr + (<usize>p << 2));
        t0 += xv * load1(w0, dtype, p);
        t1 += xv * load1(w1, dtype, p);
      }
      store<f32>(y + ((<usize>i * n + j) << 2), t0 * m0);
      store<f32>(y + ((<usize>i * n + j + 1) << 2), t1 * m1);
    }
  }
  for (; j < j1; j++) {
    const w0 = w + <usize>j * ldw;
    const m0 = rowMul(scale, rowScale, j);
    for (let i = 0; i < m; i++) {
      const xr = x + (<usize>i * k << 2);
      let s0 = f32x4.splat(0);
      for (let p = 0; p < k4; p += 4) s0 = madd(v128.load(xr + (<usize>p << 2)), load4(w0, dtype, p), s0);
      let t0 = hsum(s0);
      for (let p = k4; p < k; p++) t0 += load<f32>(xr + (<usize>p << 2)) * load1(w0, dtype, p);
      store<f32>(y + ((<usize>i * n + j) << 2), t0 * m0);
    }
  }
}

/** Decode weight rows [r0, r1) x `mul` into `out` (rows of k floats). */
function decodeRows(w: usize, dtype: i32, scale: f32, rowScale: usize, k: i32, r0: i32, r1: i32, out: usize): void {
  const ldw = <usize>k * bytesOf(dtype);
  const k4 = k & ~3;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * ldw, o = out + (<usize>(r - r0) * k << 2);
    const mv = f32x4.splat(rowMul(scale, rowScale, r));
    const ms = rowMul(scale, rowScale, r);
    let p = 0;
    for (; p < k4; p += 4) v128.store(o + (<usize>p << 2), f32x4.mul(mv, load4(wr, dtype, p)));
    for (; p < k; p++) store<f32>(o + (<usize>p << 2), ms * load1(wr, dtype, p));
  }
}

/** One dot product's scalar tail: s + sum over p in [k4, k) of x[p] w[p] (x, w f32 rows). */
// @ts-ignore: decorator
@inline function dotTail(s: f32, x: usize, w: usize, k4: i32, k: i32): f32 {
  for (let p = k4; p < k; p++) s += load<f32>(x + (<usize>p << 2)) * load<f32>(w + (<usize>p << 2));
  return s;
}

/**
 * y[i, j] for x rows [0, m) and weight rows [b0, b1) decoded (exactly, unscaled) at `wd`, in
 * streamRows' arithmetic: per (i, j) one madd chain over the 4-wide steps, hsum, the scalar tail,
 * times the row's multiplier. Tiles of 4 x rows by 2 weight rows share the loads.
 */
function dotDecodedRows(x: usize, m: i32, k: i32, wd: usize, b0: i32, b1: i32, scale: f32, rowScale: usize, n: i32, y: usize): void {
  const rowB = <usize>k << 2, ldyB = <usize>n << 2;
  const k4 = k & ~3;
  const m4 = m & ~3;
  let j = b0;
  for (; j + 2 <= b1; j += 2) {
    const w0 = wd + <usize>(j - b0) * rowB, w1 = w0 + rowB;
    const m0 = rowMul(scale, rowScale, j), m1 = rowMul(scale, rowScale, j + 1);
    let i = 0;
    for (; i < m4; i += 4) {
      const x0 = x + <usize>i * rowB, x1 = x0 + rowB, x2 = x1 + rowB, x3 = x2 + rowB;
      let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s10 = f32x4.splat(0), s11 = f32x4.splat(0);
      let s20 = f32x4.splat(0), s21 = f32x4.splat(0), s30 = f32x4.splat(0), s31 = f32x4.splat(0);
      for (let p = 0; p < k4; p += 4) {
        const o = <usize>p << 2;
        const v0 = v128.load(w0 + o), v1 = v128.load(w1 + o);
        let u = v128.load(x0 + o);
        s00 = madd(u, v0, s00);
        s01 = madd(u, v1, s01);
        u = v128.load(x1 + o);
        s10 = madd(u, v0, s10);
        s11 = madd(u, v1, s11);
        u = v128.load(x2 + o);
        s20 = madd(u, v0, s20);
        s21 = madd(u, v1, s21);
        u = v128.load(x3 + o);
        s30 = madd(u, v0, s30);
        s31 = madd(u, v1, s31);
      }
      const yp = y + <usize>i * ldyB + (<usize>j << 2);
      store<f32>(yp, dotTail(hsum(s00), x0, w0, k4, k) * m0);
      store<f32>(yp, dotTail(hsum(s01), x0, w1, k4, k) * m1, 4);
      store<f32>(yp + ldyB, dotTail(hsum(s10), x1, w0, k4, k) * m0);
      store<f32>(yp + ldyB, dotTail(hsum(s11), x1, w1, k4, k) * m1, 4);
      store<f32>(yp + 2 * ldyB, dotTail(hsum(s20), x2, w0, k4, k) * m0);
      store<f32>(yp + 2 * ldyB, dotTail(hsum(s21), x2, w1, k4, k) * m1, 4);
      store<f32>(yp + 3 * ldyB, dotTail(hsum(s30), x3, w0, k4, k) * m0);
      store<f32>(yp + 3 * ldyB, dotTail(hsum(s31), x3, w1, k4, k) * m1, 4);
    }
    for (; i < m; i++) {
      const xr = x + <usize>i * rowB;
      let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
      for (let p = 0; p < k4; p += 4) {
        const u = v128.load(xr + (<usize>p << 2));
        s0 = madd(u, v128.load(w0 + (<usize>p << 2)), s0);
        s1 = madd(u, v128.load(w1 + (<usize>p << 2)), s1);
      }
      const yp = y + <usize>i * ldyB + (<usize>j << 2);
      store<f32>(yp, dotTail(hsum(s0), xr, w0, k4, k) * m0);
      store<f32>(yp, dotTail(hsum(s1), xr, w1, k4, k) * m1, 4);
    }
  }
  if (j < b1) {
    const w0 = wd + <usize>(j - b0) * rowB;
    const m0 = rowMul(scale, rowScale, j);
    for (let i = 0; i < m; i++) {
      const xr = x + <usize>i * rowB;
      let s0 = f32x4.splat(0);
      for (let p = 0; p < k4; p += 4) s0 = madd(v128.load(xr + (<usize>p << 2)), v128.load(w0 + (<usize>p << 2)), s0);
      store<f32>(y + <usize>i * ldyB + (<usize>j << 2), dotTail(hsum(s0), xr, w0, k4, k) * m0);
    }
  }
}

/**
 * Row-invariant y [m, n] = x [m, k] @ W^T for weight rows [j0, j1): each element bit for bit what
 * streamRows gives its row alone. One row streams; more decode blocks of weight rows once into
 * scratch (decoding is exact) and run the same arithmetic from the copy (dotDecodedRows).
 */
function invariantRows(x: usize, m: i32, k: i32, w: usize, dtype: i32, scale: f32, rowScale: usize, n: i32, j0: i32, j1: i32, y: usize, scratch: usize): void {
  if (m == 1) {
    streamRows(x, m, k, w, dtype, scale, rowScale, n, j0, j1, y);
    return;
  }
  for (let b0 = j0; b0 < j1; b0 += BLOCK_ROWS) {
    const b1 = min(j1, b0 + BLOCK_ROWS);
    decodeRows(w, dtype, 1, NO_ROW_SCALE, k, b0, b1, scratch);
    dotDecodedRows(x, m, k, scratch, b0, b1, scale, rowScale, n, y);
  }
}

/** y [m, n] = x [m, k] @ W^T for weight rows [j0, j1): streaming, or decoded blocks through gemmDotRows. */
function linearRange(x: usize, m: i32, k: i32, w: usize, dtype: i32, scale: f32, rowScale: usize, n: i32, j0: i32, j1: i32, y: usize, scratch: usize, invariant: i32): void {
  if (invariant) {
    invariantRows(x, m, k, w, dtype, scale, rowScale, n, j0, j1, y, scratch);
    return;
  }
  if (m <= STREAM_ROWS) {
    streamRows(x, m, k, w, dtype, scale, rowScale, n, j0, j1, y);
    return;
  }
  for (let b0 = j0; b0 < j1; b0 += BLOCK_ROWS) {
    const b1 = min(j1, b0 + BLOCK_ROWS);
    decodeRows(w, dtype, scale, rowScale, k, b0, b1, scratch);
    // gemmDotRows addresses B rows as b + j * k floats for j in [b0, b1): offset the block back by b0
    gemmDotRows(x, scratch - (<usize>b0 * k << 2), y, k, n, 0, m, b0, b1, false);
  }
}

export function k_weights_scratch_bytes(tid: i32, nthreads: i32, k: i32): i32 {
  return BLOCK_ROWS * k * 4;
}

export function k_linear_w(tid: i32, nthreads: i32, x: usize, w: usize, dtype: i32, scale: f32, rowScale: usize,
  y: usize, m: i32, k: i32, n: i32, scratch: usize, scratchStride: i32, invariant: i32): void {
  const j0 = shareStart(n, 2, tid, nthreads), j1 = shareEnd(n, 2, tid, nthreads);
  if (j1 > j0) linearRange(x, m, k, w, dtype, scale, rowScale, n, j0, j1, y, scratch + <usize>tid * scratchStride, invariant);
}

/**
 * Grouped products over row segments (offsets [G + 1] of i32). `table` holds per group
 * [ptr u32, dtype i32, scale f32, rowScale u32 (NO_ROW_SCALE: none)]. Work units are (group, pair
 * of weight rows) over the groups that own rows, split evenly over threads, when every group streams
 * (row-invariant, or few rows); else whole groups.
 */
export function k_grouped_linear_w(tid: i32, nthreads: i32, x: usize, table: usize, y: usize, offsets: usize, G: i32,
  n: i32, k: i32, scratch: usize, scratchStride: i32, invariant: i32): void {
  let busy = 0, most = 0;
  for (let g = 0; g < G; g++) {
    const rows = load<i32>(offsets + (<usize>(g + 1) << 2)) - load<i32>(offsets + (<usize>g << 2));
    if (rows > 0) busy++;
    if (rows > most) most = rows;
  }
  const pairs = (n + 1) >> 1;
  const byPairs = invariant || most <= STREAM_ROWS;
  const units = byPairs ? busy * pairs : busy;
  const u0 = shareStart(units, 1, tid, nthreads), u1 = shareEnd(units, 1, tid, nthreads);
  const sc = scratch + <usize>tid * scratchStride;
  let u = 0;
  for (let g = 0; g < G && u < u1; g++) {
    const r0 = load<i32>(offsets + (<usize>g << 2)), rows = load<i32>(offsets + (<usize>(g + 1) << 2)) - r0;
    if (rows <= 0) continue;
    const e = table + (<usize>g << 4);
    const w = <usize>load<u32>(e), dtype = load<i32>(e, 4), scale = load<f32>(e, 8), rs = <usize>load<u32>(e, 12);
    const xg = x + (<usize>r0 * k << 2), yg = y + (<usize>r0 * n << 2);
    if (byPairs) {
      const a = max(u0 - u, 0), b = min(u1 - u, pairs);
      if (a < b) linearRange(xg, rows, k, w, dtype, scale, rs, n, a * 2, min(n, b * 2), yg, sc, invariant);
      u += pairs;
    } else {
      if (u >= u0) linearRange(xg, rows, k, w, dtype, scale, rs, n, 0, n, yg, sc, 0);
      u++;
    }
  }
}

export function k_gather_rows_w(tid: i32, nthreads: i32, w: usize, dtype: i32, scale: f32, rowScale: usize, ids: usize,
  out: usize, count: i32, cols: i32): void {
  const i1 = shareEnd(count, 1, tid, nthreads);
  for (let i = shareStart(count, 1, tid, nthreads); i < i1; i++) {
    const r = load<i32>(ids + (<usize>i << 2));
    decodeRows(w, dtype, scale, rowScale, cols, r, r + 1, out + (<usize>i * cols << 2));
  }
}

export function k_dequantize_w(tid: i32, nthreads: i32, w: usize, dtype: i32, scale: f32, rowScale: usize, out: usize,
  rows: i32, cols: i32): void {
  const r0 = shareStart(rows, 1, tid, nthreads), r1 = shareEnd(rows, 1, tid, nthreads);
  if (r1 > r0) decodeRows(w, dtype, scale, rowScale, cols, r0, r1, out + (<usize>r0 * cols << 2));
}
