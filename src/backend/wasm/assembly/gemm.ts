// GEMM kernels: k_matmul, k_grouped_matmul (see Kernels.matmul / groupedMatmul in ../../backend.ts).
//
// Goto/BLIS blocking: for each NC-column block of op(B) and KC-deep slice, pack op(B) into
// NR-wide panels; for each MC-row block of op(A), pack op(A) into MR-tall panels; then one
// register-blocked MR x NR micro-kernel runs over every tile. Packing reads whichever transpose
// layout the operand has, so one micro-kernel serves every variant. The micro-tile is 4 x 8:
// 8 v128 accumulators, the most V8 keeps in registers (12 spill to the stack).
//
// Pointers are byte offsets; sizes and strides are element counts. Each thread packs into its
// own workspace (workBase + tid * GEMM_WORK_BYTES), so threads never synchronise inside a call.

import { gemmDotRows, gemvAxpy, gemvDot, madd } from './gemv';

const MR: i32 = 4;
const NR: i32 = 8;
const MC: i32 = 96;
const KC: i32 = 256;
const NC: i32 = 512;
/** Up to this many rows of op(A), B is not packed (see gemmBlocked, gemv.ts gemmDotRows). */
const SMALL_M: i32 = 16;

const PACK_A_BYTES: usize = <usize>(MC * KC * 4);
const PACK_B_BYTES: usize = <usize>(KC * NC * 4);
const TILE_BYTES: usize = <usize>(MR * NR * 4);
const GEMM_WORK_BYTES: usize = PACK_A_BYTES + PACK_B_BYTES + TILE_BYTES;

// Grouped modes, as GroupedMode in backend.ts.
const XWT: i32 = 0;
const XW: i32 = 1;
const ATB: i32 = 2;

/** Bytes of packing workspace each thread needs (the JS side allocates threads x this). */
export function k_gemm_workspace_bytes(tid: i32, nthreads: i32): i32 {
  return <i32>GEMM_WORK_BYTES;
}

// ------------------------------------------------------------------------------ micro-kernel

/**
 * C[4, 8] (+)= Apanel^T Bpanel over kc steps; pa: kc x 4 floats; pb: kc rows of 8 floats, ldb bytes
 * apart (32 when packed, the row stride of B when read in place); ldc in bytes.
 */
function micro4x8(kc: i32, pa: usize, pb: usize, ldb: usize, c: usize, ldc: usize, accumulate: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let p = 0; p < kc; p++) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    let a = v128.load32_splat(pa);
    c00 = madd(a, b0, c00);
    c01 = madd(a, b1, c01);
    a = v128.load32_splat(pa, 4);
    c10 = madd(a, b0, c10);
    c11 = madd(a, b1, c11);
    a = v128.load32_splat(pa, 8);
    c20 = madd(a, b0, c20);
    c21 = madd(a, b1, c21);
    a = v128.load32_splat(pa, 12);
    c30 = madd(a, b0, c30);
    c31 = madd(a, b1, c31);
    pa += 16;
    pb += ldb;
  }
  const c1 = c + ldc;
  const c2 = c1 + ldc;
  const c3 = c2 + ldc;
  if (accumulate) {
    c00 = f32x4.add(c00, v128.load(c));
    c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c1));
    c11 = f32x4.add(c11, v128.load(c1, 16));
    c20 = f32x4.add(c20, v128.load(c2));
    c21 = f32x4.add(c21, v128.load(c2, 16));
    c30 = f32x4.add(c30, v128.load(c3));
    c31 = f32x4.add(c31, v128.load(c3, 16));
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c1, c10);
  v128.store(c1, c11, 16);
  v128.store(c2, c20);
  v128.store(c2, c21, 16);
  v128.store(c3, c30);
  v128.store(c3, c31, 16);
}

/** An edge tile: the full 4 x 8 product goes to `tile`, then its valid mr x nr corner to C. */
function microEdge(kc: i32, pa: usize, pb: usize, ldb: usize, c: usize, ldc: usize, accumulate: bool, mr: i32, nr: i32,
  tile: usize): void {
  micro4x8(kc, pa, pb, ldb, tile, <usize>(NR * 4), false);
  for (let i = 0; i < mr; i++) {
    const crow = c + <usize>i * ldc;
    const trow = tile + <usize>(i * NR * 4);
    for (let j = 0; j < nr; j++) {
      const o = <usize>j << 2;
      let v = load<f32>(trow + o);
      if (accumulate) v += load<f32>(crow + o);
      store<f32>(crow + o, v);
    }
  }
}

// ------------------------------------------------------------------------------ packing

// @ts-ignore: decorator
@inline function storeTransposed4(dst: usize, stride: usize, r0: v128, r1: v128, r2: v128, r3: v128): void {
  // rows r0..r3 of a 4x4 block -> its columns, stored at dst, dst + stride, ...
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
  v128.store(dst + stride, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
  v128.store(dst + 2 * stride, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * stride, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
}

/**
 * Pack op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row panels (panel-major, then k, then row), zero-padding
 * the last panel. A is stored [m, k] (lda = k) or, when transA, [k, m] (lda = m).
 */
function packA(a: usize, lda: i32, transA: bool, i0: i32, p0: i32, mc: i32, kc: i32, dst: usize): void {
  const ldaB = <usize>lda << 2;
  for (let ir = 0; ir < mc; ir += MR) {
    const rows = min(MR, mc - ir);
    const panel = dst + <usize>(ir * kc * 4);
    const i = i0 + ir;
    if (transA) {
      let src = a + (<usize>p0 * <usize>lda + <usize>i) * 4;
      if (rows == MR) {
        for (let p = 0; p < kc; p++) {
          v128.store(panel + (<usize>p << 4), v128.load(src));
          src += ldaB;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          const d = panel + (<usize>p << 4);
          v128.store(d, f32x4.splat(0));
          for (let r = 0; r < rows; r++) store<f32>(d + (<usize>r << 2), load<f32>(src + (<usize>r << 2)));
          src += ldaB;
        }
      }
    } else {
      const src = a + (<usize>i * <usize>lda + <usize>p0) * 4;
      if (rows == MR) {
        const s1 = src + ldaB, s2 = s1 + ldaB, s3 = s2 + ldaB;
        let p = 0;
        for (; p + 4 <= kc; p += 4) {
          const o = <usize>p << 2;
          storeTransposed4(panel + (<usize>p << 4), 16,
            v128.load(src + o), v128.load(s1 + o), v128.load(s2 + o), v128.load(s3 + o));
        }
        for (; p < kc; p++) {
          const o = <usize>p << 2;
          const d = panel + (<usize>p << 4);
          store<f32>(d, load<f32>(src + o));
          store<f32>(d, load<f32>(s1 + o), 4);
          store<f32>(d, load<f32>(s2 + o), 8);
          store<f32>(d, load<f32>(s3 + o), 12);
        }
      } else {
        for (let p = 0; p < kc; p++) {
          const d = panel + (<usize>p << 4);
          v128.store(d, f32x4.splat(0));
          for (let r = 0; r < rows; r++) {
            store<f32>(d + (<usize>r << 2), load<f32>(src + <usize>r * ldaB + (<usize>p << 2)));
          }
        }
      }
    }
  }
}

/**
 * Pack op(B)[p0 : p0+kc, j0 : j0+nc] into NR-column panels (panel-major, then k, then column),
 * zero-padding the last panel. B is stored [k, n] (ldb = n) or, when transB, [n, k] (ldb = k).
 */
function packB(b: usize, ldb: i32, transB: bool, p0: i32, j0: i32, kc: i32, nc: i32, dst: usize): void {
  const ldbB = <usize>ldb << 2;
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, nc - jr);
    const panel = dst + <usize>(jr * kc * 4);
    const j = j0 + jr;
    if (transB) {
      const src = b + (<usize>j * <usize>ldb + <usize>p0) * 4;
      if (cols == NR) {
        const s1 = src + ldbB, s2 = s1 + ldbB, s3 = s2 + ldbB;
        const s4 = s3 + ldbB, s5 = s4 + ldbB, s6 = s5 + ldbB, s7 = s6 + ldbB;
        let p = 0;
        for (; p + 4 <= kc; p += 4) {
          const o = <usize>p << 2;
          const d = panel + (<usize>p << 5);
          storeTransposed4(d, 32, v128.load(src + o), v128.load(s1 + o), v128.load(s2 + o), v128.load(s3 + o));
          storeTransposed4(d + 16, 32, v128.load(s4 + o), v128.load(s5 + o), v128.load(s6 + o), v128.load(s7 + o));
        }
        for (; p < kc; p++) {
          const o = <usize>p << 2;
          const d = panel + (<usize>p << 5);
          store<f32>(d, load<f32>(src + o));
          store<f32>(d, load<f32>(s1 + o), 4);
          store<f32>(d, load<f32>(s2 + o), 8);
          store<f32>(d, load<f32>(s3 + o), 12);
          store<f32>(d, load<f32>(s4 + o), 16);
          store<f32>(d, load<f32>(s5 + o), 20);
          store<f32>(d, load<f32>(s6 + o), 24);
          store<f32>(d, load<f32>(s7 + o), 28);
        }
      } else {
        for (let p = 0; p < kc; p++) {
          const d = panel + (<usize>p << 5);
          v128.store(d, f32x4.splat(0));
          v128.store(d, f32x4.splat(0), 16);
          for (let c = 0; c < cols; c++) {
            store<f32>(d + (<usize>c << 2), load<f32>(src + <usize>c * ldbB + (<usize>p << 2)));
          }
        }
      }
    } else {
      let src = b + (<usize>p0 * <usize>ldb + <usize>j) * 4;
      if (cols == NR) {
        for (let p = 0; p < kc; p++) {
          const d = panel + (<usize>p << 5);
          v128.store(d, v128.load(src));
          v128.store(d, v128.load(src, 16), 16);
          src += ldbB;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          const d = panel + (<usize>p << 5);
          v128.store(d, f32x4.splat(0));
          v128.store(d, f32x4.splat(0), 16);
          for (let c = 0; c < cols; c++) store<f32>(d + (<usize>c << 2), load<f32>(src + (<usize>c << 2)));
          src += ldbB;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------ blocked GEMM

/**
 * C[i0:i1, j0:j1] = op(A) op(B) (+ C when accumulate), one thread, packing into `work`.
 * With `inPlaceB` (B not transposed, few rows of A) the micro-kernel reads full 8-column strips
 * of B where they are: packing would cost as much as the few rows' FMAs. Partial strips are packed.
 */
function gemmBlocked(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, transA: bool, transB: bool,
  accumulate: bool, i0: i32, i1: i32, j0: i32, j1: i32, inPlaceB: bool, work: usize): void {
  const lda = transA ? m : k;
  const ldb = transB ? k : n;
  const ldcB = <usize>n << 2;
  const packedA = work;
  const packedB = work + PACK_A_BYTES;
  const tile = packedB + PACK_B_BYTES;
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = min(NC, j1 - jc);
    const ncFull = inPlaceB ? nc & ~(NR - 1) : 0;
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      const acc = accumulate || pc > 0;
      if (ncFull < nc) packB(b, ldb, transB, pc, jc + ncFull, kc, nc - ncFull, packedB);
      for (let ic = i0; ic < i1; ic += MC) {
        const mc = min(MC, i1 - ic);
        packA(a, lda, transA, ic, pc, mc, kc, packedA);
        for (let jr = 0; jr < nc; jr += NR) {
          const nr = min(NR, nc - jr);
          let pb: usize, pbStride: usize;
          if (jr < ncFull) {
            pb = b + (<usize>pc * <usize>ldb + <usize>(jc + jr)) * 4;
            pbStride = <usize>ldb << 2;
          } else {
            pb = packedB + <usize>((jr - ncFull) * kc * 4);
            pbStride = <usize>(NR * 4);
          }
          let cp = c + (<usize>ic * <usize>n + <usize>(jc + jr)) * 4;
          for (let ir = 0; ir < mc; ir += MR) {
            const mr = min(MR, mc - ir);
            const pa = packedA + <usize>(ir * kc * 4);
            if (mr == MR && nr == NR) micro4x8(kc, pa, pb, pbStride, cp, ldcB, acc);
            else microEdge(kc, pa, pb, pbStride, cp, ldcB, acc, mr, nr, tile);
            cp += ldcB * <usize>MR;
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------ dispatch

/** Start of thread `tid`'s share of `total` items split in whole chunks of `align` (its end: tid + 1). */
// @ts-ignore: decorator
@inline function shareLo(total: i32, align: i32, tid: i32, nthreads: i32): i32 {
  const chunks = (total + align - 1) / align;
  return min(total, <i32>(<i64>chunks * tid / nthreads) * align);
}

/** Zero C[i0:i1, j0:j1] (row stride n): the k = 0 product with beta 0. */
function zeroBlock(c: usize, n: i32, i0: i32, i1: i32, j0: i32, j1: i32): void {
  if (j1 <= j0) return;
  for (let i = i0; i < i1; i++) memory.fill(c + (<usize>i * <usize>n + <usize>j0) * 4, 0, <usize>(j1 - j0) << 2);
}

/** Thread tid's share of C = op(A) op(B) (+ C): picks GEMV or the blocked path and the split. */
function gemm(a: usize, b: usize, c: usize, m: i32, k: i32, n: i32, transA: bool, transB: bool,
  accumulate: bool, tid: i32, nthreads: i32, work: usize): void {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (accumulate) return;
    const i0 = shareLo(m, 1, tid, nthreads), i1 = shareLo(m, 1, tid + 1, nthreads);
    zeroBlock(c, n, i0, i1, 0, n);
    return;
  }
  if (m == 1) {
    // x = op(A) is contiguous either way; op(B)[k, n] is B [n, k] (dot rows) or B [k, n] (axpy rows).
    if (transB) {
      const j0 = shareLo(n, 4, tid, nthreads), j1 = shareLo(n, 4, tid + 1, nthreads);
      gemvDot(a, b, c, k, j0, j1, accumulate);
    } else {
      const j0 = shareLo(n, 16, tid, nthreads), j1 = shareLo(n, 16, tid + 1, nthreads);
      gemvAxpy(a, b, c, k, n, j0, j1, accumulate);
    }
    return;
  }
  if (n == 1) {
    // C^T = op(B)^T op(A)^T: x = op(B) (contiguous), matrix A [m, k] (dot rows) or [k, m] (axpy rows).
    if (transA) {
      const j0 = shareLo(m, 16, tid, nthreads), j1 = shareLo(m, 16, tid + 1, nthreads);
      gemvAxpy(b, a, c, k, m, j0, j1, accumulate);
    } else {
      const j0 = shareLo(m, 4, tid, nthreads), j1 = shareLo(m, 4, tid + 1, nthreads);
      gemvDot(b, a, c, k, j0, j1, accumulate);
    }
    return;
  }
  // Split the dimension whose per-thread share is wider: each thread re-packs all of the other
  // operand, which costs 1/(2 * share) of its FLOPs (the N share counts only up to one NC block).
  const nShare = min(n / nthreads, NC);
  const mShare = m / nthreads;
  if (nShare >= mShare) {
    if (m <= SMALL_M && transB && !transA && k >= 16) {
      const j0 = shareLo(n, 2, tid, nthreads), j1 = shareLo(n, 2, tid + 1, nthreads);
      gemmDotRows(a, b, c, k, n, 0, m, j0, j1, accumulate);
      return;
    }
    const j0 = shareLo(n, NR, tid, nthreads), j1 = shareLo(n, NR, tid + 1, nthreads);
    // In place only when B's rows are not a multiple of 2 KiB apart: a strip of such rows maps to
    // one or two L1 sets and thrashes (n = 4096 ran at half speed).
    const inPlaceB = m <= SMALL_M && !transB && (n & 511) != 0;
    if (j0 < j1) gemmBlocked(a, b, c, m, k, n, transA, transB, accumulate, 0, m, j0, j1, inPlaceB, work);
  } else {
    const i0 = shareLo(m, MR, tid, nthreads), i1 = shareLo(m, MR, tid + 1, nthreads);
    if (i0 < i1) gemmBlocked(a, b, c, m, k, n, transA, transB, accumulate, i0, i1, 0, n, false, work);
  }
}

/** Kernels.matmul; `work` is the base of threads x GEMM_WORK_BYTES of packing space. */
export function k_matmul(tid: i32, nthreads: i32, a: usize, b: usize, c: usize, m: i32, k: i32, n: i32,
  transA: i32, transB: i32, batch: i32, strideA: i32, strideB: i32, strideC: i32, beta: i32, work: usize): void {
  const ws = work + <usize>tid * GEMM_WORK_BYTES;
  const ta = transA != 0, tb = transB != 0, acc = beta != 0;
  // Many batch items: whole items per thread (no split inside a small product); few: split each.
  if (nthreads > 1 && batch >= nthreads && (batch % nthreads == 0 || batch >= 4 * nthreads)) {
    const b0 = shareLo(batch, 1, tid, nthreads), b1 = shareLo(batch, 1, tid + 1, nthreads);
    for (let i = b0; i < b1; i++) {
      gemm(a + <usize>i * <usize>strideA * 4, b + <usize>i * <usize>strideB * 4, c + <usize>i * <usize>strideC * 4,
        m, k, n, ta, tb, acc, 0, 1, ws);
    }
    return;
  }
  for (let i = 0; i < batch; i++) {
    gemm(a + <usize>i * <usize>strideA * 4, b + <usize>i * <usize>strideB * 4, c + <usize>i * <usize>strideC * 4,
      m, k, n, ta, tb, acc, tid, nthreads, ws);
  }
}

/**
 * Kernels.groupedMatmul; `offsets` points at G + 1 int32 row offsets in the heap. Each group is
 * one GEMM that every thread shares (see `gemm` for the split).
 */
export function k_grouped_matmul(tid: i32, nthreads: i32, mode: i32, a: usize, b: usize, c: usize, offsets: usize,
  groups: i32, m: i32, k: i32, beta: i32, work: usize): void {
  const ws = work + <usize>tid * GEMM_WORK_BYTES;
  const acc = beta != 0;
  const wStride = <usize>m * <usize>k * 4;
  for (let g = 0; g < groups; g++) {
    const r0 = load<i32>(offsets + (<usize>g << 2));
    const rows = load<i32>(offsets + (<usize>(g + 1) << 2)) - r0;
    const r = <usize>r0;
    if (mode == XWT) {
      if (rows > 0) gemm(a + r * <usize>k * 4, b + <usize>g * wStride, c + r * <usize>m * 4, rows, k, m, false, true, acc, tid, nthreads, ws);
    } else if (mode == XW) {
      if (rows > 0) gemm(a + r * <usize>m * 4, b + <usize>g * wStride, c + r * <usize>k * 4, rows, m, k, false, false, acc, tid, nthreads, ws);
    } else if (mode == ATB) {
      gemm(a + r * <usize>m * 4, b + r * <usize>k * 4, c + <usize>g * wStride, m, rows, k, true, false, acc, tid, nthreads, ws);
    }
  }
}
