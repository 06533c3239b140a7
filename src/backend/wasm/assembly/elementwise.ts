// Elementwise kernels (Kernels.fill ... swigluBackward, sumSquares, adamw in ../../backend.ts).
// Each thread takes a contiguous, 16-element-aligned share of the flat index range. The forward
// kernels compute a range's last partial vector with the vector code too (loadPartial), so that
// each element's value is the same however many rows the call holds (batch invariance).
import { at, loadPartial, madd, shareEnd, shareStart, sigmoidf, storePartial, vexp, vsigmoid } from './simd-math';

const ALIGN: i32 = 16; // floats per 64-byte cache line

export function k_fill(tid: i32, nthreads: i32, out: usize, n: i32, value: f64, isInt: i32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  const bits: i32 = isInt ? <i32><i64>value : reinterpret<i32>(<f32>value);
  const v = i32x4.splat(bits);
  let i = s;
  for (; i + 4 <= e; i += 4) v128.store(at(out, i), v);
  for (; i < e; i++) store<i32>(at(out, i), bits);
}

/**
 * Strided copy of 32-bit words. Threads split the rows (or, with fewer rows than threads, the
 * columns); the JS side runs overlapping copies on one thread, where the row order matches the js
 * reference so overlapping moves stay correct.
 */
export function k_copy2d(tid: i32, nthreads: i32, src: usize, dst: usize, rows: i32, cols: i32, srcStride: i32,
  dstStride: i32): void {
  if (src == dst && srcStride == dstStride) return;
  let r0 = 0, r1 = rows, c0 = 0, c1 = cols;
  if (rows >= nthreads) {
    r0 = shareStart(rows, 1, tid, nthreads);
    r1 = shareEnd(rows, 1, tid, nthreads);
  } else {
    c0 = shareStart(cols, ALIGN, tid, nthreads);
    c1 = shareEnd(cols, ALIGN, tid, nthreads);
  }
  if (c0 >= c1) return;
  const bytes = <usize>(c1 - c0) << 2;
  if (dst > src) {
    for (let r = r1 - 1; r >= r0; r--) memory.copy(at(dst, r * dstStride + c0), at(src, r * srcStride + c0), bytes);
  } else {
    for (let r = r0; r < r1; r++) memory.copy(at(dst, r * dstStride + c0), at(src, r * srcStride + c0), bytes);
  }
}

// ------------------------------------------------------------------------------ binary

// @ts-ignore: decorator
@inline function binV(op: i32, x: v128, y: v128): v128 {
  if (op == 0) return f32x4.add(x, y);
  if (op == 1) return f32x4.sub(x, y);
  if (op == 2) return f32x4.mul(x, y);
  return f32x4.div(x, y);
}

// @ts-ignore: decorator
@inline function binS(op: i32, x: f32, y: f32): f32 {
  if (op == 0) return x + y;
  if (op == 1) return x - y;
  if (op == 2) return x * y;
  return x / y;
}

/** out[0, n) = a[j*sa] op b[j*sb]; `op` is a constant at every call site, so each copy specialises. */
// @ts-ignore: decorator
@inline function binaryRun(op: i32, a: usize, sa: i32, b: usize, sb: i32, out: usize, n: i32): void {
  let j = 0;
  if (sa == 1 && sb == 1) {
    for (; j + 4 <= n; j += 4) v128.store(at(out, j), binV(op, v128.load(at(a, j)), v128.load(at(b, j))));
  } else if (sa == 1 && sb == 0) {
    const y = v128.load32_splat(b);
    for (; j + 4 <= n; j += 4) v128.store(at(out, j), binV(op, v128.load(at(a, j)), y));
  } else if (sa == 0 && sb == 1) {
    const x = v128.load32_splat(a);
    for (; j + 4 <= n; j += 4) v128.store(at(out, j), binV(op, x, v128.load(at(b, j))));
  }
  for (; j < n; j++) store<f32>(at(out, j), binS(op, load<f32>(at(a, j * sa)), load<f32>(at(b, j * sb))));
}

function binaryRow(op: i32, a: usize, sa: i32, b: usize, sb: i32, out: usize, n: i32): void {
  if (op == 0) binaryRun(0, a, sa, b, sb, out, n);
  else if (op == 1) binaryRun(1, a, sa, b, sb, out, n);
  else if (op == 2) binaryRun(2, a, sa, b, sb, out, n);
  else binaryRun(3, a, sa, b, sb, out, n);
}

/** Broadcasting binary op over a 4-D index space; threads split the flat output range. */
export function k_binary(tid: i32, nthreads: i32, op: i32, a: usize, b: usize, out: usize,
  n0: i32, n1: i32, n2: i32, n3: i32, sa0: i32, sa1: i32, sa2: i32, sa3: i32,
  sb0: i32, sb1: i32, sb2: i32, sb3: i32): void {
  const total = n0 * n1 * n2 * n3;
  const s = shareStart(total, ALIGN, tid, nthreads);
  const e = shareEnd(total, ALIGN, tid, nthreads);
  if (s >= e) return;
  let r = s / n3;
  let c = s - r * n3;
  let pos = s;
  while (pos < e) {
    const len = min(n3 - c, e - pos);
    const i2 = r % n2;
    const t = r / n2;
    const i1 = t % n1;
    const i0 = t / n1;
    const ao = i0 * sa0 + i1 * sa1 + i2 * sa2 + c * sa3;
    const bo = i0 * sb0 + i1 * sb1 + i2 * sb2 + c * sb3;
    binaryRow(op, at(a, ao), sa3, at(b, bo), sb3, at(out, pos), len);
    pos += len;
    c = 0;
    r++;
  }
}

// ------------------------------------------------------------------------------ unary

// Op codes as UnaryOp in ../../backend.ts.
const EXP = 0, LOG = 1, TANH = 2, SQRT = 3, SQUARE = 4, SILU = 5, SIGMOID = 6, NEG = 7, RSQRT = 8, RELU = 9;

/** vexp, except that lanes above 88 (where vexp saturates; rare) take the scalar exp, which overflows to inf. */
// @ts-ignore: decorator
@inline function expV(x: v128): v128 {
  const big = f32x4.gt(x, f32x4.splat(88.0));
  if (!v128.any_true(big)) return vexp(x);
  let s = f32x4.replace_lane(x, 0, Mathf.exp(f32x4.extract_lane(x, 0)));
  s = f32x4.replace_lane(s, 1, Mathf.exp(f32x4.extract_lane(x, 1)));
  s = f32x4.replace_lane(s, 2, Mathf.exp(f32x4.extract_lane(x, 2)));
  s = f32x4.replace_lane(s, 3, Mathf.exp(f32x4.extract_lane(x, 3)));
  return v128.bitselect(s, vexp(x), big);
}

// @ts-ignore: decorator
@inline function unaryV(op: i32, x: v128): v128 {
  const zero = f32x4.splat(0);
  const one = f32x4.splat(1);
  if (op == EXP) return expV(x);
  if (op == SQRT) return f32x4.sqrt(x);
  if (op == SQUARE) return f32x4.mul(x, x);
  if (op == SILU) return f32x4.mul(x, vsigmoid(x));
  if (op == SIGMOID) return vsigmoid(x);
  if (op == NEG) return f32x4.neg(x);
  if (op == RSQRT) return f32x4.div(one, f32x4.sqrt(x));
  return v128.and(x, f32x4.gt(x, zero)); // RELU (NaN -> 0, as the reference)
}

/** log and tanh have no vector form here: element by element. */
// @ts-ignore: decorator
@inline function unaryS(op: i32, x: f32): f32 {
  return op == LOG ? Mathf.log(x) : Mathf.tanh(x);
}

// @ts-ignore: decorator
@inline function unaryRun(op: i32, x: usize, y: usize, s: i32, e: i32): void {
  let i = s;
  if (op == LOG || op == TANH) {
    for (; i < e; i++) store<f32>(at(y, i), unaryS(op, load<f32>(at(x, i))));
    return;
  }
  for (; i + 4 <= e; i += 4) v128.store(at(y, i), unaryV(op, v128.load(at(x, i))));
  if (i < e) storePartial(at(y, i), unaryV(op, loadPartial(at(x, i), e - i)), e - i);
}

export function k_unary(tid: i32, nthreads: i32, op: i32, x: usize, y: usize, n: i32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  switch (op) {
    case EXP: unaryRun(EXP, x, y, s, e); break;
    case LOG: unaryRun(LOG, x, y, s, e); break;
    case TANH: unaryRun(TANH, x, y, s, e); break;
    case SQRT: unaryRun(SQRT, x, y, s, e); break;
    case SQUARE: unaryRun(SQUARE, x, y, s, e); break;
    case SILU: unaryRun(SILU, x, y, s, e); break;
    case SIGMOID: unaryRun(SIGMOID, x, y, s, e); break;
    case NEG: unaryRun(NEG, x, y, s, e); break;
    case RSQRT: unaryRun(RSQRT, x, y, s, e); break;
    default: unaryRun(RELU, x, y, s, e);
  }
}

/** f'(x) on four lanes, from x and y = f(x). */
// @ts-ignore: decorator
@inline function derivV(op: i32, x: v128, y: v128): v128 {
  const one = f32x4.splat(1);
  if (op == EXP) return y;
  if (op == LOG) return f32x4.div(one, x);
  if (op == TANH) return f32x4.sub(one, f32x4.mul(y, y));
  if (op == SQRT) return f32x4.div(f32x4.splat(0.5), y);
  if (op == SQUARE) return f32x4.add(x, x);
  if (op == SILU) {
    const s = vsigmoid(x);
    return f32x4.mul(s, madd(x, f32x4.sub(one, s), one));
  }
  if (op == SIGMOID) return f32x4.mul(y, f32x4.sub(one, y));
  if (op == NEG) return f32x4.splat(-1);
  if (op == RSQRT) return f32x4.mul(f32x4.splat(-0.5), f32x4.mul(y, f32x4.mul(y, y)));
  return v128.and(one, f32x4.gt(x, f32x4.splat(0))); // RELU
}

// @ts-ignore: decorator
@inline function derivS(op: i32, x: f32, y: f32): f32 {
  if (op == EXP) return y;
  if (op == LOG) return 1.0 / x;
  if (op == TANH) return 1.0 - y * y;
  if (op == SQRT) return 0.5 / y;
  if (op == SQUARE) return x + x;
  if (op == SILU) {
    const s = sigmoidf(x);
    return s * (1.0 + x * (1.0 - s));
  }
  if (op == SIGMOID) return y * (1.0 - y);
  if (op == NEG) return -1.0;
  if (op == RSQRT) return -0.5 * y * y * y;
  return x > 0 ? 1.0 : 0.0;
}

// @ts-ignore: decorator
@inline function unaryBackwardRun(op: i32, x: usize, y: usize, dy: usize, dx: usize, s: i32, e: i32): void {
  let i = s;
  for (; i + 4 <= e; i += 4) {
    const d = derivV(op, v128.load(at(x, i)), v128.load(at(y, i)));
    v128.store(at(dx, i), f32x4.mul(v128.load(at(dy, i)), d));
  }
  for (; i < e; i++) store<f32>(at(dx, i), load<f32>(at(dy, i)) * derivS(op, load<f32>(at(x, i)), load<f32>(at(y, i))));
}

export function k_unary_backward(tid: i32, nthreads: i32, op: i32, x: usize, y: usize, dy: usize, dx: usize, n: i32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  switch (op) {
    case EXP: unaryBackwardRun(EXP, x, y, dy, dx, s, e); break;
    case LOG: unaryBackwardRun(LOG, x, y, dy, dx, s, e); break;
    case TANH: unaryBackwardRun(TANH, x, y, dy, dx, s, e); break;
    case SQRT: unaryBackwardRun(SQRT, x, y, dy, dx, s, e); break;
    case SQUARE: unaryBackwardRun(SQUARE, x, y, dy, dx, s, e); break;
    case SILU: unaryBackwardRun(SILU, x, y, dy, dx, s, e); break;
    case SIGMOID: unaryBackwardRun(SIGMOID, x, y, dy, dx, s, e); break;
    case NEG: unaryBackwardRun(NEG, x, y, dy, dx, s, e); break;
    case RSQRT: unaryBackwardRun(RSQRT, x, y, dy, dx, s, e); break;
    default: unaryBackwardRun(RELU, x, y, dy, dx, s, e);
  }
}

// ------------------------------------------------------------------------------ axpby, reduceTo

export function k_axpby(tid: i32, nthreads: i32, x: usize, y: usize, n: i32, alpha: f32, beta: f32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  const va = f32x4.splat(alpha);
  const vb = f32x4.splat(beta);
  let i = s;
  if (beta == 0) {
    for (; i + 4 <= e; i += 4) v128.store(at(y, i), f32x4.mul(va, v128.load(at(x, i))));
    for (; i < e; i++) store<f32>(at(y, i), alpha * load<f32>(at(x, i)));
  } else {
    for (; i + 4 <= e; i += 4) {
      v128.store(at(y, i), f32x4.add(f32x4.mul(va, v128.load(at(x, i))), f32x4.mul(vb, v128.load(at(y, i)))));
    }
    for (; i < e; i++) store<f32>(at(y, i), alpha * load<f32>(at(x, i)) + beta * load<f32>(at(y, i)));
  }
}

/**
 * out = g summed over the dims where outShape is 1 (and shape is not). Threads split the output
 * rows (dims 0..2), or with fewer output rows than threads the output columns. Each output row is
 * accumulated in place from the g rows that collapse onto it.
 */
export function k_reduce_to(tid: i32, nthreads: i32, g: usize, out: usize, n0: i32, n1: i32, n2: i32, n3: i32,
  o0: i32, o1: i32, o2: i32, o3: i32): void {
  const outRows = o0 * o1 * o2;
  let r0 = 0, r1 = outRows, c0 = 0, c1 = o3;
  if (outRows >= nthreads) {
    r0 = shareStart(outRows, 1, tid, nthreads);
    r1 = shareEnd(outRows, 1, tid, nthreads);
  } else {
    c0 = shareStart(o3, ALIGN, tid, nthreads);
    c1 = shareEnd(o3, ALIGN, tid, nthreads);
  }
  if (c0 >= c1) return;
  const keepCols = o3 == n3;
  // extents looped over per output row, and g's strides
  const e0 = o0 == 1 ? n0 : 1, e1 = o1 == 1 ? n1 : 1, e2 = o2 == 1 ? n2 : 1;
  const gs2 = n3, gs1 = n2 * n3, gs0 = n1 * n2 * n3;
  for (let r = r0; r < r1; r++) {
    const j2 = r % o2;
    const t = r / o2;
    const j1 = t % o1;
    const j0 = t / o1;
    const orow = at(out, r * o3);
    if (keepCols) {
      for (let c = c0; c < c1; c++) store<f32>(at(orow, c), 0);
      for (let i0 = 0; i0 < e0; i0++) {
        for (let i1 = 0; i1 < e1; i1++) {
          for (let i2 = 0; i2 < e2; i2++) {
            const grow = at(g, (i0 + j0) * gs0 + (i1 + j1) * gs1 + (i2 + j2) * gs2);
            let c = c0;
            for (; c + 4 <= c1; c += 4) v128.store(at(orow, c), f32x4.add(v128.load(at(orow, c)), v128.load(at(grow, c))));
            for (; c < c1; c++) store<f32>(at(orow, c), load<f32>(at(orow, c)) + load<f32>(at(grow, c)));
          }
        }
      }
    } else {
      // o3 == 1 < n3: the whole last axis collapses too; sum in f64 (rows may be long)
      let acc: f64 = 0;
      for (let i0 = 0; i0 < e0; i0++) {
        for (let i1 = 0; i1 < e1; i1++) {
          for (let i2 = 0; i2 < e2; i2++) {
            const grow = at(g, (i0 + j0) * gs0 + (i1 + j1) * gs1 + (i2 + j2) * gs2);
            let v = f32x4.splat(0);
            let c = 0;
            for (; c + 4 <= n3; c += 4) v = f32x4.add(v, v128.load(at(grow, c)));
            let s: f64 = <f64>f32x4.extract_lane(v, 0) + <f64>f32x4.extract_lane(v, 1) +
              <f64>f32x4.extract_lane(v, 2) + <f64>f32x4.extract_lane(v, 3);
            for (; c < n3; c++) s += <f64>load<f32>(at(grow, c));
            acc += s;
          }
        }
      }
      store<f32>(orow, <f32>acc);
    }
  }
}

// ------------------------------------------------------------------------------ SwiGLU

export function k_swiglu(tid: i32, nthreads: i32, g: usize, u: usize, y: usize, n: i32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  let i = s;
  for (; i + 4 <= e; i += 4) {
    const x = v128.load(at(g, i));
    v128.store(at(y, i), f32x4.mul(f32x4.mul(x, vsigmoid(x)), v128.load(at(u, i))));
  }
  if (i < e) {
    const x = loadPartial(at(g, i), e - i);
    storePartial(at(y, i), f32x4.mul(f32x4.mul(x, vsigmoid(x)), loadPartial(at(u, i), e - i)), e - i);
  }
}

export function k_swiglu_backward(tid: i32, nthreads: i32, g: usize, u: usize, dy: usize, dg: usize, du: usize, n: i32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  const one = f32x4.splat(1);
  let i = s;
  for (; i + 4 <= e; i += 4) {
    const x = v128.load(at(g, i));
    const d = v128.load(at(dy, i));
    const sg = vsigmoid(x);
    const uv = v128.load(at(u, i));
    v128.store(at(du, i), f32x4.mul(d, f32x4.mul(x, sg)));
    v128.store(at(dg, i), f32x4.mul(f32x4.mul(d, uv), f32x4.mul(sg, madd(x, f32x4.sub(one, sg), one))));
  }
  for (; i < e; i++) {
    const x = load<f32>(at(g, i));
    const d = load<f32>(at(dy, i));
    const sg = sigmoidf(x);
    store<f32>(at(du, i), d * x * sg);
    store<f32>(at(dg, i), d * load<f32>(at(u, i)) * sg * (1.0 + x * (1.0 - sg)));
  }
}

// ------------------------------------------------------------------------------ optimizer

/** partials[tid] (f64) = sum of x[i]^2 over this thread's share; the JS side adds the partials. */
export function k_sum_squares(tid: i32, nthreads: i32, x: usize, n: i32, partials: usize): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  let acc0 = f64x2.splat(0), acc1 = f64x2.splat(0);
  let i = s;
  for (; i + 4 <= e; i += 4) {
    const v = v128.load(at(x, i));
    const lo = f64x2.promote_low_f32x4(v);
    const hi = f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
    acc0 = f64x2.add(acc0, f64x2.mul(lo, lo));
    acc1 = f64x2.add(acc1, f64x2.mul(hi, hi));
  }
  const a = f64x2.add(acc0, acc1);
  let sum = f64x2.extract_lane(a, 0) + f64x2.extract_lane(a, 1);
  for (; i < e; i++) {
    const v = <f64>load<f32>(at(x, i));
    sum += v * v;
  }
  store<f64>(partials + (<usize>tid << 3), sum);
}

export function k_adamw(tid: i32, nthreads: i32, p: usize, g: usize, m: usize, v: usize, n: i32, lr: f32, b1: f32,
  b2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32): void {
  const s = shareStart(n, ALIGN, tid, nthreads);
  const e = shareEnd(n, ALIGN, tid, nthreads);
  const vb1 = f32x4.splat(b1), vc1 = f32x4.splat(1 - b1);
  const vb2 = f32x4.splat(b2), vc2 = f32x4.splat(1 - b2);
  const vbc1 = f32x4.splat(1 / bc1), vbc2 = f32x4.splat(1 / bc2);
  const veps = f32x4.splat(eps), vwd = f32x4.splat(wd), vlr = f32x4.splat(lr);
  let i = s;
  for (; i + 4 <= e; i += 4) {
    const gi = v128.load(at(g, i));
    const mi = f32x4.add(f32x4.mul(vb1, v128.load(at(m, i))), f32x4.mul(vc1, gi));
    const vi = f32x4.add(f32x4.mul(vb2, v128.load(at(v, i))), f32x4.mul(vc2, f32x4.mul(gi, gi)));
    v128.store(at(m, i), mi);
    v128.store(at(v, i), vi);
    const pi = v128.load(at(p, i));
    const upd = f32x4.div(f32x4.mul(mi, vbc1), f32x4.add(f32x4.sqrt(f32x4.mul(vi, vbc2)), veps));
    v128.store(at(p, i), f32x4.sub(pi, f32x4.mul(vlr, f32x4.add(upd, f32x4.mul(vwd, pi)))));
  }
  for (; i < e; i++) {
    const gi = load<f32>(at(g, i));
    const mi = b1 * load<f32>(at(m, i)) + (1 - b1) * gi;
    const vi = b2 * load<f32>(at(v, i)) + (1 - b2) * gi * gi;
    store<f32>(at(m, i), mi);
    store<f32>(at(v, i), vi);
    const pi = load<f32>(at(p, i));
    store<f32>(at(p, i), pi - lr * (mi / bc1 / (Mathf.sqrt(vi / bc2) + eps) + wd * pi));
  }
}
