// Causal attention, forward and backward, tiled FlashAttention style (Dao et al. 2022; the
// backward as in FlashAttention-2, Dao 2023): scores exist only one BQ x BK block at a time, so
// memory per thread is O((BQ + D) * BK), never Tq x Tk.
//
// Layout (see Kernels.attention): q, o, dout, dq [B, Tq, H, D]; k, v [B, *, Hkv, D] with batch stride
// kvBatchStride; dk, dv [B, Tk, Hkv, D] compact; lse [B, H, Tq]. Query i sees keys j < Tk with
// j <= i + qOffset. Each thread works in its own scratch block (scratch + tid * scratchStride bytes,
// sized by k_attention_scratch_bytes).
import { at, hmax, hsum, madd, shareEnd, shareStart, vexp } from './simd-math';

const BQ: i32 = 32; // query rows per block
const BK: i32 = 64; // keys per block (a multiple of 8: score tiles are 8 wide)

/** Bytes of scratch one thread needs (the JS side allocates nthreads x this). */
export function k_attention_scratch_bytes(tid: i32, nthreads: i32, D: i32, G: i32, Tq: i32, backward: i32): i32 {
  const floats = backward ? 2 * D * BK + 2 * BQ * BK + G * Tq : D * BK + BQ * BK + BQ * D + 2 * BQ;
  return ((floats * 4 + 63) >> 6) << 6;
}

// ------------------------------------------------------------------------------ block products

/**
 * s[m, ncols] = a[m, kd] @ bt[kd, ncols]; a rows at stride lda floats, bt rows at stride ldb,
 * s rows at stride lds; ncols a multiple of 8. 4 x 8 register tiles (8 accumulators).
 */
function matTimesTransposed(s: usize, lds: i32, a: usize, lda: i32, bt: usize, ldb: i32, m: i32, ncols: i32, kd: i32): void {
  const bstep = <usize>ldb << 2;
  const astep = <usize>lda << 2;
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const a0 = at(a, i * lda), a1 = a0 + astep, a2 = a1 + astep, a3 = a2 + astep;
    for (let j = 0; j < ncols; j += 8) {
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
      let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
      let pb = at(bt, j);
      for (let d = 0; d < kd; d++) {
        const b0 = v128.load(pb), b1 = v128.load(pb, 16);
        const off = <usize>d << 2;
        let x = v128.load32_splat(a0 + off);
        c00 = madd(x, b0, c00);
        c01 = madd(x, b1, c01);
        x = v128.load32_splat(a1 + off);
        c10 = madd(x, b0, c10);
        c11 = madd(x, b1, c11);
        x = v128.load32_splat(a2 + off);
        c20 = madd(x, b0, c20);
        c21 = madd(x, b1, c21);
        x = v128.load32_splat(a3 + off);
        c30 = madd(x, b0, c30);
        c31 = madd(x, b1, c31);
        pb += bstep;
      }
      const s0 = at(s, i * lds + j), s1 = at(s0, lds), s2 = at(s1, lds), s3 = at(s2, lds);
      v128.store(s0, c00);
      v128.store(s0, c01, 16);
      v128.store(s1, c10);
      v128.store(s1, c11, 16);
      v128.store(s2, c20);
      v128.store(s2, c21, 16);
      v128.store(s3, c30);
      v128.store(s3, c31, 16);
    }
  }
  for (; i < m; i++) {
    const a0 = at(a, i * lda);
    for (let j = 0; j < ncols; j += 8) {
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
      let pb = at(bt, j);
      for (let d = 0; d < kd; d++) {
        const x = v128.load32_splat(a0 + (<usize>d << 2));
        c0 = madd(x, v128.load(pb), c0);
        c1 = madd(x, v128.load(pb, 16), c1);
        pb += bstep;
      }
      const s0 = at(s, i * lds + j);
      v128.store(s0, c0);
      v128.store(s0, c1, 16);
    }
  }
}

/**
 * c[m, n] += A[m, kd] @ b[kd, n], where A[i, t] = a[i*ars + t*acs] (so a transposed operand is just
 * other strides) and b rows are at stride ldb, c rows at stride ldc. Register tiles of 2 rows x 16
 * columns; narrower column tails by 4 and by 1.
 */
function accMatTimes(c: usize, ldc: i32, a: usize, ars: i32, acs: i32, b: usize, ldb: i32, m: i32, n: i32, kd: i32): void {
  const bstep = <usize>ldb << 2;
  const astep = <usize>acs << 2;
  let i = 0;
  for (; i + 2 <= m; i += 2) {
    const c0 = at(c, i * ldc), c1 = at(c, (i + 1) * ldc);
    const a0 = at(a, i * ars), a1 = at(a, (i + 1) * ars);
    let j = 0;
    for (; j + 16 <= n; j += 16) {
      const p0 = at(c0, j), p1 = at(c1, j);
      let r00 = v128.load(p0), r01 = v128.load(p0, 16), r02 = v128.load(p0, 32), r03 = v128.load(p0, 48);
      let r10 = v128.load(p1), r11 = v128.load(p1, 16), r12 = v128.load(p1, 32), r13 = v128.load(p1, 48);
      let pb = at(b, j), pa0 = a0, pa1 = a1;
      for (let t = 0; t < kd; t++) {
        const x0 = v128.load32_splat(pa0), x1 = v128.load32_splat(pa1);
        const b0 = v128.load(pb), b1 = v128.load(pb, 16), b2 = v128.load(pb, 32), b3 = v128.load(pb, 48);
        r00 = madd(x0, b0, r00);
        r01 = madd(x0, b1, r01);
        r02 = madd(x0, b2, r02);
        r03 = madd(x0, b3, r03);
        r10 = madd(x1, b0, r10);
        r11 = madd(x1, b1, r11);
        r12 = madd(x1, b2, r12);
        r13 = madd(x1, b3, r13);
        pb += bstep;
        pa0 += astep;
        pa1 += astep;
      }
      v128.store(p0, r00);
      v128.store(p0, r01, 16);
      v128.store(p0, r02, 32);
      v128.store(p0, r03, 48);
      v128.store(p1, r10);
      v128.store(p1, r11, 16);
      v128.store(p1, r12, 32);
      v128.store(p1, r13, 48);
    }
    for (; j + 4 <= n; j += 4) {
      const p0 = at(c0, j), p1 = at(c1, j);
      let r0 = v128.load(p0), r1 = v128.load(p1);
      let pb = at(b, j), pa0 = a0, pa1 = a1;
      for (let t = 0; t < kd; t++) {
        const bv = v128.load(pb);
        r0 = madd(v128.load32_splat(pa0), bv, r0);
        r1 = madd(v128.load32_splat(pa1), bv, r1);
        pb += bstep;
        pa0 += astep;
        pa1 += astep;
      }
      v128.store(p0, r0);
      v128.store(p1, r1);
    }
    for (; j < n; j++) {
      let r0 = load<f32>(at(c0, j)), r1 = load<f32>(at(c1, j));
      let pb = at(b, j), pa0 = a0, pa1 = a1;
      for (let t = 0; t < kd; t++) {
        const bv = load<f32>(pb);
        r0 += load<f32>(pa0) * bv;
        r1 += load<f32>(pa1) * bv;
        pb += bstep;
        pa0 += astep;
        pa1 += astep;
      }
      store<f32>(at(c0, j), r0);
      store<f32>(at(c1, j), r1);
    }
  }
  if (i < m) {
    const c0 = at(c, i * ldc);
    const a0 = at(a, i * ars);
    let j = 0;
    for (; j + 16 <= n; j += 16) {
      const p0 = at(c0, j);
      let r0 = v128.load(p0), r1 = v128.load(p0, 16), r2 = v128.load(p0, 32), r3 = v128.load(p0, 48);
      let pb = at(b, j), pa0 = a0;
      for (let t = 0; t < kd; t++) {
        const x0 = v128.load32_splat(pa0);
        r0 = madd(x0, v128.load(pb), r0);
        r1 = madd(x0, v128.load(pb, 16), r1);
        r2 = madd(x0, v128.load(pb, 32), r2);
        r3 = madd(x0, v128.load(pb, 48), r3);
        pb += bstep;
        pa0 += astep;
      }
      v128.store(p0, r0);
      v128.store(p0, r1, 16);
      v128.store(p0, r2, 32);
      v128.store(p0, r3, 48);
    }
    for (; j + 4 <= n; j += 4) {
      const p0 = at(c0, j);
      let r0 = v128.load(p0);
      let pb = at(b, j), pa0 = a0;
      for (let t = 0; t < kd; t++) {
        r0 = madd(v128.load32_splat(pa0), v128.load(pb), r0);
        pb += bstep;
        pa0 += astep;
      }
      v128.store(p0, r0);
    }
    for (; j < n; j++) {
      let r0 = load<f32>(at(c0, j));
      let pb = at(b, j), pa0 = a0;
      for (let t = 0; t < kd; t++) {
        r0 += load<f32>(pa0) * load<f32>(pb);
        pb += bstep;
        pa0 += astep;
      }
      store<f32>(at(c0, j), r0);
    }
  }
}

/** dst[D, BK] = rows [0, nk) of src (row stride ld) transposed; columns [nk, nkPad) zeroed. */
function transposeBlock(dst: usize, src: usize, ld: i32, nk: i32, nkPad: i32, D: i32): void {
  for (let j = 0; j < nk; j++) {
    const row = at(src, j * ld);
    for (let d = 0; d < D; d++) store<f32>(at(dst, d * BK + j), load<f32>(at(row, d)));
  }
  for (let d = 0; d < D; d++) {
    for (let j = nk; j < nkPad; j++) store<f32>(at(dst, d * BK + j), 0);
  }
}

/** Zero `rows` rows of n floats at stride ld. */
function zeroRows(p: usize, rows: i32, n: i32, ld: i32): void {
  for (let r = 0; r < rows; r++) memory.fill(at(p, r * ld), 0, <usize>n << 2);
}

/** Lanes j..j+3 < nvis as an all-ones mask. */
// @ts-ignore: decorator
@inline function visibleMask(j: i32, nvis: i32): v128 {
  return i32x4.lt_s(i32x4.add(i32x4.splat(j), i32x4(0, 1, 2, 3)), i32x4.splat(nvis));
}

// ------------------------------------------------------------------------------ forward

export function k_attention(tid: i32, nthreads: i32, q: usize, k: usize, v: usize, o: usize, lse: usize, B: i32, Tq: i32,
  Tk: i32, H: i32, Hkv: i32, D: i32, kvBatchStride: i32, qOffset: i32, scale: f32, scratch: usize, scratchStride: i32): void {
  const G = H / Hkv;
  const ldq = H * D, ldk = Hkv * D;
  const kt = scratch + <usize>tid * <usize>scratchStride;
  const sb = at(kt, D * BK);
  const oacc = at(sb, BQ * BK);
  const mrow = at(oacc, BQ * D);
  const lrow = at(mrow, BQ);
  const vscale = f32x4.splat(scale);
  const vninf = f32x4.splat(-Infinity);
  const nqb = (Tq + BQ - 1) / BQ;
  const units = B * H * nqb;
  // Rounds of nthreads units, dealt in alternating directions: later query blocks cost more
  // (causal), and the snake order evens that out between threads.
  for (let round = 0; ; round++) {
    const u = round * nthreads + ((round & 1) ? nthreads - 1 - tid : tid);
    if (u >= units) break;
    const qb = u % nqb;
    const bh = u / nqb;
    const h = bh % H;
    const b = bh / H;
    const i0 = qb * BQ;
    const mq = min(BQ, Tq - i0);
    const qp = at(q, ((b * Tq + i0) * H + h) * D);
    const op = at(o, ((b * Tq + i0) * H + h) * D);
    const kp = at(k, b * kvBatchStride + (h / G) * D);
    const vp = at(v, b * kvBatchStride + (h / G) * D);
    memory.fill(oacc, 0, <usize>(mq * D) << 2);
    for (let i = 0; i < mq; i++) {
      store<f32>(at(mrow, i), -Infinity);
      store<f32>(at(lrow, i), 0);
    }
    const kend = min(Tk, i0 + mq + qOffset);
    for (let jb = 0; jb < kend; jb += BK) {
      const nk = min(BK, kend - jb);
      const nkPad = (nk + 7) & ~7;
      transposeBlock(kt, at(kp, jb * ldk), ldk, nk, nkPad, D);
      matTimesTransposed(sb, BK, qp, ldq, kt, BK, mq, nkPad, D);
      for (let i = 0; i < mq; i++) {
        const srow = at(sb, i * BK);
        const nvis = min(nk, i0 + i + qOffset - jb + 1);
        if (nvis <= 0) {
          memory.fill(srow, 0, <usize>nkPad << 2);
          continue;
        }
        let vm = vninf;
        for (let j = 0; j < nkPad; j += 4) {
          const sv = v128.bitselect(f32x4.mul(v128.load(at(srow, j)), vscale), vninf, visibleMask(j, nvis));
          v128.store(at(srow, j), sv);
          vm = f32x4.pmax(vm, sv);
        }
        const mold = load<f32>(at(mrow, i));
        const mnew = max(mold, hmax(vm));
        const vmnew = f32x4.splat(mnew);
        let vsum = f32x4.splat(0);
        for (let j = 0; j < nkPad; j += 4) {
          const p = vexp(f32x4.sub(v128.load(at(srow, j)), vmnew));
          v128.store(at(srow, j), p);
          vsum = f32x4.add(vsum, p);
        }
        const alpha = Mathf.exp(mold - mnew);
        store<f32>(at(lrow, i), load<f32>(at(lrow, i)) * alpha + hsum(vsum));
        store<f32>(at(mrow, i), mnew);
        if (alpha != 1) scaleRow(at(oacc, i * D), D, alpha);
      }
      accMatTimes(oacc, D, sb, BK, 1, at(vp, jb * ldk), ldk, mq, D, nk);
    }
    const lsep = at(lse, (b * H + h) * Tq + i0);
    for (let i = 0; i < mq; i++) {
      const orow = at(op, i * ldq);
      const l = load<f32>(at(lrow, i));
      if (l == 0) {
        memory.fill(orow, 0, <usize>D << 2);
        store<f32>(at(lsep, i), -Infinity);
        continue;
      }
      const arow = at(oacc, i * D);
      const inv: f32 = 1.0 / l;
      const vinv = f32x4.splat(inv);
      let d = 0;
      for (; d + 4 <= D; d += 4) v128.store(at(orow, d), f32x4.mul(v128.load(at(arow, d)), vinv));
      for (; d < D; d++) store<f32>(at(orow, d), load<f32>(at(arow, d)) * inv);
      store<f32>(at(lsep, i), load<f32>(at(mrow, i)) + Mathf.log(l));
    }
  }
}

function scaleRow(x: usize, n: i32, a: f32): void {
  const va = f32x4.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(x, i), f32x4.mul(v128.load(at(x, i)), va));
  for (; i < n; i++) store<f32>(at(x, i), load<f32>(at(x, i)) * a);
}

// ------------------------------------------------------------------------------ backward

/**
 * Threads split the (batch, kv head) pairs: a pair's unit writes the dk, dv rows of that kv head
 * and the dq rows of the G query heads that share it, so no two threads write the same row.
 * Per key block: for each query head of the group and each query block that can see the keys,
 * P = exp(S*scale - lse), dP = dO V^T, dS = P (dP - Di) scale with Di = rowsum(dO o O), then
 * dV += P^T dO, dK += dS^T Q, dQ += dS K.
 */
export function k_attention_backward(tid: i32, nthreads: i32, q: usize, k: usize, v: usize, o: usize, lse: usize,
  dout: usize, dq: usize, dk: usize, dv: usize, B: i32, Tq: i32, Tk: i32, H: i32, Hkv: i32, D: i32,
  kvBatchStride: i32, qOffset: i32, scale: f32, scratch: usize, scratchStride: i32): void {
  const G = H / Hkv;
  const ldq = H * D, ldk = Hkv * D;
  const kt = scratch + <usize>tid * <usize>scratchStride;
  const vt = at(kt, D * BK);
  const pb = at(vt, D * BK);
  const dsb = at(pb, BQ * BK);
  const di = at(dsb, BQ * BK);
  const vscale = f32x4.splat(scale);
  const vninf = f32x4.splat(-Infinity);
  const units = B * Hkv;
  const u1 = shareEnd(units, 1, tid, nthreads);
  for (let u = shareStart(units, 1, tid, nthreads); u < u1; u++) {
    const hk = u % Hkv;
    const b = u / Hkv;
    const kp = at(k, b * kvBatchStride + hk * D);
    const vp = at(v, b * kvBatchStride + hk * D);
    const dkp = at(dk, b * Tk * ldk + hk * D);
    const dvp = at(dv, b * Tk * ldk + hk * D);
    for (let g = 0; g < G; g++) {
      const h = hk * G + g;
      const row0 = (b * Tq * H + h) * D;
      zeroRows(at(dq, row0), Tq, D, ldq);
      for (let i = 0; i < Tq; i++) {
        const ro = row0 + i * ldq;
        store<f32>(at(di, g * Tq + i), dotRow(at(dout, ro), at(o, ro), D));
      }
    }
    for (let jb = 0; jb < Tk; jb += BK) {
      const nk = min(BK, Tk - jb);
      const nkPad = (nk + 7) & ~7;
      const dkb = at(dkp, jb * ldk), dvb = at(dvp, jb * ldk);
      zeroRows(dkb, nk, D, ldk);
      zeroRows(dvb, nk, D, ldk);
      const istart = max(0, jb - qOffset);
      if (istart >= Tq) continue;
      const kb = at(kp, jb * ldk);
      transposeBlock(kt, kb, ldk, nk, nkPad, D);
      transposeBlock(vt, at(vp, jb * ldk), ldk, nk, nkPad, D);
      for (let g = 0; g < G; g++) {
        const h = hk * G + g;
        const lsep = at(lse, (b * H + h) * Tq);
        for (let ib = (istart / BQ) * BQ; ib < Tq; ib += BQ) {
          const mq = min(BQ, Tq - ib);
          const ro = ((b * Tq + ib) * H + h) * D;
          const qp = at(q, ro), dop = at(dout, ro), dqp = at(dq, ro);
          matTimesTransposed(pb, BK, qp, ldq, kt, BK, mq, nkPad, D);
          matTimesTransposed(dsb, BK, dop, ldq, vt, BK, mq, nkPad, D);
          for (let i = 0; i < mq; i++) {
            const nvis = min(nk, ib + i + qOffset - jb + 1);
            const prow = at(pb, i * BK), drow = at(dsb, i * BK);
            const vl = f32x4.splat(load<f32>(at(lsep, ib + i)));
            const vd = f32x4.splat(load<f32>(at(di, g * Tq + ib + i)));
            for (let j = 0; j < nkPad; j += 4) {
              const sv = f32x4.sub(f32x4.mul(v128.load(at(prow, j)), vscale), vl);
              const p = vexp(v128.bitselect(sv, vninf, visibleMask(j, nvis)));
              v128.store(at(prow, j), p);
              v128.store(at(drow, j), f32x4.mul(f32x4.mul(p, f32x4.sub(v128.load(at(drow, j)), vd)), vscale));
            }
          }
          accMatTimes(dvb, ldk, pb, 1, BK, dop, ldq, nk, D, mq);
          accMatTimes(dkb, ldk, dsb, 1, BK, qp, ldq, nk, D, mq);
          accMatTimes(dqp, ldq, dsb, BK, 1, kb, ldk, mq, D, nk);
        }
      }
    }
  }
}

function dotRow(x: usize, y: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) acc = madd(v128.load(at(x, i)), v128.load(at(y, i)), acc);
  let s = hsum(acc);
  for (; i < n; i++) s += load<f32>(at(x, i)) * load<f32>(at(y, i));
  return s;
}
