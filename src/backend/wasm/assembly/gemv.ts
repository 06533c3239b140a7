// Row kernels for products with few rows of op(A) (see gemm.ts, which picks them): GEMV as dot
// products with rows of W (C = x W^T) or as axpy over rows of W (C = x W), and small-m dot-product
// tiles. None packs: with few rows, packing would cost as much as the FMAs, and W streams once.
// Pointers are byte offsets; sizes are element counts.

/** Shortest slice of k per pass of gemmDotRows (k up to this runs in one pass). */
const KD_MIN: i32 = 1024;

/** a * b + c: relaxed (fused) in the relaxed-SIMD build, mul + add in the plain one. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** Sum of the four lanes. */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/**
 * C[i0:i1, j0:j1] (+)= A B^T with A [m, k] and B [n, k] row-major, as dot products of rows: for
 * few rows of A this needs no packing at all. 4 rows of A x 2 rows of B per step (8 accumulators),
 * over slices of k so the rows of A stay in L1 while B streams past once; leftover rows
 * of A go through gemvDot2 / gemvDot.
 */
export function gemmDotRows(a: usize, b: usize, c: usize, k: i32, n: i32, i0: i32, i1: i32, j0: i32, j1: i32,
  accumulate: bool): void {
  const rowB = <usize>k << 2;
  const ldcB = <usize>n << 2;
  const i4 = i0 + ((i1 - i0) & ~3);
  // A slice of the 4-row tiles fills about 16 KiB of L1 (or L2 for many rows); B streams in >= 4 KiB pieces.
  const kd = max(KD_MIN, (4096 / max(1, i4 - i0)) & ~3);
  for (let p0 = 0; p0 < k; p0 += kd) {
    const p1 = min(k, p0 + kd);
    const pv = p0 + ((p1 - p0) & ~3);
    const acc = accumulate || p0 > 0;
    let j = j0;
    for (; j + 2 <= j1; j += 2) {
      const b0 = b + <usize>j * rowB, b1 = b0 + rowB;
      for (let i = i0; i < i4; i += 4) {
        const a0 = a + <usize>i * rowB, a1 = a0 + rowB, a2 = a1 + rowB, a3 = a2 + rowB;
        let s00 = f32x4.splat(0), s01 = f32x4.splat(0);
        let s10 = f32x4.splat(0), s11 = f32x4.splat(0);
        let s20 = f32x4.splat(0), s21 = f32x4.splat(0);
        let s30 = f32x4.splat(0), s31 = f32x4.splat(0);
        for (let p = p0; p < pv; p += 4) {
          const o = <usize>p << 2;
          const v0 = v128.load(b0 + o);
          const v1 = v128.load(b1 + o);
          let u = v128.load(a0 + o);
          s00 = madd(u, v0, s00);
          s01 = madd(u, v1, s01);
          u = v128.load(a1 + o);
          s10 = madd(u, v0, s10);
          s11 = madd(u, v1, s11);
          u = v128.load(a2 + o);
          s20 = madd(u, v0, s20);
          s21 = madd(u, v1, s21);
          u = v128.load(a3 + o);
          s30 = madd(u, v0, s30);
          s31 = madd(u, v1, s31);
        }
        const cp = c + <usize>i * ldcB + (<usize>j << 2);
        dotStore(cp, hsum(s00), a0, b0, pv, p1, acc);
        dotStore(cp + 4, hsum(s01), a0, b1, pv, p1, acc);
        dotStore(cp + ldcB, hsum(s10), a1, b0, pv, p1, acc);
        dotStore(cp + ldcB + 4, hsum(s11), a1, b1, pv, p1, acc);
        dotStore(cp + 2 * ldcB, hsum(s20), a2, b0, pv, p1, acc);
        dotStore(cp + 2 * ldcB + 4, hsum(s21), a2, b1, pv, p1, acc);
        dotStore(cp + 3 * ldcB, hsum(s30), a3, b0, pv, p1, acc);
        dotStore(cp + 3 * ldcB + 4, hsum(s31), a3, b1, pv, p1, acc);
      }
    }
    if (j < j1) {
      for (let i = i0; i < i4; i++) {
        const cp = c + <usize>i * ldcB + (<usize>j << 2);
        const ar = a + <usize>i * rowB, br = b + <usize>j * rowB;
        let s: f32 = 0;
        for (let p = p0; p < p1; p++) s += load<f32>(ar + (<usize>p << 2)) * load<f32>(br + (<usize>p << 2));
        if (acc) s += load<f32>(cp);
        store<f32>(cp, s);
      }
    }
  }
  let i = i4;
  if (i + 2 <= i1) {
    gemvDot2(a + <usize>i * rowB, b, c + <usize>i * ldcB, k, n, j0, j1, accumulate);
    i += 2;
  }
  if (i < i1) gemvDot(a + <usize>i * rowB, b, c + <usize>i * ldcB, k, j0, j1, accumulate);
}

/** Store one dot product: the vector part `s` plus the tail [pv, p1) of rows x and w. */
// @ts-ignore: decorator
@inline function dotStore(cp: usize, s: f32, x: usize, w: usize, pv: i32, p1: i32, accumulate: bool): void {
  for (let p = pv; p < p1; p++) s += load<f32>(x + (<usize>p << 2)) * load<f32>(w + (<usize>p << 2));
  if (accumulate) s += load<f32>(cp);
  store<f32>(cp, s);
}

/** Two rows of gemvDot at once (x rows and y rows k and n floats apart), so w is read once. */
function gemvDot2(x: usize, w: usize, y: usize, k: i32, n: i32, j0: i32, j1: i32, accumulate: bool): void {
  const rowB = <usize>k << 2;
  const ldyB = <usize>n << 2;
  const x1 = x + rowB;
  const k4 = k & ~3;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const w0 = w + <usize>j * rowB, w1 = w0 + rowB, w2 = w1 + rowB, w3 = w2 + rowB;
    let s00 = f32x4.splat(0), s01 = f32x4.splat(0), s02 = f32x4.splat(0), s03 = f32x4.splat(0);
    let s10 = f32x4.splat(0), s11 = f32x4.splat(0), s12 = f32x4.splat(0), s13 = f32x4.splat(0);
    for (let p = 0; p < k4; p += 4) {
      const o = <usize>p << 2;
      const u0 = v128.load(x + o);
      const u1 = v128.load(x1 + o);
      let v = v128.load(w0 + o);
      s00 = madd(u0, v, s00);
      s10 = madd(u1, v, s10);
      v = v128.load(w1 + o);
      s01 = madd(u0, v, s01);
      s11 = madd(u1, v, s11);
      v = v128.load(w2 + o);
      s02 = madd(u0, v, s02);
      s12 = madd(u1, v, s12);
      v = v128.load(w3 + o);
      s03 = madd(u0, v, s03);
      s13 = madd(u1, v, s13);
    }
    const yp = y + (<usize>j << 2);
    dotStore(yp, hsum(s00), x, w0, k4, k, accumulate);
    dotStore(yp + 4, hsum(s01), x, w1, k4, k, accumulate);
    dotStore(yp + 8, hsum(s02), x, w2, k4, k, accumulate);
    dotStore(yp + 12, hsum(s03), x, w3, k4, k, accumulate);
    dotStore(yp + ldyB, hsum(s10), x1, w0, k4, k, accumulate);
    dotStore(yp + ldyB + 4, hsum(s11), x1, w1, k4, k, accumulate);
    dotStore(yp + ldyB + 8, hsum(s12), x1, w2, k4, k, accumulate);
    dotStore(yp + ldyB + 12, hsum(s13), x1, w3, k4, k, accumulate);
  }
  if (j < j1) {
    gemvDot(x, w, y, k, j, j1, accumulate);
    gemvDot(x1, w, y + ldyB, k, j, j1, accumulate);
  }
}

/** y[j] (+)= dot(x, w[j, :]) for j in [j0, j1); w rows of k floats (row stride k). */
export function gemvDot(x: usize, w: usize, y: usize, k: i32, j0: i32, j1: i32, accumulate: bool): void {
  const rowB = <usize>k << 2;
  const k8 = k & ~7;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const w0 = w + <usize>j * rowB, w1 = w0 + rowB, w2 = w1 + rowB, w3 = w2 + rowB;
    let a0 = f32x4.splat(0), b0 = f32x4.splat(0);
    let a1 = f32x4.splat(0), b1 = f32x4.splat(0);
    let a2 = f32x4.splat(0), b2 = f32x4.splat(0);
    let a3 = f32x4.splat(0), b3 = f32x4.splat(0);
    for (let p = 0; p < k8; p += 8) {
      const o = <usize>p << 2;
      const x0 = v128.load(x + o);
      const x1 = v128.load(x + o, 16);
      a0 = madd(x0, v128.load(w0 + o), a0);
      b0 = madd(x1, v128.load(w0 + o, 16), b0);
      a1 = madd(x0, v128.load(w1 + o), a1);
      b1 = madd(x1, v128.load(w1 + o, 16), b1);
      a2 = madd(x0, v128.load(w2 + o), a2);
      b2 = madd(x1, v128.load(w2 + o, 16), b2);
      a3 = madd(x0, v128.load(w3 + o), a3);
      b3 = madd(x1, v128.load(w3 + o, 16), b3);
    }
    let s0 = hsum(f32x4.add(a0, b0));
    let s1 = hsum(f32x4.add(a1, b1));
    let s2 = hsum(f32x4.add(a2, b2));
    let s3 = hsum(f32x4.add(a3, b3));
    for (let p = k8; p < k; p++) {
      const o = <usize>p << 2;
      const xv = load<f32>(x + o);
      s0 += xv * load<f32>(w0 + o);
      s1 += xv * load<f32>(w1 + o);
      s2 += xv * load<f32>(w2 + o);
      s3 += xv * load<f32>(w3 + o);
    }
    const yp = y + (<usize>j << 2);
    if (accumulate) {
      s0 += load<f32>(yp);
      s1 += load<f32>(yp, 4);
      s2 += load<f32>(yp, 8);
      s3 += load<f32>(yp, 12);
    }
    store<f32>(yp, s0);
    store<f32>(yp, s1, 4);
    store<f32>(yp, s2, 8);
    store<f32>(yp, s3, 12);
  }
  for (; j < j1; j++) {
    const wr = w + <usize>j * rowB;
    let a0 = f32x4.splat(0), b0 = f32x4.splat(0);
    for (let p = 0; p < k8; p += 8) {
      const o = <usize>p << 2;
      a0 = madd(v128.load(x + o), v128.load(wr + o), a0);
      b0 = madd(v128.load(x + o, 16), v128.load(wr + o, 16), b0);
    }
    let s = hsum(f32x4.add(a0, b0));
    for (let p = k8; p < k; p++) s += load<f32>(x + (<usize>p << 2)) * load<f32>(wr + (<usize>p << 2));
    const yp = y + (<usize>j << 2);
    if (accumulate) s += load<f32>(yp);
    store<f32>(yp, s);
  }
}

/** y[j] (+)= sum_p x[p] w[p, j] for j in [j0, j1); w rows of ldw floats. Streams w row by row. */
export function gemvAxpy(x: usize, w: usize, y: usize, k: i32, ldw: i32, j0: i32, j1: i32, accumulate: bool): void {
  const ldwB = <usize>ldw << 2;
  const y0 = y + (<usize>j0 << 2);
  const w0 = w + (<usize>j0 << 2);
  const len = j1 - j0;
  const len4 = len & ~3;
  if (!accumulate) memory.fill(y0, 0, <usize>len << 2);
  let p = 0;
  for (; p + 4 <= k; p += 4) {
    const po = <usize>p << 2;
    const x0 = v128.load32_splat(x + po);
    const x1 = v128.load32_splat(x + po, 4);
    const x2 = v128.load32_splat(x + po, 8);
    const x3 = v128.load32_splat(x + po, 12);
    const r0 = w0 + <usize>p * ldwB, r1 = r0 + ldwB, r2 = r1 + ldwB, r3 = r2 + ldwB;
    for (let j = 0; j < len4; j += 4) {
      const o = <usize>j << 2;
      let v = v128.load(y0 + o);
      v = madd(x0, v128.load(r0 + o), v);
      v = madd(x1, v128.load(r1 + o), v);
      v = madd(x2, v128.load(r2 + o), v);
      v = madd(x3, v128.load(r3 + o), v);
      v128.store(y0 + o, v);
    }
    for (let j = len4; j < len; j++) {
      const o = <usize>j << 2;
      let v = load<f32>(y0 + o);
      v += f32x4.extract_lane(x0, 0) * load<f32>(r0 + o);
      v += f32x4.extract_lane(x1, 0) * load<f32>(r1 + o);
      v += f32x4.extract_lane(x2, 0) * load<f32>(r2 + o);
      v += f32x4.extract_lane(x3, 0) * load<f32>(r3 + o);
      store<f32>(y0 + o, v);
    }
  }
  for (; p < k; p++) {
    const xs = load<f32>(x + (<usize>p << 2));
    const xv = f32x4.splat(xs);
    const r = w0 + <usize>p * ldwB;
    for (let j = 0; j < len4; j += 4) {
      const o = <usize>j << 2;
      v128.store(y0 + o, madd(xv, v128.load(r + o), v128.load(y0 + o)));
    }
    for (let j = len4; j < len; j++) {
      const o = <usize>j << 2;
      store<f32>(y0 + o, load<f32>(y0 + o) + xs * load<f32>(r + o));
    }
  }
}
