/**
 * JS side of the wasm weight kernels (./assembly/weights.ts): weights in their storage dtype, read
 * from the heap (wasm cannot map files: checkpoints are copied in byte for byte). Per-thread
 * scratch for the decoded blocks of the many-rows path is one heap block, grown as k grows.
 */
import { BackendError, type Kernels, type Ptr, type WeightRef } from '../backend.js';
import type { KernelRunner } from './runner.js';

export function makeWeightKernels(runner: KernelRunner): Pick<Kernels, 'linearW' | 'groupedLinearW' | 'gatherRowsW' | 'dequantize'> {
  let scratch = 0, stride = 0;
  /** Per-thread decode scratch for rows of k weights (only the many-rows path uses it). */
  const scratchFor = (k: number): [Ptr, number] => {
    const need = runner.runSingle('weights_scratch_bytes', [k]);
    if (need > stride) {
      if (scratch) runner.heap.free(scratch);
      stride = need;
      scratch = runner.heap.alloc(stride * runner.threads);
    }
    return [scratch, stride];
  };
  /** Whether `rows` activation rows decode weight blocks into scratch (the GEMM path, or row-invariant beyond one row). */
  const needsScratch = (rows: number, rowInvariant: boolean) => rows > 16 || (rowInvariant && rows > 1);
  const heapPtr = (p: Ptr, what: string): Ptr => {
    if (!Number.isInteger(p) || p < 0 || p >= 2 ** 32) throw new BackendError(`wasm: ${what} pointer ${p} is not in the heap`);
    return p;
  };
  // 0xffffffff (passed as -1 to an i32 parameter) means no row scales; see NO_ROW_SCALE in assembly/weights.ts
  const rs = (w: WeightRef) => (w.rowScale === null ? -1 : heapPtr(w.rowScale, 'row scale'));
  return {
    linearW(x, w, y, m, k, n, rowInvariant = false) {
      if (m <= 0 || n <= 0) return;
      const [s, st] = needsScratch(m, rowInvariant) ? scratchFor(k) : [0, 0];
      runner.run('linear_w', [x, heapPtr(w.ptr, 'weight'), w.dtype, w.scale, rs(w), y, m, k, n, s, st, rowInvariant ? 1 : 0]);
    },
    groupedLinearW(x, ws, y, offsets, n, k, rowInvariant = false) {
      const G = offsets.length - 1;
      if (G < 1) throw new BackendError('groupedLinearW: offsets needs G + 1 entries');
      let most = 0;
      for (let g = 0; g < G; g++) most = Math.max(most, offsets[g + 1]! - offsets[g]!);
      const [s, st] = needsScratch(most, rowInvariant) ? scratchFor(k) : [0, 0];
      const area = runner.scratch(16 * G + offsets.byteLength);
      const table = new DataView(runner.heap.i32.buffer, area, 16 * G);
      ws.refs.forEach((w, g) => {
        table.setUint32(16 * g, heapPtr(w.ptr, 'weight'), true);
        table.setInt32(16 * g + 4, w.dtype, true);
        table.setFloat32(16 * g + 8, w.scale, true);
        table.setUint32(16 * g + 12, rs(w) >>> 0, true);
      });
      runner.heap.i32.set(offsets, (area + 16 * G) >>> 2);
      runner.run('grouped_linear_w', [x, area, y, area + 16 * G, G, n, k, s, st, rowInvariant ? 1 : 0]);
    },
    gatherRowsW(w, _rows, ids, out, count, cols) {
      runner.run('gather_rows_w', [heapPtr(w.ptr, 'weight'), w.dtype, w.scale, rs(w), ids, out, count, cols]);
    },
    dequantize(w, out, rows, cols) {
      runner.run('dequantize_w', [heapPtr(w.ptr, 'weight'), w.dtype, w.scale, rs(w), out, rows, cols]);
    },
  };
}
