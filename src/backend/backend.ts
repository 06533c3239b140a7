/**
 * The Backend interface: memory (alloc, free, read, write) and kernels by name.
 *
 * Every pointer (`Ptr`) is a byte offset into the backend's one heap (see heap.ts); every size is
 * a count of elements; float tensors are fp32 and index tensors int32, row-major and contiguous
 * unless a stride says otherwise. Kernels overwrite their outputs unless the doc says "accumulate"
 * (then the output must already hold a value, e.g. zeros, and the kernel adds to it).
 *
 * Kernels never allocate, never free and never read outside the ranges their arguments describe.
 * The js backend is the reference: every other backend is tested kernel by kernel against it.
 */
import type { Heap } from './heap.js';

/** A byte offset into the backend's heap. */
export type Ptr = number;

export type BackendName = 'js' | 'wasm' | 'native';

/** Elementwise binary operations. */
export const enum BinaryOp {
  Add = 0,
  Sub = 1,
  Mul = 2,
  Div = 3,
}

/** Elementwise unary operations; `unaryBackward` knows the derivative of each. */
export const enum UnaryOp {
  Exp = 0,
  Log = 1,
  Tanh = 2,
  Sqrt = 3,
  Square = 4,
  Silu = 5,
  Sigmoid = 6,
  Neg = 7,
  Rsqrt = 8,
  Relu = 9,
}

/** The three ways the grouped matmul multiplies row groups by stacked per-group weights. */
export const enum GroupedMode {
  /** c[rows_g] = a[rows_g] @ w[g]^T; a [N, K], w [G, Nout, K], c [N, Nout] (expert forward). */
  XWt = 0,
  /** c[rows_g] = a[rows_g] @ w[g]; a [N, Nout], w [G, Nout, K], c [N, K] (input gradient). */
  XW = 1,
  /** c[g] (+)= a[rows_g]^T @ b[rows_g]; a [N, M], b [N, K], c [G, M, K] (weight gradient). */
  AtB = 2,
}

/**
 * Storage dtypes of weights. Activations, gradients and optimizer state are always f32; weights may
 * be stored narrower and are decoded by the kernels that read them (linearW, groupedLinearW,
 * gatherRowsW, dequantize), in registers or while packing.
 * F8E4M3 is float8_e4m3fn (bias 7, max 448, no infinities); its NaN codes 0x7F/0xFF are not valid
 * weights (skymoe never writes them; kernels other than the js reference may decode them as 480).
 */
export const enum WeightDType {
  F32 = 0,
  BF16 = 1,
  F16 = 2,
  F8E4M3 = 3,
}

/** Bytes per element of each WeightDType. */
export const WEIGHT_DTYPE_BYTES: readonly number[] = [4, 2, 2, 1];

/**
 * A read-only weight matrix [rows, cols], row-major, as kernels see it: the real value of element
 * (r, c) is decode(stored) * scale * (rowScale ? rowScale[r] : 1). `ptr` may point into the heap or
 * into a file mapped by `Backend.mapFile` (native only); rowScale is f32 [rows] in either.
 */
export interface WeightRef {
  readonly ptr: Ptr;
  readonly dtype: WeightDType;
  readonly scale: number;
  readonly rowScale: Ptr | null;
}

/** Weights of the groups of a grouped product (one per expert), with their packed form for native code. */
export class WeightTable {
  /** [ptr, dtype, scale, rowScale or NaN] per weight. */
  readonly packed: Float64Array;
  constructor(readonly refs: readonly WeightRef[]) {
    this.packed = new Float64Array(refs.length * 4);
    refs.forEach((r, i) => this.packed.set([r.ptr, r.dtype, r.scale, r.rowScale ?? NaN], i * 4));
  }
}

export interface Kernels {
  // ---------------------------------------------------------------- dense linear algebra
  /**
   * Batched GEMM: for i in [0, batch): C_i = op(A_i) @ op(B_i) + beta * C_i, with op(A_i) [m, k]
   * and op(B_i) [k, n]. A_i is stored [m, k] (or [k, m] when transA), B_i [k, n] (or [n, k] when
   * transB), C_i [m, n]; A_i starts at a + i*strideA elements (strideA 0 broadcasts), likewise B, C.
   * beta is 0 (overwrite) or 1 (accumulate).
   */
  matmul(a: Ptr, b: Ptr, c: Ptr, m: number, k: number, n: number, transA: boolean, transB: boolean,
    batch: number, strideA: number, strideB: number, strideC: number, beta: 0 | 1): void;
  /**
   * Grouped GEMM over contiguous row segments: group g owns rows [offsets[g], offsets[g+1]) of the
   * row-indexed operands (offsets has G+1 entries, offsets[0] = 0, non-decreasing). Shapes per mode
   * (see GroupedMode): XWt: a [N,K] w [G,M,K] -> c [N,M]; XW: a [N,M] w [G,M,K] -> c [N,K];
   * AtB: a [N,M] b [N,K] -> c [G,M,K] (beta 0 or 1; an empty group gets zeros when beta is 0).
   * `b` is the stacked weight for XWt and XW and the second row operand for AtB.
   */
  groupedMatmul(mode: GroupedMode, a: Ptr, b: Ptr, c: Ptr, offsets: Int32Array, m: number, k: number, beta: 0 | 1): void;

  // ---------------------------------------------------------------- weights in their storage dtype
  /**
   * y [m, n] = x [m, k] @ W^T, W a [n, k] weight (y overwritten). `rowInvariant`: each y[i, j] is
   * bit for bit what the same call gives row i of x alone (m = 1), whatever m, i and the thread
   * count (the one-row path's summation order for every m; slower for many rows, see
   * docs/weights.md). Without it many rows take a faster GEMM whose rounding differs.
   */
  linearW(x: Ptr, w: WeightRef, y: Ptr, m: number, k: number, n: number, rowInvariant?: boolean): void;
  /**
   * Grouped y[rows_g] = x[rows_g] @ W_g^T over contiguous row segments (offsets as for
   * groupedMatmul, G + 1 entries): x [N, k], each W_g [n, k] (ws.refs[g]), y [N, n] overwritten.
   * `rowInvariant` as for linearW: each row's result is also independent of the group sizes.
   */
  groupedLinearW(x: Ptr, ws: WeightTable, y: Ptr, offsets: Int32Array, n: number, k: number, rowInvariant?: boolean): void;
  /** out[i] = row ids[i] of W [rows, cols], decoded and scaled (ids i32 [count], each < rows). */
  gatherRowsW(w: WeightRef, rows: number, ids: Ptr, out: Ptr, count: number, cols: number): void;
  /** out [rows, cols] (f32) = the real values of W. */
  dequantize(w: WeightRef, out: Ptr, rows: number, cols: number): void;

  // ---------------------------------------------------------------- elementwise
  /** out[i] = value for i < n (f32, or the i32 bit pattern when `int`). */
  fill(out: Ptr, n: number, value: number, int: boolean): void;
  /** Strided 2-D copy of 32-bit words: dst[r*dstStride + c] = src[r*srcStride + c], r < rows, c < cols. */
  copy2d(src: Ptr, dst: Ptr, rows: number, cols: number, srcStride: number, dstStride: number): void;
  /**
   * Broadcasting binary op over a 4-D index space `shape` (pad leading dims with 1):
   * out[i0,i1,i2,i3] (contiguous) = a[sum i_d*sa_d] op b[sum i_d*sb_d]; strides 0 broadcast.
   */
  binary(op: BinaryOp, a: Ptr, b: Ptr, out: Ptr, shape: readonly number[], sa: readonly number[], sb: readonly number[]): void;
  /** y = f(x) elementwise, n elements. */
  unary(op: UnaryOp, x: Ptr, y: Ptr, n: number): void;
  /** dx = dy * f'(x) (y = f(x) is given too, for ops whose derivative is cheaper from it). */
  unaryBackward(op: UnaryOp, x: Ptr, y: Ptr, dy: Ptr, dx: Ptr, n: number): void;
  /** y = alpha * x + beta * y  (beta 0: overwrite; aliasing x == y is allowed). */
  axpby(x: Ptr, y: Ptr, n: number, alpha: number, beta: number): void;
  /**
   * Sum of a broadcast gradient back to an operand's shape: out (contiguous, shape `outShape`,
   * 4-D padded) = sum over i of g[i] where g has 4-D shape `shape` and out index = i with the
   * dims where outShape is 1 collapsed. Overwrites out.
   */
  reduceTo(g: Ptr, out: Ptr, shape: readonly number[], outShape: readonly number[]): void;
  /** Fused SwiGLU: y = silu(g) * u, n elements. */
  swiglu(g: Ptr, u: Ptr, y: Ptr, n: number): void;
  /** dg = dy * u * silu'(g), du = dy * silu(g). */
  swigluBackward(g: Ptr, u: Ptr, dy: Ptr, dg: Ptr, du: Ptr, n: number): void;

  // ---------------------------------------------------------------- rows
  /** y = softmax(x) over the last axis of [rows, cols] (numerically stable). */
  softmax(x: Ptr, y: Ptr, rows: number, cols: number): void;
  /** dx = y * (dy - sum(dy * y)) per row. */
  softmaxBackward(y: Ptr, dy: Ptr, dx: Ptr, rows: number, cols: number): void;
  /**
   * Cross-entropy per row: loss[r] = logsumexp(x[r]) - x[r, t[r]], or 0 when t[r] == ignoreIndex;
   * lse[r] = logsumexp(x[r]). targets are i32. A target outside [0, cols) that is not the ignore
   * index is a caller error (the op layer validates).
   */
  crossEntropy(logits: Ptr, targets: Ptr, loss: Ptr, lse: Ptr, rows: number, cols: number, ignoreIndex: number): void;
  /** dx[r] = scale * (softmax(x[r]) - onehot(t[r])), and 0 for ignored rows. */
  crossEntropyBackward(logits: Ptr, targets: Ptr, lse: Ptr, dlogits: Ptr, rows: number, cols: number,
    ignoreIndex: number, scale: number): void;
  /** y = x * rstd * w with rstd[r] = 1/sqrt(mean(x[r]^2) + eps) (stored, for backward). */
  rmsnorm(x: Ptr, w: Ptr, y: Ptr, rstd: Ptr, rows: number, cols: number, eps: number): void;
  /** dx overwritten; dw accumulated (dw += sum_r dy * x * rstd). */
  rmsnormBackward(x: Ptr, w: Ptr, rstd: Ptr, dy: Ptr, dx: Ptr, dw: Ptr, rows: number, cols: number): void;
  /** Sum over the last axis: y[r] = sum_c x[r, c]. */
  sumRows(x: Ptr, y: Ptr, rows: number, cols: number): void;
  /** Standard deviation over the last axis (divisor cols-1 when unbiased, else cols); no eps. */
  stdRows(x: Ptr, y: Ptr, rows: number, cols: number, unbiased: boolean): void;
  /** dx[r,c] = dy[r] * (x[r,c] - mean_r) / (divisor * std[r]); 0 where std is 0. */
  stdRowsBackward(x: Ptr, std: Ptr, dy: Ptr, dx: Ptr, rows: number, cols: number, unbiased: boolean): void;
  /** Top-k per row, descending; ties go to the lower column. values f32 [rows,k], indices i32 [rows,k]. */
  topk(x: Ptr, values: Ptr, indices: Ptr, rows: number, cols: number, k: number): void;
  /** Batched transpose: y_b[j, i] = x_b[i, j], x_b [rows, cols]. */
  transpose(x: Ptr, y: Ptr, batch: number, rows: number, cols: number): void;

  // ---------------------------------------------------------------- indexing
  /** out[i] = table[ids[i]] (rows of `cols` floats), ids i32 [n]. */
  gatherRows(table: Ptr, ids: Ptr, out: Ptr, n: number, cols: number): void;
  /** Accumulate: table[ids[i]] += src[i] (rows of `cols` floats); repeated ids add up. */
  scatterAddRows(src: Ptr, ids: Ptr, table: Ptr, n: number, cols: number): void;
  /** dst[ids[i]] = src[i] (rows of `cols` floats), ids i32 [n] and distinct (e.g. new keys into KV-cache slots). */
  scatterRows(src: Ptr, ids: Ptr, dst: Ptr, n: number, cols: number): void;

  // ---------------------------------------------------------------- transformer
  /**
   * RoPE, rotate-half (neox) form, over x laid out [ntok, heads, dim] with dim even: for pair
   * (i, i + dim/2) at position p = positions[t] (i32), angle = p * theta^(-2i/dim);
   * y = [x1 cos - x2 sin, x2 cos + x1 sin]. `inverse` rotates by -angle (the backward).
   * cos/sin are tables [maxPos, dim/2] the caller built; x may alias y.
   */
  rope(x: Ptr, y: Ptr, cos: Ptr, sin: Ptr, positions: Ptr, ntok: number, heads: number, dim: number, inverse: boolean): void;
  /**
   * Causal scaled-dot-product attention, tiled so memory does not grow as T^2.
   * q [B, Tq, H, D]; k, v [B, *, Hkv, D] with batch stride kvBatchStride elements (>= Tk*Hkv*D, to
   * allow a KV cache of larger capacity); o [B, Tq, H, D]; lse [B, H, Tq] (logsumexp of the scaled
   * scores, for backward). Query i (0-based in Tq) sees keys j < Tk with j <= i + qOffset.
   * H must be a multiple of Hkv (grouped-query attention: head h uses kv head h / (H/Hkv)).
   */
  attention(q: Ptr, k: Ptr, v: Ptr, o: Ptr, lse: Ptr, B: number, Tq: number, Tk: number, H: number, Hkv: number,
    D: number, kvBatchStride: number, qOffset: number, scale: number): void;
  /**
   * Causal attention for a batch of sequences whose keys and values live in a paged cache (the
   * decode and prefill steps of a continuous-batching server). q, o [n, H, D]: n query rows from
   * any sequences, in any order. kCache, vCache [numSlots, Hkv, D], slot = block * blockSize +
   * offset. Row i belongs to sequence s = rowSeq[i] and sees that sequence's keys at positions
   * 0 .. rowLen[i] - 1 (rowLen[i] >= 1: the caller has written the row's own key), position p in slot
   * blockTables[s * maxBlocks + floor(p / blockSize)] * blockSize + p % blockSize. Head h uses kv
   * head h / (H / Hkv); o = softmax(scale q k^T) v. rowSeq, rowLen, blockTables are host arrays (as
   * groupedMatmul's offsets).
   * Batch invariant: a row's output is bit for bit the same whatever else the call holds (n, the
   * row's index, other rows and sequences, the thread count) and wherever its sequence's blocks lie:
   * the order of every reduction depends only on the row's q, its sequence's keys and values, and
   * rowLen.
   */
  pagedAttention(q: Ptr, kCache: Ptr, vCache: Ptr, o: Ptr, n: number, H: number, Hkv: number, D: number, scale: number,
    blockSize: number, rowSeq: Int32Array, rowLen: Int32Array, blockTables: Int32Array, maxBlocks: number): void;
  /**
   * Backward of `attention` (recomputes the probabilities from lse). dq [B, Tq, H, D] and dk, dv
   * (compact [B, Tk, Hkv, D], whatever kvBatchStride is) are overwritten.
   */
  attentionBackward(q: Ptr, k: Ptr, v: Ptr, o: Ptr, lse: Ptr, dout: Ptr, dq: Ptr, dk: Ptr, dv: Ptr, B: number, Tq: number,
    Tk: number, H: number, Hkv: number, D: number, kvBatchStride: number, qOffset: number, scale: number): void;

  // ---------------------------------------------------------------- optimizer
  /** Sum of squares of n floats, in double precision (for global-norm clipping). */
  sumSquares(x: Ptr, n: number): number;
  /**
   * One AdamW step, decoupled weight decay:
   * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + wd p).
   */
  adamw(p: Ptr, g: Ptr, m: Ptr, v: Ptr, n: number, lr: number, b1: number, b2: number, eps: number, wd: number,
    bc1: number, bc2: number): void;
}

export type KernelName = keyof Kernels;

/** A file mapped by `Backend.mapFile`. */
export interface MappedFile {
  /** Pointer of the file's first byte. */
  readonly ptr: Ptr;
  readonly bytes: number;
  /** Unmap it; every pointer into it becomes invalid. Idempotent. */
  unmap(): void;
}

export interface Backend {
  readonly name: BackendName;
  /** Threads the kernels use. */
  readonly threads: number;
  readonly heap: Heap;
  readonly kernels: Kernels;
  /** Allocate `bytes`; the caller owns the block. */
  alloc(bytes: number): Ptr;
  free(ptr: Ptr): void;
  /** Copy `length` f32 (or i32) values out of the heap. */
  readF32(ptr: Ptr, length: number): Float32Array;
  readI32(ptr: Ptr, length: number): Int32Array;
  /** Copy values into the heap at ptr. */
  write(ptr: Ptr, data: Float32Array | Int32Array): void;
  /** Copy raw bytes into the heap at ptr (weights in their storage dtype; any alignment). */
  writeBytes(ptr: Ptr, data: Uint8Array): void;
  /**
   * Map a file read-only into the kernels' address space (native only; absent elsewhere): its
   * bytes are addressed by pointers from `ptr`, never copied, never counted in the heap, and shared
   * with other processes through the page cache. JS cannot view them; only kernels read them.
   */
  mapFile?(path: string): MappedFile;
  /** One line: backend, ISA or SIMD flavour, threads. */
  describe(): string;
  /** Stop worker threads and release memory; the backend is unusable afterwards. */
  dispose(): Promise<void>;
}

export class BackendError extends Error {
  override name = 'BackendError';
}
