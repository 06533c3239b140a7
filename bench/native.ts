/**
 * The native backend against PyTorch in the same run, one machine-readable line per figure:
 *   peak backend=native isa=avx512 threads=1 fma_gflops=... peak_pct_base=...  (measured FMA chains)
 *   gemm backend=native threads=2 m=2048 k=1024 n=2816 gflops=... peak_pct=...
 *   gemm peer=pytorch threads=2 m=2048 k=1024 n=2816 gflops=... peak_pct=...
 *   moe_block backend=native threads=2 ... fwd_bwd_ms=... gemm_pct=...
 *   moe_kernel backend=native threads=2 kernel=matmul ms=... pct=...
 * GEMV (m=1) lines add weight_gbps (bytes of the weight matrix streamed per second). PyTorch runs
 * when some python3 on PATH (or /usr/bin/python3) imports torch; its thread count is pinned with
 * OMP_NUM_THREADS / OPENBLAS_NUM_THREADS and torch.set_num_threads. Medians of several timed runs
 * after a warm-up. Run: npm run bench:native [-- gemm|peer|moe ...] (default: all three parts).
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Backend, Kernels } from '../src/backend/backend.js';
import { type NativeBackend, createNativeBackend, nativeInfo } from '../src/backend/native/index.js';
import * as T from '../src/tensor/index.js';
import { median, randomBlock, timeCall } from './timing.js';

/** (m, k, n, transB); GEMV is decode's x @ W^T with W [n, k]. */
const SHAPES: [number, number, number, boolean][] = [
  [2048, 1024, 2816, false],
  [64, 1024, 2816, false],
  [512, 512, 512, false],
  [1, 4096, 4096, true],
];
const THREADS = [1, 2];




const f1 = (x: number) => x.toFixed(1);

function gemmLine(who: string, threads: number, m: number, k: number, n: number, seconds: number, peak: number): void {
  const gflops = (2 * m * k * n) / seconds / 1e9;
  const gbps = m === 1 ? ` weight_gbps=${f1((k * n * 4) / seconds / 1e9)}` : '';
  console.log(`gemm ${who} threads=${threads} m=${m} k=${k} n=${n} gflops=${f1(gflops)} peak_pct=${f1((100 * gflops) / peak)}${gbps}`);
}

function benchGemm(be: Backend, threads: number, peak: number): void {
  for (const [m, k, n, transB] of SHAPES) {
    const a = randomBlock(be, m * k), b = randomBlock(be, k * n), c = be.alloc(m * n * 4);
    const s = timeCall(() => be.kernels.matmul(a, b, c, m, k, n, false, transB, 1, 0, 0, 0, 0), 2 * m * k * n, 100e9);
    gemmLine('backend=native', threads, m, k, n, s, peak);
    be.free(a);
    be.free(b);
    be.free(c);
  }
}

/** torch.mm at the same shapes and thread counts; silent when no python3 has torch. */
function benchTorchPeer(peaks: Map<number, number>): void {
  const shapes = JSON.stringify(SHAPES);
  const script = `
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
for m, k, n, tb in json.loads(sys.argv[1]):
    a = torch.rand(m, k) - 0.5
    b = (torch.rand(n, k) - 0.5) if tb else (torch.rand(k, n) - 0.5)
    f = (lambda: torch.mm(a, b.t())) if tb else (lambda: torch.mm(a, b))
    f()
    reps = max(1, int(0.05 / (2 * m * k * n / 100e9)))
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps): f()
        ts.append((time.perf_counter() - t0) / reps)
    ts.sort()
    print(m, k, n, ts[len(ts) // 2], torch.__version__)
`;
  const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);
  if (!python) {
    console.log('peer pytorch unavailable (no python3 with torch)');
    return;
  }
  for (const threads of THREADS) {
    const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
    const r = spawnSync(python, ['-c', script, shapes, String(threads)], { env, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0 || !r.stdout) {
      console.log(`peer pytorch failed: ${(r.stderr || '').trim().split('\n').pop()}`);
      return;
    }
    for (const row of r.stdout.trim().split('\n')) {
      const [m, k, n, s] = row.split(' ').map(Number) as [number, number, number, number];
      gemmLine('peer=pytorch', threads, m, k, n, s, peaks.get(threads)!);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One MoE transformer block of the `small` model, forward + backward, with per-kernel timings.

const MOE = { batch: 8, seq: 512, hidden: 512, heads: 8, headDim: 64, experts: 8, topK: 2, ffn: 1024, eps: 1e-5 };

/** Replace every kernel with a timed wrapper; returns the per-kernel milliseconds (mutable). */
function instrument(kernels: Kernels): Map<string, number> {
  const ms = new Map<string, number>();
  const table = kernels as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of Object.keys(table)) {
    const f = table[name]!;
    ms.set(name, 0);
    table[name] = (...args: unknown[]) => {
      const t0 = performance.now();
      const r = f(...args);
      ms.set(name, ms.get(name)! + performance.now() - t0);
      return r;
    };
  }
  return ms;
}

function moeBlock(be: Backend, threads: number): void {
  const { batch: B, seq: S, hidden: C, heads: H, headDim: D, experts: E, topK: K, ffn: F, eps } = MOE;
  const N = B * S;
  T.setBackend(be);
  const rng = new T.Rng(7);
  const p = (shape: number[], std: number, name: string) => T.parameter(T.randn(shape, rng, std), name);
  const params = {
    attnNorm: T.parameter(T.ones([C]), 'attn_norm'),
    wq: p([C, C], 0.02, 'wq'), wk: p([C, C], 0.02, 'wk'), wv: p([C, C], 0.02, 'wv'), wo: p([C, C], 0.02, 'wo'),
    ffnNorm: T.parameter(T.ones([C]), 'ffn_norm'),
    router: p([E, C], 0.02, 'router'),
    w1: p([E, F, C], 0.02, 'w1'), w3: p([E, F, C], 0.02, 'w3'), w2: p([E, C, F], 0.02, 'w2'),
  };
  const x = T.randn([N, C], rng, 1);
  const probe = T.randn([N, C], rng, 1);
  const tables = T.ropeTables(S, D, 10000);
  const positions = T.tensor(Int32Array.from({ length: N }, (_, i) => i % S), [N], 'i32');

  const step = () =>
    T.tidy(() => {
      const h = T.rmsnorm(x, params.attnNorm, eps); // (N, C)
      const heads = (w: T.Tensor) => T.reshape(T.linear(h, w), [B, S, H, D]); // (B, T, H, D)
      const q = T.rope(heads(params.wq), tables, positions);
      const k = T.rope(heads(params.wk), tables, positions);
      const v = heads(params.wv);
      const a = T.reshape(T.attention(q, k, v), [N, C]); // (N, C)
      const x1 = T.add(x, T.linear(a, params.wo)); // (N, C)
      const h2 = T.rmsnorm(x1, params.ffnNorm, eps); // (N, C)
      const probs = T.softmax(T.linear(h2, params.router)); // (N, E)
      const { values, indices } = T.topk(probs, K); // (N, K)
      // Dispatch: slots (token, choice) sorted by expert; offsets delimit each expert's rows.
      const choice = indices.toArray() as Int32Array;
      const order = Array.from({ length: N * K }, (_, i) => i).sort((s1, s2) => choice[s1]! - choice[s2]! || s1 - s2);
      const offsets = new Int32Array(E + 1);
      for (const e of choice) offsets[e + 1]!++;
      for (let e = 0; e < E; e++) offsets[e + 1]! += offsets[e]!;
      const token = T.tensor(Int32Array.from(order, (s) => Math.floor(s / K)), [N * K], 'i32');
      const slot = T.tensor(Int32Array.from(order), [N * K], 'i32');
      const xs = T.gatherRows(h2, token); // (N*K, C)
      const act = T.swiglu(T.groupedMatmul(xs, params.w1, offsets), T.groupedMatmul(xs, params.w3, offsets)); // (N*K, F)
      const ys = T.groupedMatmul(act, params.w2, offsets); // (N*K, C)
      const gate = T.gatherRows(T.reshape(values, [N * K, 1]), slot); // (N*K, 1)
      const out = T.add(x1, T.scatterAddRows(T.mul(ys, gate), token, N)); // (N, C)
      T.backward(T.sumAll(T.mul(out, probe)));
      for (const w of Object.values(params)) {
        w.grad?.dispose();
        w.grad = null;
      }
    });

  step(); // warm-up: the heap reaches its steady state
  const ms = instrument(be.kernels);
  const walls: number[] = [];
  const runs = 3;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    step();
    walls.push(performance.now() - t0);
  }
  const wall = median(walls);
  const total = walls.reduce((s, w) => s + w, 0);
  const kernelTotal = [...ms.values()].reduce((s, v) => s + v, 0);
  const gemm = ms.get('matmul')! + ms.get('groupedMatmul')!;
  const flops = 3 * 2 * N * (4 * C * C + E * C + K * 3 * C * F) + 3.5 * 2 * B * H * S * S * D;
  console.log(`moe_block backend=native threads=${threads} batch=${B} seq=${S} hidden=${C} experts=${E} top_k=${K} ffn=${F} ` +
    `fwd_bwd_ms=${f1(wall)} model_gflops=${f1(flops / wall / 1e6)} tokens_per_s=${Math.round(N / (wall / 1e3))} ` +
    `gemm_pct=${f1((100 * gemm) / total)} gemm_pct_of_kernels=${f1((100 * gemm) / kernelTotal)} js_overhead_pct=${f1((100 * (total - kernelTotal)) / total)}`);
  for (const [name, t] of [...ms.entries()].filter(([, t]) => t > 0).sort((a, b) => b[1] - a[1])) {
    console.log(`moe_kernel backend=native threads=${threads} kernel=${name} ms=${f1(t / runs)} pct=${f1((100 * t) / total)}`);
  }
  for (const t of [...Object.values(params), x, probe, tables.cos, tables.sin, positions]) t.dispose();
}

async function main(): Promise<void> {
  const info = nativeInfo();
  if (!info.available) {
    console.log(`native backend unavailable: ${info.reason}`);
    return;
  }
  // peak_pct is against threads x the measured one-core FMA peak: when another process shares the
  // cores, the all-threads probe shows it (lower than threads x one core) and the GEMM lines drop
  // with it instead of reporting a contended peak as 100%.
  const peaks = new Map<number, number>();
  const backends = new Map<number, NativeBackend>();
  for (const threads of THREADS) {
    const be = createNativeBackend({ threads });
    backends.set(threads, be);
    const measured = be.measureFmaPeak();
    peaks.set(threads, threads === 1 ? measured : threads * peaks.get(1)!);
    console.log(`peak backend=native isa=${be.isa} threads=${threads} fma_gflops=${f1(measured)} peak_pct_base=${f1(peaks.get(threads)!)} source=measured`);
  }
  const parts = process.argv.slice(2);
  const want = (part: string) => parts.length === 0 || parts.includes(part);
  if (want('gemm')) for (const threads of THREADS) benchGemm(backends.get(threads)!, threads, peaks.get(threads)!);
  if (want('peer')) benchTorchPeer(peaks);
  if (want('moe')) for (const threads of THREADS) moeBlock(backends.get(threads)!, threads);
  for (const be of backends.values()) await be.dispose();
}

await main();
