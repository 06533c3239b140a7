// Shared pieces of the non-GEMM kernels: vector exp / sigmoid, horizontal sums, fused multiply-add
// and the split of a range of work items across threads.

// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

// @ts-ignore: decorator
@inline export function hmax(v: v128): f32 {
  const s = f32x4.pmax(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return max(f32x4.extract_lane(s, 0), f32x4.extract_lane(s, 1));
}

/**
 * exp(x) on four lanes: x = n ln2 + r with |r| <= ln2/2, exp(r) by the degree-7 minimax polynomial
 * of Cephes expf (about 2 ulp), times 2^n built in the exponent bits. n is rounded by adding
 * 1.5 * 2^23, which leaves n in the low mantissa bits (cheaper than nearest + trunc_sat). Inputs
 * are clamped to [-87, 88] so 2^n stays a normal float: lanes below -87 (including -inf) return
 * exactly 0, which is what masked attention scores rely on, lanes above 88 return exp(88) (callers
 * that can see such inputs check for them), NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function vexp(x: v128): v128 {
  const lo = f32x4.splat(-87.0);
  const magic = f32x4.splat(12582912.0);
  const xc = f32x4.pmin(f32x4.pmax(x, lo), f32x4.splat(88.0));
  const t = madd(xc, f32x4.splat(1.44269504089), magic);
  const n = f32x4.sub(t, magic);
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  const e = f32x4.add(madd(p, f32x4.mul(r, r), r), f32x4.splat(1.0));
  const pow2n = i32x4.shl(i32x4.add(t, i32x4.splat(127 - 0x4b400000)), 23);
  return v128.andnot(f32x4.mul(e, pow2n), f32x4.lt(x, lo));
}

/** 1 / (1 + exp(-x)) on four lanes. */
// @ts-ignore: decorator
@inline export function vsigmoid(x: v128): v128 {
  const one = f32x4.splat(1.0);
  return f32x4.div(one, f32x4.add(one, vexp(f32x4.neg(x))));
}

// @ts-ignore: decorator
@inline export function sigmoidf(x: f32): f32 {
  return 1.0 / (1.0 + Mathf.exp(-x));
}

/**
 * The n (1 to 3) floats at p in the low lanes of a vector, the others 0: a range's last partial
 * vector then goes through the same vector code as the rest, so an element's result does not
 * depend on where the range (a thread's share, a batch of rows) ends.
 */
// @ts-ignore: decorator
@inline export function loadPartial(p: usize, n: i32): v128 {
  let v = f32x4.replace_lane(f32x4.splat(0), 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Store the low n (1 to 3) lanes of v at p (see loadPartial). */
// @ts-ignore: decorator
@inline export function storePartial(p: usize, v: v128, n: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/**
 * First item of thread `tid`'s share when `total` items are split into nthreads contiguous chunks
 * whose boundaries are multiples of `align` (so threads never write the same cache line).
 */
// @ts-ignore: decorator
@inline export function shareStart(total: i32, align: i32, tid: i32, nthreads: i32): i32 {
  const units = (total + align - 1) / align;
  const per = (units + nthreads - 1) / nthreads;
  return min(total, tid * per * align);
}

/** One past the last item of thread `tid`'s share (see shareStart). */
// @ts-ignore: decorator
@inline export function shareEnd(total: i32, align: i32, tid: i32, nthreads: i32): i32 {
  const units = (total + align - 1) / align;
  const per = (units + nthreads - 1) / nthreads;
  return min(total, (tid + 1) * per * align);
}

/** Byte address of float (or int) element i of the array at p. */
// @ts-ignore: decorator
@inline export function at(p: usize, i: i32): usize {
  return p + (<usize>i << 2);
}
