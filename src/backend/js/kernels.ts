/**
 * The js reference kernels: plain TypeScript loops over the heap, written to be obviously correct
 * (the oracle every other backend is tested against), not fast. Semantics: see ../backend.ts.
 */
import { BinaryOp, GroupedMode, type Kernels, type Ptr, UnaryOp } from '../backend.js';
import type { Heap } from '../heap.js';
import { makeJsWeightKernels } from './weight-kernels.js';

const w = (p: Ptr) => p / 4; // byte offset -> 32-bit word index (pointers are 4-byte aligned; no 32-bit shift: heaps may pass 4 GiB)

export function makeJsKernels(heap: Heap): Kernels {
  const F = () => heap.f32;
  const I = () => heap.i32;

  function gemm(a: Ptr, b: Ptr, c: Ptr, m: number, k: number, n: number, transA: boolean, transB: boolean, beta: 0 | 1) {
    const f = F();
    const A = w(a), B = w(b), C = w(c);
    const row = new Float64Array(n);
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const av = transA ? f[A + p * m + i]! : f[A + i * k + p]!;
        if (av === 0) continue;
        if (transB) for (let j = 0; j < n; j++) row[j]! += av * f[B + j * k + p]!;
        else {
          const bo = B + p * n;
          for (let j = 0; j < n; j++) row[j]! += av * f[bo + j]!;
        }
      }
      const co = C + i * n;
      for (let j = 0; j < n; j++) f[co + j] = beta ? f[co + j]! + row[j]! : row[j]!;
    }
  }

  return {
    ...makeJsWeightKernels(heap),

    matmul(a, b, c, m, k, n, transA, transB, batch, strideA, strideB, strideC, beta) {
      for (let i = 0; i < batch; i++) gemm(a + 4 * i * strideA, b + 4 * i * strideB, c + 4 * i * strideC, m, k, n, transA, transB, beta);
    },

    groupedMatmul(mode, a, b, c, offsets, m, k, beta) {
      const G = offsets.length - 1;
      for (let g = 0; g < G; g++) {
        const r0 = offsets[g]!, rows = offsets[g + 1]! - r0;
        if (mode === GroupedMode.XWt) {
          // a [N,K] rows r0.., w[g] [M,K] -> c [N,M]
          if (rows > 0) gemm(a + 4 * r0 * k, b + 4 * g * m * k, c + 4 * r0 * m, rows, k, m, false, true, 0);
        } else if (mode === GroupedMode.XW) {
          // a [N,M], w[g] [M,K] -> c [N,K]
          if (rows > 0) gemm(a + 4 * r0 * m, b + 4 * g * m * k, c + 4 * r0 * k, rows, m, k, false, false, 0);
        } else {
          // c[g] [M,K] = a[rows]^T [M,rows] @ b[rows] [rows,K]
          const cg = c + 4 * g * m * k;
          if (rows > 0) gemm(a + 4 * r0 * m, b + 4 * r0 * k, cg, m, rows, k, true, false, beta);
          else if (beta === 0) F().fill(0, w(cg), w(cg) + m * k);
        }
      }
    },

    fill(out, n, value, int) {
      if (int) I().fill(value | 0, w(out), w(out) + n);
      else F().fill(value, w(out), w(out) + n);
    },

    copy2d(src, dst, rows, cols, srcStride, dstStride) {
      const i32 = I();
      if (src === dst && srcStride === dstStride) return;
      // Row order chosen so overlapping forward/backward moves stay correct.
      if (dst > src) for (let r = rows - 1; r >= 0; r--) i32.copyWithin(w(dst) + r * dstStride, w(src) + r * srcStride, w(src) + r * srcStride + cols);
      else for (let r = 0; r < rows; r++) i32.copyWithin(w(dst) + r * dstStride, w(src) + r * srcStride, w(src) + r * srcStride + cols);
    },

    binary(op, a, b, out, shape, sa, sb) {
      const f = F();
      const [d0, d1, d2, d3] = shape as [number, number, number, number];
      const A = w(a), B = w(b);
      let o = w(out);
      for (let i0 = 0; i0 < d0; i0++)
        for (let i1 = 0; i1 < d1; i1++)
          for (let i2 = 0; i2 < d2; i2++) {
            const ab = A + i0 * sa[0]! + i1 * sa[1]! + i2 * sa[2]!;
            const bb = B + i0 * sb[0]! + i1 * sb[1]! + i2 * sb[2]!;
            const s3a = sa[3]!, s3b = sb[3]!;
            for (let i3 = 0; i3 < d3; i3++) {
              const x = f[ab + i3 * s3a]!, y = f[bb + i3 * s3b]!;
              f[o++] = op === BinaryOp.Add ? x + y : op === BinaryOp.Sub ? x - y : op === BinaryOp.Mul ? x * y : x / y;
            }
          }
    },

    unary(op, x, y, n) {
      const f = F();
      const X = w(x), Y = w(y);
      for (let i = 0; i < n; i++) f[Y + i] = unaryF(op, f[X + i]!);
    },

    unaryBackward(op, x, y, dy, dx, n) {
      const f = F();
      const X = w(x), Yp = w(y), DY = w(dy), DX = w(dx);
      for (let i = 0; i < n; i++) f[DX + i] = f[DY + i]! * unaryD(op, f[X + i]!, f[Yp + i]!);
    },

    axpby(x, y, n, alpha, beta) {
      const f = F();
      const X = w(x), Y = w(y);
      if (beta === 0) for (let i = 0; i < n; i++) f[Y + i] = alpha * f[X + i]!;
      else for (let i = 0; i < n; i++) f[Y + i] = alpha * f[X + i]! + beta * f[Y + i]!;
    },

    reduceTo(g, out, shape, outShape) {
      const f = F();
      const os = outShape.map((d, i) => (d === 1 && shape[i] !== 1 ? 0 : 1));
      const st = [outShape[1]! * outShape[2]! * outShape[3]!, outShape[2]! * outShape[3]!, outShape[3]!, 1];
      const o = w(out);
      const total = outShape[0]! * outShape[1]! * outShape[2]! * outShape[3]!;
      const acc = new Float64Array(total);
      let gi = w(g);
      for (let i0 = 0; i0 < shape[0]!; i0++)
        for (let i1 = 0; i1 < shape[1]!; i1++)
          for (let i2 = 0; i2 < shape[2]!; i2++)
            for (let i3 = 0; i3 < shape[3]!; i3++)
              acc[i0 * os[0]! * st[0]! + i1 * os[1]! * st[1]! + i2 * os[2]! * st[2]! + i3 * os[3]!]! += f[gi++]!;
      for (let i = 0; i < total; i++) f[o + i] = acc[i]!;
    },

    swiglu(g, u, y, n) {
      const f = F();
      const G = w(g), U = w(u), Y = w(y);
      for (let i = 0; i < n; i++) {
        const x = f[G + i]!;
        f[Y + i] = (x / (1 + Math.exp(-x))) * f[U + i]!;
      }
    },

    swigluBackward(g, u, dy, dg, du, n) {
      const f = F();
      const G = w(g), U = w(u), DY = w(dy), DG = w(dg), DU = w(du);
      for (let i = 0; i < n; i++) {
        const x = f[G + i]!, uv = f[U + i]!, d = f[DY + i]!;
        const s = 1 / (1 + Math.exp(-x));
        f[DU + i] = d * x * s;
        f[DG + i] = d * uv * s * (1 + x * (1 - s));
      }
    },

    softmax(x, y, rows, cols) {
      const f = F();
      for (let r = 0; r < rows; r++) {
        const X = w(x) + r * cols, Y = w(y) + r * cols;
        let mx = -Infinity;
        for (let c = 0; c < cols; c++) mx = Math.max(mx, f[X + c]!);
        let s = 0;
        for (let c = 0; c < cols; c++) s += Math.exp(f[X + c]! - mx);
        for (let c = 0; c < cols; c++) f[Y + c] = Math.exp(f[X + c]! - mx) / s;
      }
    },

    softmaxBackward(y, dy, dx, rows, cols) {
      const f = F();
      for (let r = 0; r < rows; r++) {
        const Y = w(y) + r * cols, DY = w(dy) + r * cols, DX = w(dx) + r * cols;
        let dot = 0;
        for (let c = 0; c < cols; c++) dot += f[Y + c]! * f[DY + c]!;
        for (let c = 0; c < cols; c++) f[DX + c] = f[Y + c]! * (f[DY + c]! - dot);
      }
    },

    crossEntropy(logits, targets, loss, lse, rows, cols, ignoreIndex) {
      const f = F(), i32 = I();
      for (let r = 0; r < rows; r++) {
        const X = w(logits) + r * cols;
        let mx = -Infinity;
        for (let c = 0; c < cols; c++) mx = Math.max(mx, f[X + c]!);
        let s = 0;
        for (let c = 0; c < cols; c++) s += Math.exp(f[X + c]! - mx);
        const l = mx + Math.log(s);
        f[w(lse) + r] = l;
        const t = i32[w(targets) + r]!;
        f[w(loss) + r] = t === ignoreIndex ? 0 : l - f[X + t]!;
      }
    },

    crossEntropyBackward(logits, targets, lse, dlogits, rows, cols, ignoreIndex, scale) {
      const f = F(), i32 = I();
      for (let r = 0; r < rows; r++) {
        const X = w(logits) + r * cols, D = w(dlogits) + r * cols;
        const t = i32[w(targets) + r]!;
        if (t === ignoreIndex) {
          f.fill(0, D, D + cols);
          continue;
        }
        const l = f[w(lse) + r]!;
        for (let c = 0; c < cols; c++) f[D + c] = scale * (Math.exp(f[X + c]! - l) - (c === t ? 1 : 0));
      }
    },

    rmsnorm(x, wt, y, rstd, rows, cols, eps) {
      const f = F();
      for (let r = 0; r < rows; r++) {
        const X = w(x) + r * cols, Y = w(y) + r * cols;
        let ss = 0;
        for (let c = 0; c < cols; c++) ss += f[X + c]! * f[X + c]!;
        const rs = 1 / Math.sqrt(ss / cols + eps);
        f[w(rstd) + r] = rs;
        for (let c = 0; c < cols; c++) f[Y + c] = f[X + c]! * rs * f[w(wt) + c]!;
      }
    },

    rmsnormBackward(x, wt, rstd, dy, dx, dw, rows, cols) {
      const f = F();
      const W = w(wt), DW = w(dw);
      const dwAcc = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        const X = w(x) + r * cols, DY = w(dy) + r * cols, DX = w(dx) + r * cols;
        const rs = f[w(rstd) + r]!;
        // y = x * rs * w;  dx = rs * (dy*w) - x * rs^3 * mean(dy*w*x)
        let dot = 0;
        for (let c = 0; c < cols; c++) {
          dot += f[DY + c]! * f[W + c]! * f[X + c]!;
          dwAcc[c]! += f[DY + c]! * f[X + c]! * rs;
        }
        const k = (rs * rs * rs * dot) / cols;
        for (let c = 0; c < cols; c++) f[DX + c] = rs * f[DY + c]! * f[W + c]! - k * f[X + c]!;
      }
      for (let c = 0; c < cols; c++) f[DW + c] = f[DW + c]! + dwAcc[c]!;
    },

    sumRows(x, y, rows, cols) {
      const f = F();
      for (let r = 0; r < rows; r++) {
        let s = 0;
        const X = w(x) + r * cols;
        for (let c = 0; c < cols; c++) s += f[X + c]!;
        f[w(y) + r] = s;
      }
    },

    stdRows(x, y, rows, cols, unbiased) {
      const f = F();
      for (let r = 0; r < rows; r++) {
        const X = w(x) + r * cols;
        let mean = 0;
        for (let c = 0; c < cols; c++) mean += f[X + c]!;
        mean /= cols;
        let ss = 0;
        for (let c = 0; c < cols; c++) ss += (f[X + c]! - mean) ** 2;
        f[w(y) + r] = Math.sqrt(ss / (unbiased ? cols - 1 : cols));
      }
    },

    stdRowsBackward(x, std, dy, dx, rows, cols, unbiased) {
      const f = F();
      const div = unbiased ? cols - 1 : cols;
      for (let r = 0; r < rows; r++) {
        const X = w(x) + r * cols, DX = w(dx) + r * cols;
        let mean = 0;
        for (let c = 0; c < cols; c++) mean += f[X + c]!;
        mean /= cols;
        const s = f[w(std) + r]!;
        const g = s === 0 ? 0 : f[w(dy) + r]! / (div * s);
        for (let c = 0; c < cols; c++) f[DX + c] = g * (f[X + c]! - mean);
      }
    },

    topk(x, values, indices, rows, cols, k) {
      const f = F(), i32 = I();
      const taken = new Uint8Array(cols);
      for (let r = 0; r < rows; r++) {
        const X = w(x) + r * cols;
        taken.fill(0);
        for (let j = 0; j < k; j++) {
          let best = -1;
          for (let c = 0; c < cols; c++) if (!taken[c] && (best < 0 || f[X + c]! > f[X + best]!)) best = c;
          taken[best] = 1;
          f[w(values) + r * k + j] = f[X + best]!;
          i32[w(indices) + r * k + j] = best;
        }
      }
    },

    transpose(x, y, batch, rows, cols) {
      const f = F();
      for (let b = 0; b < batch; b++) {
        const X = w(x) + b * rows * cols, Y = w(y) + b * rows * cols;
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) f[Y + j * rows + i] = f[X + i * cols + j]!;
      }
    },

    gatherRows(table, ids, out, n, cols) {
      const f = F(), i32 = I();
      for (let i = 0; i < n; i++) {
        const src = w(table) + i32[w(ids) + i]! * cols;
        f.copyWithin(w(out) + i * cols, src, src + cols);
      }
    },

    scatterAddRows(src, ids, table, n, cols) {
      const f = F(), i32 = I();
      for (let i = 0; i < n; i++) {
        const d = w(table) + i32[w(ids) + i]! * cols, s = w(src) + i * cols;
        for (let c = 0; c < cols; c++) f[d + c] = f[d + c]! + f[s + c]!;
      }
    },

    scatterRows(src, ids, dst, n, cols) {
      const f = F(), i32 = I();
      for (let i = 0; i < n; i++) {
        const s = w(src) + i * cols;
        f.copyWithin(w(dst) + i32[w(ids) + i]! * cols, s, s + cols);
      }
    },

    rope(x, y, cos, sin, positions, ntok, heads, dim, inverse) {
      const f = F(), i32 = I();
      const half = dim >> 1;
      const sign = inverse ? -1 : 1;
      for (let t = 0; t < ntok; t++) {
        const p = i32[w(positions) + t]!;
        const C = w(cos) + p * half, S = w(sin) + p * half;
        for (let h = 0; h < heads; h++) {
          const X = w(x) + (t * heads + h) * dim, Y = w(y) + (t * heads + h) * dim;
          for (let i = 0; i < half; i++) {
            const c = f[C + i]!, s = sign * f[S + i]!;
            const x1 = f[X + i]!, x2 = f[X + i + half]!;
            f[Y + i] = x1 * c - x2 * s;
            f[Y + i + half] = x2 * c + x1 * s;
          }
        }
      }
    },

    attention(q, k, v, o, lse, B, Tq, Tk, H, Hkv, D, kvBatchStride, qOffset, scale) {
      // One query row at a time: memory O(Tk), never Tq x Tk.
      const f = F();
      const grp = H / Hkv;
      const s = new Float64Array(Tk);
      const acc = new Float64Array(D);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) {
          const hk = Math.floor(h / grp);
          for (let i = 0; i < Tq; i++) {
            const Q = w(q) + ((b * Tq + i) * H + h) * D;
            const last = Math.min(Tk - 1, i + qOffset);
            let mx = -Infinity;
            for (let j = 0; j <= last; j++) {
              const K = w(k) + b * kvBatchStride + (j * Hkv + hk) * D;
              let d = 0;
              for (let c = 0; c < D; c++) d += f[Q + c]! * f[K + c]!;
              s[j] = d * scale;
              if (s[j]! > mx) mx = s[j]!;
            }
            let sum = 0;
            acc.fill(0);
            for (let j = 0; j <= last; j++) {
              const p = Math.exp(s[j]! - mx);
              sum += p;
              const V = w(v) + b * kvBatchStride + (j * Hkv + hk) * D;
              for (let c = 0; c < D; c++) acc[c]! += p * f[V + c]!;
            }
            const O = w(o) + ((b * Tq + i) * H + h) * D;
            if (last < 0) {
              f.fill(0, O, O + D);
              f[w(lse) + (b * H + h) * Tq + i] = -Infinity;
              continue;
            }
            for (let c = 0; c < D; c++) f[O + c] = acc[c]! / sum;
            f[w(lse) + (b * H + h) * Tq + i] = mx + Math.log(sum);
          }
        }
    },

    pagedAttention(q, kCache, vCache, o, n, H, Hkv, D, scale, blockSize, rowSeq, rowLen, blockTables, maxBlocks) {
      // Row by row, head by head, in float64: scores, max, exp-sum, weighted values.
      const f = F();
      const grp = H / Hkv;
      for (let i = 0; i < n; i++) {
        const L = rowLen[i]!, table = rowSeq[i]! * maxBlocks;
        const slots = Array.from({ length: L }, (_, p) => blockTables[table + Math.floor(p / blockSize)]! * blockSize + (p % blockSize));
        for (let h = 0; h < H; h++) {
          const Q = w(q) + (i * H + h) * D, hk = Math.floor(h / grp);
          const s = slots.map((slot) => {
            const K = w(kCache) + (slot * Hkv + hk) * D;
            let d = 0;
            for (let c = 0; c < D; c++) d += f[Q + c]! * f[K + c]!;
            return d * scale;
          });
          const mx = s.reduce((a, b) => Math.max(a, b), -Infinity);
          let sum = 0;
          const acc = new Float64Array(D);
          slots.forEach((slot, p) => {
            const e = Math.exp(s[p]! - mx);
            sum += e;
            const V = w(vCache) + (slot * Hkv + hk) * D;
            for (let c = 0; c < D; c++) acc[c]! += e * f[V + c]!;
          });
          const O = w(o) + (i * H + h) * D;
          for (let c = 0; c < D; c++) f[O + c] = acc[c]! / sum;
        }
      }
    },

    attentionBackward(q, k, v, o, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, kvBatchStride, qOffset, scale) {
      const f = F();
      const grp = H / Hkv;
      // dk, dv are [B, Tk, Hkv, D] compact (batch stride Tk*Hkv*D); zero then accumulate.
      f.fill(0, w(dk), w(dk) + B * Tk * Hkv * D);
      f.fill(0, w(dv), w(dv) + B * Tk * Hkv * D);
      const dqr = new Float64Array(D);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) {
          const hk = Math.floor(h / grp);
          for (let i = 0; i < Tq; i++) {
            const row = ((b * Tq + i) * H + h) * D;
            const Q = w(q) + row, O = w(o) + row, DO = w(dout) + row;
            const l = f[w(lse) + (b * H + h) * Tq + i]!;
            let Di = 0;
            for (let c = 0; c < D; c++) Di += f[DO + c]! * f[O + c]!;
            dqr.fill(0);
            const last = Math.min(Tk - 1, i + qOffset);
            for (let j = 0; j <= last; j++) {
              const K = w(k) + b * kvBatchStride + (j * Hkv + hk) * D;
              const V = w(v) + b * kvBatchStride + (j * Hkv + hk) * D;
              let sc = 0, dp = 0;
              for (let c = 0; c < D; c++) {
                sc += f[Q + c]! * f[K + c]!;
                dp += f[DO + c]! * f[V + c]!;
              }
              const p = Math.exp(sc * scale - l);
              const ds = p * (dp - Di) * scale;
              const DK = w(dk) + ((b * Tk + j) * Hkv + hk) * D, DV = w(dv) + ((b * Tk + j) * Hkv + hk) * D;
              for (let c = 0; c < D; c++) {
                f[DV + c] = f[DV + c]! + p * f[DO + c]!;
                f[DK + c] = f[DK + c]! + ds * f[Q + c]!;
                dqr[c]! += ds * f[K + c]!;
              }
            }
            const DQ = w(dq) + row;
            for (let c = 0; c < D; c++) f[DQ + c] = dqr[c]!;
          }
        }
    },

    sumSquares(x, n) {
      const f = F();
      const X = w(x);
      let s = 0;
      for (let i = 0; i < n; i++) s += f[X + i]! * f[X + i]!;
      return s;
    },

    adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2) {
      const f = F();
      const P = w(p), G = w(g), M = w(m), V = w(v);
      for (let i = 0; i < n; i++) {
        const gi = f[G + i]!;
        const mi = b1 * f[M + i]! + (1 - b1) * gi;
        const vi = b2 * f[V + i]! + (1 - b2) * gi * gi;
        f[M + i] = mi;
        f[V + i] = vi;
        const pi = f[P + i]!;
        f[P + i] = pi - lr * (mi / bc1 / (Math.sqrt(vi / bc2) + eps) + wd * pi);
      }
    },
  };
}

function unaryF(op: UnaryOp, x: number): number {
  switch (op) {
    case UnaryOp.Exp: return Math.exp(x);
    case UnaryOp.Log: return Math.log(x);
    case UnaryOp.Tanh: return Math.tanh(x);
    case UnaryOp.Sqrt: return Math.sqrt(x);
    case UnaryOp.Square: return x * x;
    case UnaryOp.Silu: return x / (1 + Math.exp(-x));
    case UnaryOp.Sigmoid: return 1 / (1 + Math.exp(-x));
    case UnaryOp.Neg: return -x;
    case UnaryOp.Rsqrt: return 1 / Math.sqrt(x);
    case UnaryOp.Relu: return x > 0 ? x : 0;
  }
}

/** d f(x) / dx, given x and y = f(x). */
function unaryD(op: UnaryOp, x: number, y: number): number {
  switch (op) {
    case UnaryOp.Exp: return y;
    case UnaryOp.Log: return 1 / x;
    case UnaryOp.Tanh: return 1 - y * y;
    case UnaryOp.Sqrt: return 0.5 / y;
    case UnaryOp.Square: return 2 * x;
    case UnaryOp.Silu: {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 + x * (1 - s));
    }
    case UnaryOp.Sigmoid: return y * (1 - y);
    case UnaryOp.Neg: return -1;
    case UnaryOp.Rsqrt: return -0.5 * y * y * y;
    case UnaryOp.Relu: return x > 0 ? 1 : 0;
  }
}
