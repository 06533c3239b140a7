/**
 * The wasm implementations of the non-GEMM kernels (see ./assembly/ops.ts). Kernels not listed
 * here fall back to the js reference kernels running on the same shared heap.
 *
 * Each kernel is one call of `k_<name>` on every thread (runner.run), or on the calling thread
 * alone (runner.runSingle) when the call is too small for a thread hand-off to pay. Booleans pass
 * as 0/1 and shape arrays as separate numbers; reductions across threads go through runner.scratch.
 */
import { BackendError, type Kernels, type Ptr } from '../backend.js';
import type { KernelRunner } from './runner.js';

/** Query rows of one sequence that pagedAttention takes together (they share each key row read). */
const PAGED_ROWS = 16;

export interface OpKernelOptions {
  /**
   * Elements of work below which a kernel runs on the calling thread alone (a hand-off to the
   * workers costs ~10-50 us); attention counts Tq*Tk*D*B*H and uses 8x this. Tests set 1 to run
   * every size on all threads.
   */
  minParallelWork?: number;
}

/**
 * The wasm non-GEMM kernels over `runner`'s threads; spread them over the js kernels so anything
 * missing falls back to the reference.
 *
 * @example
 * const kernels = { ...makeJsKernels(pool.heap), ...makeOpKernels(pool) };
 * kernels.softmax(x, y, rows, cols); // x, y: pointers into pool.heap
 */
export function makeOpKernels(runner: KernelRunner, opts: OpKernelOptions = {}): Partial<Kernels> {
  const SMALL_WORK = opts.minParallelWork ?? 1 << 15;
  const SMALL_ATTENTION = SMALL_WORK * 8;
  const multi = runner.threads > 1;
  /** Run on all threads when `work` is large enough, else on the calling thread. */
  const call = (name: string, work: number, args: readonly number[]): void => {
    if (multi && work >= SMALL_WORK) runner.run(name, args);
    else runner.runSingle(name, args);
  };
  const b01 = (v: boolean) => (v ? 1 : 0);

  /** Attention on `nt` threads with per-thread scratch sized by the module. */
  function attentionCall(name: string, backward: boolean, D: number, G: number, Tq: number, work: number,
    args: readonly number[]): void {
    const nt = multi && work >= SMALL_ATTENTION ? runner.threads : 1;
    const stride = runner.runSingle('attention_scratch_bytes', [D, G, Tq, b01(backward)]);
    const scratch = runner.scratch(stride * nt);
    const all = [...args, scratch, stride];
    if (nt > 1) runner.run(name, all);
    else runner.runSingle(name, all);
  }

  return {
    fill(out, n, value, int) {
      call('fill', n, [out, n, value, b01(int)]);
    },

    copy2d(src, dst, rows, cols, srcStride, dstStride) {
      if (rows <= 0 || cols <= 0) return;
      const srcEnd = src + 4 * ((rows - 1) * srcStride + cols);
      const dstEnd = dst + 4 * ((rows - 1) * dstStride + cols);
      // Overlapping moves depend on the row order, which only one thread can keep.
      const overlap = src < dstEnd && dst < srcEnd;
      const args = [src, dst, rows, cols, srcStride, dstStride];
      if (overlap) runner.runSingle('copy2d', args);
      else call('copy2d', rows * cols, args);
    },

    binary(op, a, b, out, shape, sa, sb) {
      const s = pad4(shape, 1), x = pad4(sa, 0), y = pad4(sb, 0);
      call('binary', s[0] * s[1] * s[2] * s[3], [op, a, b, out, ...s, ...x, ...y]);
    },

    unary(op, x, y, n) {
      call('unary', n, [op, x, y, n]);
    },

    unaryBackward(op, x, y, dy, dx, n) {
      call('unary_backward', n, [op, x, y, dy, dx, n]);
    },

    axpby(x, y, n, alpha, beta) {
      call('axpby', n, [x, y, n, alpha, beta]);
    },

    reduceTo(g, out, shape, outShape) {
      const s = pad4(shape, 1), o = pad4(outShape, 1);
      call('reduce_to', s[0] * s[1] * s[2] * s[3], [g, out, ...s, ...o]);
    },

    swiglu(g, u, y, n) {
      call('swiglu', n, [g, u, y, n]);
    },

    swigluBackward(g, u, dy, dg, du, n) {
      call('swiglu_backward', n, [g, u, dy, dg, du, n]);
    },

    softmax(x, y, rows, cols) {
      call('softmax', rows * cols, [x, y, rows, cols]);
    },

    softmaxBackward(y, dy, dx, rows, cols) {
      call('softmax_backward', rows * cols, [y, dy, dx, rows, cols]);
    },

    crossEntropy(logits, targets, loss, lse, rows, cols, ignoreIndex) {
      call('cross_entropy', rows * cols, [logits, targets, loss, lse, rows, cols, ignoreIndex]);
    },

    crossEntropyBackward(logits, targets, lse, dlogits, rows, cols, ignoreIndex, scale) {
      call('cross_entropy_backward', rows * cols, [logits, targets, lse, dlogits, rows, cols, ignoreIndex, scale]);
    },

    rmsnorm(x, w, y, rstd, rows, cols, eps) {
      call('rmsnorm', rows * cols, [x, w, y, rstd, rows, cols, eps]);
    },

    rmsnormBackward(x, w, rstd, dy, dx, dw, rows, cols) {
      if (!multi || rows * cols < SMALL_WORK || rows < 2) {
        runner.runSingle('rmsnorm_backward', [x, w, rstd, dy, dx, dw, rows, cols, 0]);
        return;
      }
      // dw is a sum over rows: each thread accumulates its rows into its own partial row.
      const parts = runner.scratch(runner.threads * cols * 4);
      runner.run('rmsnorm_backward', [x, w, rstd, dy, dx, parts, rows, cols, 1]);
      runner.run('add_partials', [parts, runner.threads, dw, cols]);
    },

    sumRows(x, y, rows, cols) {
      call('sum_rows', rows * cols, [x, y, rows, cols]);
    },

    stdRows(x, y, rows, cols, unbiased) {
      call('std_rows', rows * cols, [x, y, rows, cols, b01(unbiased)]);
    },

    stdRowsBackward(x, std, dy, dx, rows, cols, unbiased) {
      call('std_rows_backward', rows * cols, [x, std, dy, dx, rows, cols, b01(unbiased)]);
    },

    topk(x, values, indices, rows, cols, k) {
      call('topk', rows * cols, [x, values, indices, rows, cols, k]);
    },

    transpose(x, y, batch, rows, cols) {
      call('transpose', batch * rows * cols, [x, y, batch, rows, cols]);
    },

    gatherRows(table, ids, out, n, cols) {
      call('gather_rows', n * cols, [table, ids, out, n, cols]);
    },

    scatterAddRows(src, ids, table, n, cols) {
      call('scatter_add_rows', n * cols, [src, ids, table, n, cols]);
    },

    scatterRows(src, ids, dst, n, cols) {
      call('scatter_rows', n * cols, [src, ids, dst, n, cols]);
    },

    rope(x, y, cos, sin, positions, ntok, heads, dim, inverse) {
      call('rope', ntok * heads * dim, [x, y, cos, sin, positions, ntok, heads, dim, b01(inverse)]);
    },

    attention(q, k, v, o, lse, B, Tq, Tk, H, Hkv, D, kvBatchStride, qOffset, scale) {
      attentionCall('attention', false, D, H / Hkv, Tq, B * H * Tq * Tk * D,
        [q, k, v, o, lse, B, Tq, Tk, H, Hkv, D, kvBatchStride, qOffset, scale]);
    },

    pagedAttention(q, kCache, vCache, o, n, H, Hkv, D, scale, blockSize, rowSeq, rowLen, blockTables, maxBlocks) {
      if (n <= 0) return;
      if (rowSeq.length < n || rowLen.length < n) throw new BackendError(`pagedAttention: rowSeq and rowLen need ${n} entries`);
      // Groups: consecutive rows of one sequence (a prefill chunk), at most PAGED_ROWS, read each key once.
      const first = [0];
      let maxLen = 0, keys = 0, most = 1;
      for (let i = 0; i < n; i++) {
        const g0 = first[first.length - 1]!;
        if (i > g0 && (rowSeq[i] !== rowSeq[g0] || i - g0 === PAGED_ROWS)) {
          most = Math.max(most, i - g0);
          first.push(i);
        }
        maxLen = Math.max(maxLen, rowLen[i]!);
        keys += rowLen[i]!;
      }
      most = Math.max(most, n - first[first.length - 1]!);
      first.push(n);
      const nt = multi && keys * H * D >= SMALL_ATTENTION ? runner.threads : 1;
      const stride = runner.runSingle('paged_attention_scratch_bytes', [most * (H / Hkv), D, maxLen]);
      // The host arrays, then each thread's scratch (64-byte aligned).
      const meta = Math.ceil((4 * (2 * n + blockTables.length + first.length)) / 64) * 64;
      const area = runner.scratch(meta + stride * nt);
      const i32 = runner.heap.i32, at = area >>> 2;
      i32.set(rowSeq.subarray(0, n), at);
      i32.set(rowLen.subarray(0, n), at + n);
      i32.set(blockTables, at + 2 * n);
      i32.set(first, at + 2 * n + blockTables.length);
      const args = [q, kCache, vCache, o, H, Hkv, D, scale, blockSize, area, area + 4 * n, area + 8 * n, maxBlocks,
        area + 4 * (2 * n + blockTables.length), first.length - 1, area + meta, stride];
      if (nt > 1) runner.run('paged_attention', args);
      else runner.runSingle('paged_attention', args);
    },

    attentionBackward(q, k, v, o, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, kvBatchStride, qOffset, scale) {
      attentionCall('attention_backward', true, D, H / Hkv, Tq, B * H * Tq * Tk * D,
        [q, k, v, o, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, kvBatchStride, qOffset, scale]);
    },

    sumSquares(x: Ptr, n: number): number {
      const nt = multi && n >= SMALL_WORK ? runner.threads : 1;
      const partials = runner.scratch(8 * nt);
      if (nt > 1) runner.run('sum_squares', [x, n, partials]);
      else runner.runSingle('sum_squares', [x, n, partials]);
      const f64 = new Float64Array(runner.heap.storage.buffer, partials, nt);
      let s = 0;
      for (let t = 0; t < nt; t++) s += f64[t]!;
      return s;
    },

    adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2) {
      call('adamw', n, [p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2]);
    },
  };
}

/** A shape or stride list left-padded to 4 dims. */
function pad4(a: readonly number[], fill: number): [number, number, number, number] {
  if (a.length > 4) throw new BackendError(`wasm: broadcast index spaces have at most 4 dims, got [${a.join(', ')}]`);
  return [...new Array<number>(4 - a.length).fill(fill), ...a] as [number, number, number, number];
}
