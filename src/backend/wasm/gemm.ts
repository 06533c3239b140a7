/**
 * JS side of the wasm GEMM kernels (./assembly/gemm.ts): argument plumbing and the per-thread
 * packing workspace, allocated once per backend.
 */
import { BackendError, GroupedMode, type Kernels, type Ptr } from '../backend.js';
import type { KernelRunner } from './runner.js';

export function makeGemmKernels(runner: KernelRunner): Pick<Kernels, 'matmul' | 'groupedMatmul'> {
  const workBytes = runner.runSingle('gemm_workspace_bytes', []);
  const work = runner.heap.alloc(workBytes * runner.threads);
  return {
    matmul(a: Ptr, b: Ptr, c: Ptr, m: number, k: number, n: number, transA: boolean, transB: boolean,
      batch: number, strideA: number, strideB: number, strideC: number, beta: 0 | 1): void {
      if (m === 0 || n === 0 || batch === 0) return;
      runner.run('matmul', [a, b, c, m, k, n, transA ? 1 : 0, transB ? 1 : 0, batch, strideA, strideB, strideC, beta, work]);
    },
    groupedMatmul(mode: GroupedMode, a: Ptr, b: Ptr, c: Ptr, offsets: Int32Array, m: number, k: number, beta: 0 | 1): void {
      const groups = offsets.length - 1;
      if (groups < 1) throw new BackendError('groupedMatmul: offsets needs G + 1 entries');
      if (mode !== GroupedMode.XWt && mode !== GroupedMode.XW && mode !== GroupedMode.AtB) {
        throw new BackendError(`groupedMatmul: unknown mode ${mode as number}`);
      }
      const off = runner.scratch(offsets.byteLength);
      runner.heap.i32.set(offsets, off >>> 2);
      runner.run('grouped_matmul', [mode, a, b, c, off, groups, m, k, beta, work]);
    },
  };
}
