/**
 * The addon's exports and the Kernels object over them: argument plumbing only (arrays of the
 * 4-D shape helpers are flattened into numbers; the addon reads JS numbers directly).
 * Semantics of every kernel: ../backend.ts.
 */
import type { GroupedMode, Kernels, WeightRef } from '../backend.js';

/** The opaque context the addon returns from create(). */
export type AddonHandle = { readonly __skymoeNative: unique symbol };

type Arg = number | boolean;

/** What build/Release/skymoe_native.node exports (see csrc/addon.c). */
export interface NativeAddon {
  create(threads: number, isa: string, reserveBytes: number): AddonHandle;
  view(h: AddonHandle, bytes: number): ArrayBuffer;
  dispose(h: AddonHandle): void;
  info(h: AddonHandle): { isa: string; threads: number; reservedBytes: number; amx: boolean };
  /** bf16 = 1: row-invariant products with bf16 / fp8 weights in bf16 on AMX; false when unavailable. */
  setCompute(h: AddonHandle, bf16: number): boolean;
  detect(): string;
  fmaProbe(h: AddonHandle, iters: number): number;
  groupedMatmul(h: AddonHandle, mode: GroupedMode, a: number, b: number, c: number, offsets: Int32Array, m: number, k: number, beta: number): void;
  sumSquares(h: AddonHandle, x: number, n: number): number;
  mapFile(h: AddonHandle, path: string): { offset: number; bytes: number };
  pagedAttention(h: AddonHandle, q: number, kCache: number, vCache: number, o: number, n: number, H: number, Hkv: number, D: number,
    scale: number, blockSize: number, rowSeq: Int32Array, rowLen: Int32Array, blockTables: Int32Array, maxBlocks: number): void;
  unmapFile(h: AddonHandle, offset: number): void;
  [kernel: string]: unknown;
}

/** rowScale travels as a number; NaN means none (pointers may be any integer, so no sentinel value). */
const rs = (w: WeightRef) => w.rowScale ?? NaN;

export function makeNativeKernels(addon: NativeAddon, h: AddonHandle): Kernels {
  const fn = (name: string) => {
    const f = addon[name];
    if (typeof f !== 'function') throw new Error(`native addon lacks kernel '${name}' (rebuild it)`);
    return f as (h: AddonHandle, ...args: Arg[]) => void;
  };
  const matmul = fn('matmul'), fill = fn('fill'), copy2d = fn('copy2d'), binary = fn('binary'), unary = fn('unary');
  const unaryBackward = fn('unaryBackward'), axpby = fn('axpby'), reduceTo = fn('reduceTo'), swiglu = fn('swiglu');
  const swigluBackward = fn('swigluBackward'), softmax = fn('softmax'), softmaxBackward = fn('softmaxBackward');
  const crossEntropy = fn('crossEntropy'), crossEntropyBackward = fn('crossEntropyBackward'), rmsnorm = fn('rmsnorm');
  const rmsnormBackward = fn('rmsnormBackward'), sumRows = fn('sumRows'), stdRows = fn('stdRows');
  const stdRowsBackward = fn('stdRowsBackward'), topk = fn('topk'), transpose = fn('transpose');
  const gatherRows = fn('gatherRows'), scatterAddRows = fn('scatterAddRows'), scatterRows = fn('scatterRows'), rope = fn('rope');
  const attention = fn('attention'), attentionBackward = fn('attentionBackward'), adamw = fn('adamw');
  const linearW = fn('linearW'), gatherRowsW = fn('gatherRowsW'), dequantize = fn('dequantize');
  const groupedLinearW = addon.groupedLinearW as (h: AddonHandle, x: number, table: Float64Array, y: number, offsets: Int32Array, n: number, k: number, rowInvariant: boolean) => void;
  return {
    linearW: (x, w, y, m, k, n, rowInvariant = false) => linearW(h, x, w.ptr, w.dtype, w.scale, rs(w), y, m, k, n, rowInvariant),
    groupedLinearW: (x, ws, y, offsets, n, k, rowInvariant = false) => groupedLinearW(h, x, ws.packed, y, offsets, n, k, rowInvariant),
    gatherRowsW: (w, rows, ids, out, count, cols) => gatherRowsW(h, w.ptr, w.dtype, w.scale, rs(w), rows, ids, out, count, cols),
    dequantize: (w, out, rows, cols) => dequantize(h, w.ptr, w.dtype, w.scale, rs(w), out, rows, cols),
    matmul: (a, b, c, m, k, n, transA, transB, batch, sA, sB, sC, beta) =>
      matmul(h, a, b, c, m, k, n, transA, transB, batch, sA, sB, sC, beta),
    groupedMatmul: (mode, a, b, c, offsets, m, k, beta) => addon.groupedMatmul(h, mode, a, b, c, offsets, m, k, beta),
    fill: (out, n, value, int) => fill(h, out, n, int ? value | 0 : value, int),
    copy2d: (src, dst, rows, cols, ss, ds) => copy2d(h, src, dst, rows, cols, ss, ds),
    binary: (op, a, b, out, s, sa, sb) =>
      binary(h, op, a, b, out, s[0]!, s[1]!, s[2]!, s[3]!, sa[0]!, sa[1]!, sa[2]!, sa[3]!, sb[0]!, sb[1]!, sb[2]!, sb[3]!),
    unary: (op, x, y, n) => unary(h, op, x, y, n),
    unaryBackward: (op, x, y, dy, dx, n) => unaryBackward(h, op, x, y, dy, dx, n),
    axpby: (x, y, n, alpha, beta) => axpby(h, x, y, n, alpha, beta),
    reduceTo: (g, out, s, o) => reduceTo(h, g, out, s[0]!, s[1]!, s[2]!, s[3]!, o[0]!, o[1]!, o[2]!, o[3]!),
    swiglu: (g, u, y, n) => swiglu(h, g, u, y, n),
    swigluBackward: (g, u, dy, dg, du, n) => swigluBackward(h, g, u, dy, dg, du, n),
    softmax: (x, y, rows, cols) => softmax(h, x, y, rows, cols),
    softmaxBackward: (y, dy, dx, rows, cols) => softmaxBackward(h, y, dy, dx, rows, cols),
    crossEntropy: (x, t, loss, lse, rows, cols, ignore) => crossEntropy(h, x, t, loss, lse, rows, cols, ignore),
    crossEntropyBackward: (x, t, lse, dx, rows, cols, ignore, scale) =>
      crossEntropyBackward(h, x, t, lse, dx, rows, cols, ignore, scale),
    rmsnorm: (x, w, y, rstd, rows, cols, eps) => rmsnorm(h, x, w, y, rstd, rows, cols, eps),
    rmsnormBackward: (x, w, rstd, dy, dx, dw, rows, cols) => rmsnormBackward(h, x, w, rstd, dy, dx, dw, rows, cols),
    sumRows: (x, y, rows, cols) => sumRows(h, x, y, rows, cols),
    stdRows: (x, y, rows, cols, unbiased) => stdRows(h, x, y, rows, cols, unbiased),
    stdRowsBackward: (x, std, dy, dx, rows, cols, unbiased) => stdRowsBackward(h, x, std, dy, dx, rows, cols, unbiased),
    topk: (x, values, indices, rows, cols, k) => topk(h, x, values, indices, rows, cols, k),
    transpose: (x, y, batch, rows, cols) => transpose(h, x, y, batch, rows, cols),
    gatherRows: (table, ids, out, n, cols) => gatherRows(h, table, ids, out, n, cols),
    scatterAddRows: (src, ids, table, n, cols) => scatterAddRows(h, src, ids, table, n, cols),
    scatterRows: (src, ids, dst, n, cols) => scatterRows(h, src, ids, dst, n, cols),
    rope: (x, y, cos, sin, pos, ntok, heads, dim, inverse) => rope(h, x, y, cos, sin, pos, ntok, heads, dim, inverse),
    attention: (q, k, v, o, lse, B, Tq, Tk, H, Hkv, D, kvbs, qoff, scale) =>
      attention(h, q, k, v, o, lse, B, Tq, Tk, H, Hkv, D, kvbs, qoff, scale),
    attentionBackward: (q, k, v, o, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, kvbs, qoff, scale) =>
      attentionBackward(h, q, k, v, o, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, kvbs, qoff, scale),
    pagedAttention: (q, k, v, o, n, H, Hkv, D, scale, blockSize, rowSeq, rowLen, blockTables, maxBlocks) =>
      addon.pagedAttention(h, q, k, v, o, n, H, Hkv, D, scale, blockSize, rowSeq, rowLen, blockTables, maxBlocks),
    sumSquares: (x, n) => addon.sumSquares(h, x, n),
    adamw: (p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2) => adamw(h, p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2),
  };
}
