// Row kernels (softmax, cross-entropy, RMSNorm, row statistics, top-k, transpose) and the row
// indexing kernels (gather, scatter, scatter-add, RoPE). Threads split the rows unless a kernel says otherwise.
import { at, hmax, hsum, madd, shareEnd, shareStart, vexp } from './simd-math';

const ALIGN: i32 = 16;

/** max over x[0, n) (n >= 1). */
function rowMax(x: usize, n: i32): f32 {
  let vm = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= n; i += 4) vm = f32x4.pmax(vm, v128.load(at(x, i)));
  let m = hmax(vm);
  for (; i < n; i++) m = max(m, load<f32>(at(x, i)));
  return m;
}

/** sum of exp(x - shift) over x[0, n), storing each term to y when y != 0. */
function rowSumExp(x: usize, y: usize, n: i32, shift: f32): f32 {
  const vs = f32x4.splat(shift);
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  if (y != 0) {
    for (; i + 8 <= n; i += 8) {
      const e0 = vexp(f32x4.sub(v128.load(at(x, i)), vs));
      const e1 = vexp(f32x4.sub(v128.load(at(x, i + 4)), vs));
      v128.store(at(y, i), e0);
      v128.store(at(y, i + 4), e1);
      acc0 = f32x4.add(acc0, e0);
      acc1 = f32x4.add(acc1, e1);
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      acc0 = f32x4.add(acc0, vexp(f32x4.sub(v128.load(at(x, i)), vs)));
      acc1 = f32x4.add(acc1, vexp(f32x4.sub(v128.load(at(x, i + 4)), vs)));
    }
  }
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) {
    const e = Mathf.exp(load<f32>(at(x, i)) - shift);
    if (y != 0) store<f32>(at(y, i), e);
    s += e;
  }
  return s;
}

/** x[0, n) *= a */
function rowScale(x: usize, n: i32, a: f32): void {
  const va = f32x4.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(x, i), f32x4.mul(v128.load(at(x, i)), va));
  for (; i < n; i++) store<f32>(at(x, i), load<f32>(at(x, i)) * a);
}

function rowDot(x: usize, y: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = madd(v128.load(at(x, i)), v128.load(at(y, i)), acc0);
    acc1 = madd(v128.load(at(x, i + 4)), v128.load(at(y, i + 4)), acc1);
  }
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) s += load<f32>(at(x, i)) * load<f32>(at(y, i));
  return s;
}

function rowSum(x: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = f32x4.add(acc0, v128.load(at(x, i)));
    acc1 = f32x4.add(acc1, v128.load(at(x, i + 4)));
  }
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) s += load<f32>(at(x, i));
  return s;
}

function fillZero(x: usize, n: i32): void {
  memory.fill(x, 0, <usize>n << 2);
}

// ------------------------------------------------------------------------------ softmax

export function k_softmax(tid: i32, nthreads: i32, x: usize, y: usize, rows: i32, cols: i32): void {
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(x, r * cols), yr = at(y, r * cols);
    const m = rowMax(xr, cols);
    const s = rowSumExp(xr, yr, cols, m);
    rowScale(yr, cols, 1.0 / s);
  }
}

export function k_softmax_backward(tid: i32, nthreads: i32, y: usize, dy: usize, dx: usize, rows: i32, cols: i32): void {
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const yr = at(y, r * cols), dyr = at(dy, r * cols), dxr = at(dx, r * cols);
    const dot = rowDot(yr, dyr, cols);
    const vd = f32x4.splat(dot);
    let i = 0;
    for (; i + 4 <= cols; i += 4) {
      v128.store(at(dxr, i), f32x4.mul(v128.load(at(yr, i)), f32x4.sub(v128.load(at(dyr, i)), vd)));
    }
    for (; i < cols; i++) store<f32>(at(dxr, i), load<f32>(at(yr, i)) * (load<f32>(at(dyr, i)) - dot));
  }
}

// ------------------------------------------------------------------------------ cross-entropy

export function k_cross_entropy(tid: i32, nthreads: i32, logits: usize, targets: usize, loss: usize, lse: usize,
  rows: i32, cols: i32, ignoreIndex: i32): void {
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(logits, r * cols);
    const m = rowMax(xr, cols);
    const l = m + Mathf.log(rowSumExp(xr, 0, cols, m));
    store<f32>(at(lse, r), l);
    const t = load<i32>(at(targets, r));
    store<f32>(at(loss, r), t == ignoreIndex ? 0 : l - load<f32>(at(xr, t)));
  }
}

export function k_cross_entropy_backward(tid: i32, nthreads: i32, logits: usize, targets: usize, lse: usize,
  dlogits: usize, rows: i32, cols: i32, ignoreIndex: i32, scale: f32): void {
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(logits, r * cols), dr = at(dlogits, r * cols);
    const t = load<i32>(at(targets, r));
    if (t == ignoreIndex) {
      fillZero(dr, cols);
      continue;
    }
    const l = load<f32>(at(lse, r));
    const vl = f32x4.splat(l), vs = f32x4.splat(scale);
    let i = 0;
    for (; i + 4 <= cols; i += 4) v128.store(at(dr, i), f32x4.mul(vs, vexp(f32x4.sub(v128.load(at(xr, i)), vl))));
    for (; i < cols; i++) store<f32>(at(dr, i), scale * Mathf.exp(load<f32>(at(xr, i)) - l));
    store<f32>(at(dr, t), scale * (Mathf.exp(load<f32>(at(xr, t)) - l) - 1.0));
  }
}

// ------------------------------------------------------------------------------ RMSNorm

export function k_rmsnorm(tid: i32, nthreads: i32, x: usize, w: usize, y: usize, rstd: usize, rows: i32, cols: i32,
  eps: f32): void {
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(x, r * cols), yr = at(y, r * cols);
    const rs: f32 = 1.0 / Mathf.sqrt(rowDot(xr, xr, cols) / <f32>cols + eps);
    store<f32>(at(rstd, r), rs);
    const vr = f32x4.splat(rs);
    let i = 0;
    for (; i + 4 <= cols; i += 4) {
      v128.store(at(yr, i), f32x4.mul(f32x4.mul(v128.load(at(xr, i)), vr), v128.load(at(w, i))));
    }
    for (; i < cols; i++) store<f32>(at(yr, i), load<f32>(at(xr, i)) * rs * load<f32>(at(w, i)));
  }
}

/**
 * dx = rs*w*dy - x * rs^3 * mean(dy*w*x) for this thread's rows; the dw terms dy*x*rs of those rows
 * are added to the partial row dwPart + tid*cols (zeroed first when `zeroPart`). With one thread
 * the partial is dw itself; with several, k_add_partials folds them into dw afterwards.
 */
export function k_rmsnorm_backward(tid: i32, nthreads: i32, x: usize, w: usize, rstd: usize, dy: usize, dx: usize,
  dwPart: usize, rows: i32, cols: i32, zeroPart: i32): void {
  const dwp = at(dwPart, tid * cols);
  if (zeroPart) fillZero(dwp, cols);
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(x, r * cols), dyr = at(dy, r * cols), dxr = at(dx, r * cols);
    const rs = load<f32>(at(rstd, r));
    const vr = f32x4.splat(rs);
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= cols; i += 4) {
      const xv = v128.load(at(xr, i));
      const dv = v128.load(at(dyr, i));
      acc = madd(f32x4.mul(dv, v128.load(at(w, i))), xv, acc);
      v128.store(at(dwp, i), madd(f32x4.mul(dv, xv), vr, v128.load(at(dwp, i))));
    }
    let dot = hsum(acc);
    for (; i < cols; i++) {
      const xv = load<f32>(at(xr, i)), dv = load<f32>(at(dyr, i));
      dot += dv * load<f32>(at(w, i)) * xv;
      store<f32>(at(dwp, i), load<f32>(at(dwp, i)) + dv * xv * rs);
    }
    const k: f32 = rs * rs * rs * dot / <f32>cols;
    const vk = f32x4.splat(k);
    i = 0;
    for (; i + 4 <= cols; i += 4) {
      const g = f32x4.mul(vr, f32x4.mul(v128.load(at(dyr, i)), v128.load(at(w, i))));
      v128.store(at(dxr, i), f32x4.sub(g, f32x4.mul(vk, v128.load(at(xr, i)))));
    }
    for (; i < cols; i++) {
      store<f32>(at(dxr, i), rs * load<f32>(at(dyr, i)) * load<f32>(at(w, i)) - k * load<f32>(at(xr, i)));
    }
  }
}

/** dst[c] += sum_p partials[p*cols + c] for p < nparts; threads split the columns. */
export function k_add_partials(tid: i32, nthreads: i32, partials: usize, nparts: i32, dst: usize, cols: i32): void {
  const c0 = shareStart(cols, ALIGN, tid, nthreads);
  const c1 = shareEnd(cols, ALIGN, tid, nthreads);
  for (let p = 0; p < nparts; p++) {
    const src = at(partials, p * cols);
    let c = c0;
    for (; c + 4 <= c1; c += 4) v128.store(at(dst, c), f32x4.add(v128.load(at(dst, c)), v128.load(at(src, c))));
    for (; c < c1; c++) store<f32>(at(dst, c), load<f32>(at(dst, c)) + load<f32>(at(src, c)));
  }
}

// ------------------------------------------------------------------------------ row statistics

export function k_sum_rows(tid: i32, nthreads: i32, x: usize, y: usize, rows: i32, cols: i32): void {
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) store<f32>(at(y, r), rowSum(at(x, r * cols), cols));
}

/** sum of (x - mean)^2 over x[0, n). */
function rowSquaredDeviation(x: usize, n: i32, mean: f32): f32 {
  const vm = f32x4.splat(mean);
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const d = f32x4.sub(v128.load(at(x, i)), vm);
    acc = madd(d, d, acc);
  }
  let s = hsum(acc);
  for (; i < n; i++) {
    const d = load<f32>(at(x, i)) - mean;
    s += d * d;
  }
  return s;
}

export function k_std_rows(tid: i32, nthreads: i32, x: usize, y: usize, rows: i32, cols: i32, unbiased: i32): void {
  const div = <f32>(unbiased ? cols - 1 : cols);
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(x, r * cols);
    const mean = rowSum(xr, cols) / <f32>cols;
    store<f32>(at(y, r), Mathf.sqrt(rowSquaredDeviation(xr, cols, mean) / div));
  }
}

export function k_std_rows_backward(tid: i32, nthreads: i32, x: usize, std: usize, dy: usize, dx: usize, rows: i32,
  cols: i32, unbiased: i32): void {
  const div = <f32>(unbiased ? cols - 1 : cols);
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(x, r * cols), dxr = at(dx, r * cols);
    const mean = rowSum(xr, cols) / <f32>cols;
    const s = load<f32>(at(std, r));
    const g: f32 = s == 0 ? 0 : load<f32>(at(dy, r)) / (div * s);
    const vg = f32x4.splat(g), vm = f32x4.splat(mean);
    let i = 0;
    for (; i + 4 <= cols; i += 4) v128.store(at(dxr, i), f32x4.mul(vg, f32x4.sub(v128.load(at(xr, i)), vm)));
    for (; i < cols; i++) store<f32>(at(dxr, i), g * (load<f32>(at(xr, i)) - mean));
  }
}

// ------------------------------------------------------------------------------ top-k, transpose

/**
 * Per row, the k largest values in descending order, kept sorted in the output row by insertion.
 * Columns are visited in ascending order and a value only displaces strictly smaller ones, so ties
 * go to the lower column (as the reference's repeated strict-max scan).
 */
export function k_topk(tid: i32, nthreads: i32, x: usize, values: usize, indices: usize, rows: i32, cols: i32, k: i32): void {
  if (k <= 0) return;
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const xr = at(x, r * cols), vr = at(values, r * k), ir = at(indices, r * k);
    let count = 0;
    for (let c = 0; c < cols; c++) {
      const v = load<f32>(at(xr, c));
      if (count == k && !(v > load<f32>(at(vr, k - 1)))) continue;
      // slot = first position whose value is smaller than v
      let pos = count < k ? count : k - 1;
      while (pos > 0 && v > load<f32>(at(vr, pos - 1))) {
        store<f32>(at(vr, pos), load<f32>(at(vr, pos - 1)));
        store<i32>(at(ir, pos), load<i32>(at(ir, pos - 1)));
        pos--;
      }
      store<f32>(at(vr, pos), v);
      store<i32>(at(ir, pos), c);
      if (count < k) count++;
    }
  }
}

const TT: i32 = 32; // transpose tile

/**
 * y_b[j, i] = x_b[i, j]; threads split the (batch, tile row, tile column) tiles. Inside a tile,
 * 4 x 4 blocks are transposed in registers so both sides move 16 bytes at a time.
 */
export function k_transpose(tid: i32, nthreads: i32, x: usize, y: usize, batch: i32, rows: i32, cols: i32): void {
  const tr = (rows + TT - 1) / TT, tc = (cols + TT - 1) / TT;
  const tiles = batch * tr * tc;
  const xstep = <usize>cols << 2;
  const ystep = <usize>rows << 2;
  const t1 = shareEnd(tiles, 1, tid, nthreads);
  for (let t = shareStart(tiles, 1, tid, nthreads); t < t1; t++) {
    const b = t / (tr * tc);
    const rem = t - b * tr * tc;
    const i0 = (rem / tc) * TT, j0 = (rem % tc) * TT;
    const i1 = min(rows, i0 + TT), j1 = min(cols, j0 + TT);
    const xb = at(x, b * rows * cols), yb = at(y, b * rows * cols);
    const i4 = i0 + ((i1 - i0) & ~3), j4 = j0 + ((j1 - j0) & ~3);
    for (let j = j0; j < j4; j += 4) {
      for (let i = i0; i < i4; i += 4) {
        const px = at(xb, i * cols + j);
        const r0 = v128.load(px), r1 = v128.load(px + xstep), r2 = v128.load(px + 2 * xstep), r3 = v128.load(px + 3 * xstep);
        const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5), tt1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
        const t2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
        const py = at(yb, j * rows + i);
        v128.store(py, v128.shuffle<f32>(t0, tt1, 0, 1, 4, 5));
        v128.store(py + ystep, v128.shuffle<f32>(t0, tt1, 2, 3, 6, 7));
        v128.store(py + 2 * ystep, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5));
        v128.store(py + 3 * ystep, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7));
      }
      for (let i = i4; i < i1; i++) {
        for (let jj = j; jj < j + 4; jj++) store<f32>(at(yb, jj * rows + i), load<f32>(at(xb, i * cols + jj)));
      }
    }
    for (let i = i0; i < i1; i++) {
      for (let j = j4; j < j1; j++) store<f32>(at(yb, j * rows + i), load<f32>(at(xb, i * cols + j)));
    }
  }
}

// ------------------------------------------------------------------------------ indexing

export function k_gather_rows(tid: i32, nthreads: i32, table: usize, ids: usize, out: usize, n: i32, cols: i32): void {
  const bytes = <usize>cols << 2;
  const r1 = shareEnd(n, 1, tid, nthreads);
  for (let r = shareStart(n, 1, tid, nthreads); r < r1; r++) {
    memory.copy(at(out, r * cols), at(table, load<i32>(at(ids, r)) * cols), bytes);
  }
}

/** dst[ids[i]] = src[i]; the ids are distinct, so threads split the rows. */
export function k_scatter_rows(tid: i32, nthreads: i32, src: usize, ids: usize, dst: usize, n: i32, cols: i32): void {
  const bytes = <usize>cols << 2;
  const r1 = shareEnd(n, 1, tid, nthreads);
  for (let r = shareStart(n, 1, tid, nthreads); r < r1; r++) {
    memory.copy(at(dst, load<i32>(at(ids, r)) * cols), at(src, r * cols), bytes);
  }
}

/** table[ids[i]] += src[i]; threads split the columns, so repeated ids never race. */
export function k_scatter_add_rows(tid: i32, nthreads: i32, src: usize, ids: usize, table: usize, n: i32, cols: i32): void {
  const c0 = shareStart(cols, ALIGN, tid, nthreads);
  const c1 = shareEnd(cols, ALIGN, tid, nthreads);
  if (c0 >= c1) return;
  for (let r = 0; r < n; r++) {
    const s = at(src, r * cols), d = at(table, load<i32>(at(ids, r)) * cols);
    let c = c0;
    for (; c + 4 <= c1; c += 4) v128.store(at(d, c), f32x4.add(v128.load(at(d, c)), v128.load(at(s, c))));
    for (; c < c1; c++) store<f32>(at(d, c), load<f32>(at(d, c)) + load<f32>(at(s, c)));
  }
}

/** Rotate-half RoPE over rows (token, head); threads split the rows. x may alias y. */
export function k_rope(tid: i32, nthreads: i32, x: usize, y: usize, cos: usize, sin: usize, positions: usize, ntok: i32,
  heads: i32, dim: i32, inverse: i32): void {
  const half = dim >> 1;
  const sign: f32 = inverse ? -1 : 1;
  const vsign = f32x4.splat(sign);
  const rows = ntok * heads;
  const r1 = shareEnd(rows, 1, tid, nthreads);
  for (let r = shareStart(rows, 1, tid, nthreads); r < r1; r++) {
    const t = r / heads;
    const p = load<i32>(at(positions, t));
    const cr = at(cos, p * half), sr = at(sin, p * half);
    const xr = at(x, r * dim), yr = at(y, r * dim);
    let i = 0;
    for (; i + 4 <= half; i += 4) {
      const c = v128.load(at(cr, i));
      const s = f32x4.mul(vsign, v128.load(at(sr, i)));
      const x1 = v128.load(at(xr, i)), x2 = v128.load(at(xr, i + half));
      v128.store(at(yr, i), f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s)));
      v128.store(at(yr, i + half), f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s)));
    }
    for (; i < half; i++) {
      const c = load<f32>(at(cr, i)), s = sign * load<f32>(at(sr, i));
      const x1 = load<f32>(at(xr, i)), x2 = load<f32>(at(xr, i + half));
      store<f32>(at(yr, i), x1 * c - x2 * s);
      store<f32>(at(yr, i + half), x2 * c + x1 * s);
    }
  }
}
