/**
 * Accelerators and clusters the planner knows: peak dense tensor-core throughput (no sparsity),
 * memory, HBM bandwidth, and the links between GPUs. Figures are the vendors' datasheet numbers
 * (see docs/planner.md, "Sources"). `gemmEfficiency` is the fraction of the peak that a
 * transformer's GEMMs reach inside end-to-end training (around 0.7 on A100-class parts, 0.65 on
 * Hopper, whose peak is harder to reach), below the 0.8-0.9 of an isolated large cuBLAS GEMM.
 */

export class PlanError extends Error {
  override name = 'PlanError';
  constructor(
    message: string,
    /** The option or field at fault, e.g. '--gpu' or 'layout.tp'. */
    readonly field?: string,
  ) {
    super(field ? `${field}: ${message}` : message);
  }
}

export interface GpuSpec {
  key: string;
  name: string;
  /** Usable device memory, bytes. */
  memoryBytes: number;
  /** Dense bf16 tensor-core TFLOP/s. */
  bf16Tflops: number;
  /** Dense FP8 tensor-core TFLOP/s (0: no FP8 tensor cores). */
  fp8Tflops: number;
  /** HBM / GDDR bandwidth, TB/s. */
  memoryTBs: number;
  /** Fraction of the bf16 peak a large GEMM reaches. */
  gemmEfficiency: number;
  /** Per-GPU bandwidth to the other GPUs of its node, one direction, GB/s (NVLink, xGMI or PCIe). */
  intraNodeGBs: number;
  /** Per-GPU bandwidth out of the node, one direction, GB/s (the NIC share of one GPU). */
  interNodeGBs: number;
  /** GPUs per node of the usual server. */
  gpusPerNode: number;
}

const GB = 1e9;

/** Keys are lower-case; `gpuSpec` also accepts the display names case-insensitively. */
export const GPUS: Record<string, GpuSpec> = {
  // A800 = A100 with NVLink cut to 400 GB/s (bidirectional); Skywork's nodes had 800 Gb/s RoCE per node.
  'a800-80g': { key: 'a800-80g', name: 'A800 80GB SXM', memoryBytes: 80 * GB, bf16Tflops: 312, fp8Tflops: 0, memoryTBs: 2.039, gemmEfficiency: 0.72, intraNodeGBs: 200, interNodeGBs: 12.5, gpusPerNode: 8 },
  'a100-40g': { key: 'a100-40g', name: 'A100 40GB SXM', memoryBytes: 40 * GB, bf16Tflops: 312, fp8Tflops: 0, memoryTBs: 1.555, gemmEfficiency: 0.72, intraNodeGBs: 300, interNodeGBs: 25, gpusPerNode: 8 },
  'a100-80g': { key: 'a100-80g', name: 'A100 80GB SXM', memoryBytes: 80 * GB, bf16Tflops: 312, fp8Tflops: 0, memoryTBs: 2.039, gemmEfficiency: 0.72, intraNodeGBs: 300, interNodeGBs: 25, gpusPerNode: 8 },
  'h100-sxm': { key: 'h100-sxm', name: 'H100 80GB SXM', memoryBytes: 80 * GB, bf16Tflops: 989, fp8Tflops: 1979, memoryTBs: 3.35, gemmEfficiency: 0.64, intraNodeGBs: 450, interNodeGBs: 50, gpusPerNode: 8 },
  'h100-pcie': { key: 'h100-pcie', name: 'H100 80GB PCIe', memoryBytes: 80 * GB, bf16Tflops: 756, fp8Tflops: 1513, memoryTBs: 2.0, gemmEfficiency: 0.64, intraNodeGBs: 64, interNodeGBs: 25, gpusPerNode: 8 },
  'h800': { key: 'h800', name: 'H800 80GB SXM', memoryBytes: 80 * GB, bf16Tflops: 989, fp8Tflops: 1979, memoryTBs: 3.35, gemmEfficiency: 0.64, intraNodeGBs: 200, interNodeGBs: 50, gpusPerNode: 8 },
  'h200': { key: 'h200', name: 'H200 141GB SXM', memoryBytes: 141 * GB, bf16Tflops: 989, fp8Tflops: 1979, memoryTBs: 4.8, gemmEfficiency: 0.64, intraNodeGBs: 450, interNodeGBs: 50, gpusPerNode: 8 },
  'b200': { key: 'b200', name: 'B200 180GB', memoryBytes: 180 * GB, bf16Tflops: 2250, fp8Tflops: 4500, memoryTBs: 8.0, gemmEfficiency: 0.6, intraNodeGBs: 900, interNodeGBs: 50, gpusPerNode: 8 },
  'l40s': { key: 'l40s', name: 'L40S 48GB', memoryBytes: 48 * GB, bf16Tflops: 362, fp8Tflops: 733, memoryTBs: 0.864, gemmEfficiency: 0.6, intraNodeGBs: 25, interNodeGBs: 12.5, gpusPerNode: 8 },
  'rtx-4090': { key: 'rtx-4090', name: 'GeForce RTX 4090 24GB', memoryBytes: 24 * GB, bf16Tflops: 165, fp8Tflops: 330, memoryTBs: 1.008, gemmEfficiency: 0.6, intraNodeGBs: 25, interNodeGBs: 3.1, gpusPerNode: 8 },
  'mi300x': { key: 'mi300x', name: 'Instinct MI300X 192GB', memoryBytes: 192 * GB, bf16Tflops: 1307, fp8Tflops: 2615, memoryTBs: 5.3, gemmEfficiency: 0.5, intraNodeGBs: 448, interNodeGBs: 50, gpusPerNode: 8 },
};

/**
 * Look a GPU up by key, display name or model name alone when one memory size has it ('A800',
 * 'H100' is ambiguous: sxm or pcie), or fail listing the known ones.
 */
export function gpuSpec(name: string): GpuSpec {
  const k = name.trim().toLowerCase().replace(/[\s_]+/g, '-');
  let g = GPUS[k] ?? Object.values(GPUS).find((x) => x.name.toLowerCase() === name.trim().toLowerCase());
  if (!g && k) {
    const family = Object.keys(GPUS).filter((key) => key.startsWith(`${k}-`));
    if (family.length === 1) g = GPUS[family[0]!];
    else if (family.length > 1) throw new PlanError(`GPU '${name}' is ambiguous: ${family.join(' or ')}`, '--gpu');
  }
  if (!g) throw new PlanError(`unknown GPU '${name}': expected one of ${Object.keys(GPUS).join(', ')}`, '--gpu');
  return g;
}

export interface Cluster {
  gpu: GpuSpec;
  gpus: number;
  gpusPerNode: number;
  /** Per-GPU one-direction bandwidths, GB/s. */
  intraNodeGBs: number;
  interNodeGBs: number;
  /** Per-collective start-up latency inside / across nodes, seconds. */
  intraLatency: number;
  interLatency: number;
}

export interface ClusterOptions {
  gpusPerNode?: number;
  intraNodeGBs?: number;
  interNodeGBs?: number;
}

/** A cluster of `gpus` GPUs of one kind, with the usual server's links unless overridden. */
export function cluster(gpu: string | GpuSpec, gpus: number, o: ClusterOptions = {}): Cluster {
  const g = typeof gpu === 'string' ? gpuSpec(gpu) : gpu;
  if (!Number.isInteger(gpus) || gpus < 1) throw new PlanError(`expected a positive integer GPU count, got ${gpus}`, '--gpus');
  const perNode = o.gpusPerNode ?? Math.min(g.gpusPerNode, gpus);
  if (!Number.isInteger(perNode) || perNode < 1) throw new PlanError(`expected a positive integer, got ${perNode}`, '--gpus-per-node');
  if (gpus > perNode && gpus % perNode !== 0) throw new PlanError(`${gpus} GPUs do not fill whole nodes of ${perNode}`, '--gpus-per-node');
  return {
    gpu: g,
    gpus,
    gpusPerNode: perNode,
    intraNodeGBs: o.intraNodeGBs ?? g.intraNodeGBs,
    interNodeGBs: o.interNodeGBs ?? g.interNodeGBs,
    intraLatency: 10e-6,
    interLatency: 25e-6,
  };
}

/** Named clusters of published runs (used by the validation table). */
export const CLUSTER_PRESETS: Record<string, { gpu: string; gpusPerNode: number; intraNodeGBs: number; interNodeGBs: number; note: string }> = {
  'skywork-a800': { gpu: 'a800-80g', gpusPerNode: 8, intraNodeGBs: 200, interNodeGBs: 12.5, note: '192 nodes x 8 A800-80G, 400 GB/s NVLink, 800 Gb/s RoCE per node (report appendix B)' },
  'selene-a100': { gpu: 'a100-80g', gpusPerNode: 8, intraNodeGBs: 300, interNodeGBs: 25, note: 'DGX A100, 8 x 200 Gb/s HDR InfiniBand per node (Narayanan et al. 2021)' },
  'eos-h100': { gpu: 'h100-sxm', gpusPerNode: 8, intraNodeGBs: 450, interNodeGBs: 50, note: 'DGX H100, 8 x 400 Gb/s NDR InfiniBand per node' },
  'meta-h100-roce': { gpu: 'h100-sxm', gpusPerNode: 8, intraNodeGBs: 450, interNodeGBs: 50, note: 'Grand Teton H100, 400 Gb/s RoCE per GPU (Llama 3 paper section 3.3)' },
};
