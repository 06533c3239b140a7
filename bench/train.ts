/**
 * Training throughput and MFU of the `small` model (vocab 8192, hidden 512, 8 layers, 8 experts
 * top-2), batch 8 x 512 tokens, full optimizer steps through the product's Trainer: forward,
 * cross-entropy + the Skywork aux loss (adaptive coefficient), backward, global-norm clipping,
 * AdamW. Routing is dropless by default (`--capacity 1.25` for capacity-limited dispatch), so every
 * token runs exactly top-k experts, like the PyTorch peer. One line per figure:
 *
 *   peak backend=native isa=avx512 threads=2 gflops=... one_core_gflops=... source=measured
 *   train backend=native model=small threads=2 batch=8x512 tokens_per_s=... mfu_pct=... step_ms=... spread_pct=... cpu_share_pct=...
 *   train_profile backend=native threads=2 kernel=matmul ms=... pct=...      (one step, per kernel)
 *   train_profile backend=native threads=2 kernel=js_overhead ms=... pct=... (wall minus kernels and host I/O)
 *   train peer=pytorch model=small threads=2 batch=8x512 tokens_per_s=... ratio=...   (ratio = native / pytorch)
 *
 * MFU = model FLOPs per token x tokens/s / peak, with (docs/benchmarks.md)
 *   model FLOPs per token = 6 x N + 6 x L x T x C
 * N = active parameters without the embedding table (a lookup, not a matmul; lm_head counts),
 * i.e. the top-k experts' weights, attention, router and norms; 6 = 2 (multiply-add) x 3 (forward,
 * input gradient, weight gradient). The attention term is QK^T and PV, 2 x 2 x T x C FLOPs per
 * token per layer forward at full length, halved for causality and tripled for the backward:
 * 12 L T C / 2. Peak = threads x the measured single-core FMA throughput of the native addon
 * (independent 512-bit FMA chains), measured in the same run.
 *
 * Steps: native 2 warm-up + 5 timed, wasm and the peer 1 + 3 (slower), unless --warmup/--steps say.
 * Run: npm run bench:train [-- --threads 1,2 --backends native,wasm --steps 5 --warmup 2 --no-peer --capacity 1.25 --shapes]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { Backend, BackendName } from '../src/backend/backend.js';
import { createBackend } from '../src/backend/index.js';
import { createNativeBackend, nativeInfo } from '../src/backend/native/index.js';
import { trainBpe } from '../src/io/tokenizer/index.js';
import { countParams } from '../src/model/params.js';
import { preset } from '../src/model/presets.js';
import { SkyworkMoE } from '../src/model/skywork-moe.js';
import * as T from '../src/tensor/index.js';
import { TokenDataset } from '../src/train/data.js';
import { DEFAULT_TRAIN } from '../src/train/run.js';
import { Trainer, type TrainOptions } from '../src/train/trainer.js';

const MODEL = 'small';
const BATCH = 8;
const SEQ = 512;

interface Args {
  threads: number[];
  backends: BackendName[];
  steps: number;
  warmup: number;
  peer: boolean;
  capacity: number | null;
  shapes: boolean;
  /** --steps or --warmup given: use them for every backend and the peer. */
  explicitSteps: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { threads: [2], backends: ['native', 'wasm'], steps: 5, warmup: 2, peer: true, capacity: null, shapes: false, explicitSteps: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--threads') a.threads = value().split(',').map(Number);
    else if (flag === '--backends') a.backends = value().split(',') as BackendName[];
    else if (flag === '--steps') [a.steps, a.explicitSteps] = [Number(value()), true];
    else if (flag === '--warmup') [a.warmup, a.explicitSteps] = [Number(value()), true];
    else if (flag === '--capacity') a.capacity = Number(value());
    else if (flag === '--no-peer') a.peer = false;
    else if (flag === '--shapes') a.shapes = true;
    else throw new Error(`unknown option ${flag} (see the header of bench/train.ts)`);
  }
  return a;
}

const f1 = (x: number) => x.toFixed(1);

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** (max - min) / median of the timed steps, in percent: how noisy the machine was. */
function spreadPct(xs: number[]): number {
  return (100 * (Math.max(...xs) - Math.min(...xs))) / median(xs);
}

/** Model FLOPs per token (see the header): 6 N + 6 L T C. */
function modelFlopsPerToken(): { flops: number; params: number; attention: number } {
  const c = preset(MODEL);
  const n = countParams(c);
  const params = n.active - n.embedding;
  const attention = 6 * c.numLayers * SEQ * c.numHeads * c.headDim;
  return { flops: 6 * params + attention, params, attention };
}

/** Uniformly random tokens: the router sees no structure, which is the worst case for balance. */
function syntheticData(vocab: number): TokenDataset {
  const rng = new T.Rng(3);
  const tokens = Int32Array.from({ length: 1 << 20 }, () => rng.int(vocab));
  return new TokenDataset(tokens, SEQ, { valFraction: 0, seed: 0 });
}

type Timed = Map<string, { ms: number; calls: number }>;

/**
 * Wrap every kernel and the backend's host I/O and allocation methods with timers (restored by
 * the returned function). Kernels are synchronous on every backend, so wall time is kernel time.
 */
function instrument(be: Backend, shapes: boolean): { times: Timed; restore: () => void } {
  const times: Timed = new Map();
  const add = (name: string, ms: number) => {
    const t = times.get(name) ?? { ms: 0, calls: 0 };
    t.ms += ms;
    t.calls++;
    times.set(name, t);
  };
  const undo: (() => void)[] = [];
  const wrap = (obj: Record<string, unknown>, key: string, label: (args: unknown[]) => string) => {
    const f = obj[key] as (...args: unknown[]) => unknown;
    const had = Object.prototype.hasOwnProperty.call(obj, key);
    obj[key] = (...args: unknown[]) => {
      const t0 = performance.now();
      const r = f.apply(obj, args);
      add(label(args), performance.now() - t0);
      return r;
    };
    undo.push(() => {
      if (had) obj[key] = f;
      else delete obj[key];
    });
  };
  const kernels = be.kernels as unknown as Record<string, unknown>;
  for (const name of Object.keys(kernels)) {
    const label = shapes && name === 'matmul'
      ? (a: unknown[]) => `matmul[${a[3]}x${a[4]}x${a[5]}${a[6] ? ' tA' : ''}${a[7] ? ' tB' : ''}${(a[8] as number) > 1 ? ` b${a[8]}` : ''}${a[12] ? ' acc' : ''}]`
      : shapes && name === 'groupedMatmul'
        ? (a: unknown[]) => `groupedMatmul[mode${a[0]} ${a[5]}x${a[6]}]`
        : () => name;
    wrap(kernels, name, label);
  }
  const host = be as unknown as Record<string, unknown>;
  wrap(host, 'readF32', () => 'host_readback');
  wrap(host, 'readI32', () => 'host_readback');
  wrap(host, 'write', () => 'host_write');
  wrap(host, 'alloc', () => 'alloc_free');
  wrap(host, 'free', () => 'alloc_free');
  return { times, restore: () => undo.reverse().forEach((u) => u()) };
}

interface TrainResult {
  tokensPerSec: number;
  stepMs: number[];
}

async function benchBackend(name: BackendName, threads: number, args: Args, peak: number | null): Promise<TrainResult | null> {
  let be: Backend;
  try {
    be = await createBackend({ name, threads });
  } catch (e) {
    console.log(`train backend=${name} unavailable: ${(e as Error).message}`);
    return null;
  }
  T.setBackend(be);
  const cfg = preset(MODEL);
  const model = SkyworkMoE.create(cfg, { seed: 1, backend: be });
  const runDir = mkdtempSync(join(tmpdir(), 'skymoe-bench-train-'));
  const o: TrainOptions = { ...DEFAULT_TRAIN, batch: BATCH, seq: SEQ, accum: 1, capacityFactor: args.capacity, auxLoss: 'skywork', evalEvery: 0, saveEvery: 0 };
  const tok = trainBpe(['skymoe training benchmark'], { vocabSize: 512 }); // checkpoints only; never used here
  const trainer = new Trainer(model, tok, syntheticData(cfg.vocabSize), o, runDir);
  // wasm steps take several times longer: fewer of them unless asked.
  const [warmup, steps] = name === 'wasm' && !args.explicitSteps ? [1, 3] : [args.warmup, args.steps];
  for (let i = 0; i < warmup; i++) trainer.trainStep();
  const stepMs: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    trainer.trainStep();
    stepMs.push(performance.now() - t0);
  }
  // CPU time this process got over wall x threads: below ~95% another process took the cores
  // (kernel threads spin between jobs, so an uncontended run is close to 100%).
  const cpu = process.cpuUsage(cpu0);
  const cpuShare = (100 * (cpu.user + cpu.system) / 1e3) / (stepMs.reduce((s, x) => s + x, 0) * threads);
  const ms = median(stepMs);
  const tokensPerSec = (BATCH * SEQ) / (ms / 1e3);
  const mfuPct = peak === null ? 0 : (100 * modelFlopsPerToken().flops * tokensPerSec) / (peak * 1e9);
  // Estimate for a shared machine: MFU against the CPU time this process actually received.
  const mfu = peak === null ? '' : ` mfu_pct=${f1(mfuPct)} mfu_cpu_adj_pct=${f1((100 * mfuPct) / cpuShare)}`;
  console.log(`train backend=${name} model=${MODEL} threads=${threads} batch=${BATCH}x${SEQ} tokens_per_s=${f1(tokensPerSec)}${mfu} ` +
    `step_ms=${ms.toFixed(0)} spread_pct=${f1(spreadPct(stepMs))} cpu_share_pct=${f1(cpuShare)} routing=${args.capacity === null ? 'dropless' : `capacity${args.capacity}`}`);

  // One more step with every kernel timed: where the step goes.
  const { times, restore } = instrument(be, args.shapes);
  const t0 = performance.now();
  trainer.trainStep();
  const wall = performance.now() - t0;
  restore();
  const measured = [...times.values()].reduce((s, t) => s + t.ms, 0);
  times.set('js_overhead', { ms: wall - measured, calls: 0 });
  for (const [kernel, t] of [...times.entries()].sort((x, y) => y[1].ms - x[1].ms)) {
    if (t.ms < 0.05 * wall / 100) continue;
    console.log(`train_profile backend=${name} threads=${threads} kernel=${kernel} pct=${f1((100 * t.ms) / wall)} ms=${f1(t.ms)} calls=${t.calls}`);
  }
  trainer.dispose();
  model.dispose();
  rmSync(runDir, { recursive: true, force: true });
  await be.dispose();
  return { tokensPerSec, stepMs };
}

/** The PyTorch peer (bench/peers/train_pytorch.py); null, silently, when no python3 imports torch. */
function pytorchPeer(threads: number, args: Args): TrainResult | null {
  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);
  if (!python) return null;
  const c = preset(MODEL);
  const script = fileURLToPath(new URL('../../bench/peers/train_pytorch.py', import.meta.url));
  const env = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  const opts = { threads, batch: BATCH, seq: SEQ, vocab: c.vocabSize, hidden: c.hiddenSize, layers: c.numLayers, heads: c.numHeads,
    experts: c.numExperts, 'top-k': c.topK, ffn: c.intermediateSize,
    warmup: args.explicitSteps ? Math.max(1, args.warmup) : 1, steps: args.explicitSteps ? args.steps : 3 };
  const argv = [script, ...Object.entries(opts).flatMap(([k, v]) => [`--${k}`, String(v)]), '--eps', String(c.rmsNormEps)];
  const r = spawnSync(python, argv, { env, encoding: 'utf8', timeout: 1_800_000 });
  if (r.status !== 0 || !r.stdout) {
    console.log(`train peer=pytorch failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
    return null;
  }
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { step_s: number[] };
  const stepMs = out.step_s.map((s) => s * 1e3);
  return { tokensPerSec: (BATCH * SEQ) / (median(stepMs) / 1e3), stepMs };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const fl = modelFlopsPerToken();
  console.log(`model name=${MODEL} active_params_no_embedding=${fl.params} attention_flops_per_token=${fl.attention} model_flops_per_token=${fl.flops}`);
  // Peak: threads x the per-core FMA throughput, from the one-core probe or the all-threads probe,
  // whichever is higher (another process sharing the cores lowers one of them and would inflate MFU).
  const peaks = new Map<number, number>();
  if (nativeInfo().available) {
    const one = createNativeBackend({ threads: 1 });
    const core = one.measureFmaPeak();
    await one.dispose();
    for (const threads of args.threads) {
      const be = createNativeBackend({ threads });
      const all = threads === 1 ? core : be.measureFmaPeak();
      // Contention can only lower a probe: the larger per-core figure of the two is the peak.
      const perCore = Math.max(core, all / threads);
      peaks.set(threads, threads * perCore);
      console.log(`peak backend=native isa=${be.isa} threads=${threads} gflops=${f1(threads * perCore)} one_core_gflops=${f1(core)} all_threads_probe_gflops=${f1(all)} source=measured`);
      await be.dispose();
    }
  } else console.log('peak unavailable (the native addon is not built): mfu_pct omitted');

  for (const threads of args.threads) {
    const results = new Map<string, TrainResult>();
    for (const name of args.backends) {
      const r = await benchBackend(name, threads, args, peaks.get(threads) ?? null);
      if (r) results.set(name, r);
    }
    if (!args.peer) continue;
    const peer = pytorchPeer(threads, args);
    if (!peer) continue;
    const ours = results.get('native') ?? results.get('wasm');
    const ratio = ours ? ` ratio=${(ours.tokensPerSec / peer.tokensPerSec).toFixed(2)}` : '';
    const peak = peaks.get(threads);
    const mfu = peak === undefined ? '' : ` mfu_pct=${f1((100 * fl.flops * peer.tokensPerSec) / (peak * 1e9))}`;
    console.log(`train peer=pytorch model=${MODEL} threads=${threads} batch=${BATCH}x${SEQ} tokens_per_s=${f1(peer.tokensPerSec)}${ratio}${mfu} ` +
      `step_ms=${median(peer.stepMs).toFixed(0)} spread_pct=${f1(spreadPct(peer.stepMs))}`);
  }
}

await main();
