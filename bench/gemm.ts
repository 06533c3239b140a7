/**
 * GEMM throughput per backend and thread count, one machine-readable line per figure:
 *   gemm backend=wasm threads=2 m=2048 k=1024 n=2816 gflops=67.3 peak_pct=29.1
 * plus GEMV weight-streaming bandwidth, a grouped (MoE expert) matmul against one GEMM of equal
 * FLOPs, and numpy (OpenBLAS) as a peer when python3 has it. Median of several timed runs after
 * a warm-up. Run: npm run bench:gemm
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { type Backend, GroupedMode } from '../src/backend/backend.js';
import { createJsBackend } from '../src/backend/js/index.js';
import { createWasmBackend } from '../src/backend/wasm/index.js';
import { createNativeBackend, nativeInfo } from '../src/backend/native/index.js';
import { randomBlock, timeCall } from './timing.js';

/**
 * fp32 FMA peak of one core: measured by the native addon's FMA-chain probe when it is built
 * (this machine class has varied: PERF-NOTES' Zen 4 measured 114-117, a Zen 5 ~250), else the
 * documented Zen 4 figure.
 */
let PEAK_PER_CORE = 114;
let PEAK_SOURCE = 'documented (PERF-NOTES Zen 4; the native addon is not built to measure it)';

async function measurePeak(): Promise<void> {
  if (!nativeInfo().available) return;
  const be = await createNativeBackend({ threads: 1 });
  try {
    PEAK_PER_CORE = Math.max(...[0, 1, 2].map(() => be.measureFmaPeak()));
    PEAK_SOURCE = `measured (native ${be.isa} FMA chains, best of 3)`;
  } finally {
    await be.dispose();
  }
}

interface BenchBackend {
  label: string;
  threads: number;
  create: () => Promise<Backend>;
  /** Skip products above this many FLOPs (slow reference backends). */
  maxFlops: number;
}

const BACKENDS: BenchBackend[] = [
  { label: 'wasm', threads: 1, create: () => createWasmBackend({ threads: 1 }), maxFlops: Infinity },
  { label: 'wasm', threads: 2, create: () => createWasmBackend({ threads: 2 }), maxFlops: Infinity },
  { label: 'js', threads: 1, create: async () => createJsBackend(), maxFlops: 5e8 },
  ...(nativeInfo().available ? [1, 2].map((threads) => ({ label: 'native', threads, create: async () => createNativeBackend({ threads }), maxFlops: Infinity })) : []),
];

/** (m, k, n, transB); GEMV is decode's x @ W^T with W [n, k]. */
const SHAPES: [number, number, number, boolean][] = [
  [512, 512, 512, false],
  [2048, 1024, 2816, false],
  [64, 1024, 2816, false],
  [1, 4096, 4096, true],
];
const GROUPS = 8;
const GROUP_ROWS = 256;
const GROUP_K = 1024;
const GROUP_N = 2816;




function fmt(x: number, digits = 1): string {
  return x.toFixed(digits);
}

function line(kind: string, who: string, threads: number, fields: string, gflops: number, extra = ''): void {
  const pct = (100 * gflops) / (PEAK_PER_CORE * threads);
  console.log(`${kind} ${who} threads=${threads} ${fields} gflops=${fmt(gflops)} peak_pct=${fmt(pct)}${extra}`);
}

function benchGemm(be: Backend, spec: BenchBackend): void {
  for (const [m, k, n, transB] of SHAPES) {
    const flops = 2 * m * k * n;
    if (flops > spec.maxFlops) continue;
    const a = randomBlock(be, m * k), b = randomBlock(be, k * n), c = be.alloc(m * n * 4);
    const s = timeCall(() => be.kernels.matmul(a, b, c, m, k, n, false, transB, 1, 0, 0, 0, 0), flops, 20e9);
    const extra = m === 1 ? ` weight_gbps=${fmt((k * n * 4) / s / 1e9)}` : '';
    line('gemm', `backend=${spec.label}`, spec.threads, `m=${m} k=${k} n=${n}`, flops / s / 1e9, extra);
    be.free(a);
    be.free(b);
    be.free(c);
  }
}

function benchGrouped(be: Backend, spec: BenchBackend): void {
  const rows = GROUPS * GROUP_ROWS;
  const flops = 2 * rows * GROUP_K * GROUP_N;
  if (flops > spec.maxFlops) return;
  const x = randomBlock(be, rows * GROUP_K), w = randomBlock(be, GROUPS * GROUP_N * GROUP_K), y = be.alloc(rows * GROUP_N * 4);
  const offsets = Int32Array.from({ length: GROUPS + 1 }, (_, g) => g * GROUP_ROWS);
  // One GEMM of equal FLOPs in the same layout (x @ w^T), as the ratio's denominator.
  const dense = timeCall(() => be.kernels.matmul(x, w, y, rows, GROUP_K, GROUP_N, false, true, 1, 0, 0, 0, 0), flops, 20e9);
  const grouped = timeCall(() => be.kernels.groupedMatmul(GroupedMode.XWt, x, w, y, offsets, GROUP_N, GROUP_K, 0), flops, 20e9);
  line('grouped', `backend=${spec.label}`, spec.threads, `groups=${GROUPS} rows=${GROUP_ROWS} k=${GROUP_K} n=${GROUP_N}`,
    flops / grouped / 1e9, ` dense_gflops=${fmt(flops / dense / 1e9)} ratio=${fmt(dense / grouped, 2)}`);
  be.free(x);
  be.free(w);
  be.free(y);
}

/** numpy (OpenBLAS) on the same shapes, when python3 has it; silent otherwise. */
function benchNumpyPeer(): void {
  const shapes = JSON.stringify(SHAPES.map(([m, k, n]) => [m, k, n]));
  const script = `
import json, sys, time
import numpy as np
for m, k, n in json.loads(sys.argv[1]):
    a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
    a @ b
    reps = max(1, int(0.05 / (2 * m * k * n / 50e9)))
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps): a @ b
        ts.append((time.perf_counter() - t0) / reps)
    ts.sort()
    print(m, k, n, 2 * m * k * n / ts[len(ts) // 2] / 1e9)
`;
  for (const threads of [1, 2]) {
    const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
    const r = spawnSync('python3', ['-c', script, shapes], { env, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0 || !r.stdout) return;
    for (const row of r.stdout.trim().split('\n')) {
      const [m, k, n, g] = row.split(' ').map(Number) as [number, number, number, number];
      line('gemm', 'peer=numpy', threads, `m=${m} k=${k} n=${n}`, g);
    }
  }
}

async function main(): Promise<void> {
  await measurePeak();
  console.log(`peak fp32_gflops_per_core=${PEAK_PER_CORE.toFixed(1)} source=${PEAK_SOURCE}`);
  for (const spec of BACKENDS) {
    const be = await spec.create();
    console.log(`backend ${be.describe()}`);
    try {
      benchGemm(be, spec);
      benchGrouped(be, spec);
    } finally {
      await be.dispose();
    }
  }
  benchNumpyPeer();
}

await main();
