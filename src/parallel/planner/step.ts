/**
 * The step model: seconds per micro-batch of each pipeline stage (GEMMs at the GPU's achievable
 * rate, flash attention, memory-bound element-wise work, exposed TP / expert all-to-all / pipeline
 * transfers), the pipeline schedule over all micro-batches, the exposed data-parallel gradient
 * reduction and the optimizer step; per-GPU memory from memory.ts. Every communication time is a
 * transfer of the bytes model (traffic.ts) priced by comm.ts. One `evaluate` call is a few
 * microseconds, so the search can afford thousands of layouts.
 */
import { forwardFlops, trainFlopsPerToken, type ModelShape } from './flops.js';
import type { Cluster } from './gpus.js';
import { activationPerLayer, expertDataParallel, rankImbalance, stageMemory, stageParams, type MemoryBreakdown } from './memory.js';
import { bubbleFraction, pipelineTime, type StageModel } from './pipeline.js';
import { RECOMPUTE_MODES, type Layout, type Recompute, type TrainingSetup } from './setup.js';
import { dataParallelTraffic, layerTraffic, MEGATRON_TRAFFIC, stageRowsTraffic, stageTraffic, transferTime } from './traffic.js';

/** Flash attention reaches a lower fraction of peak than a plain GEMM (FlashAttention-2 paper: 50-73% fwd, less bwd). */
const ATTENTION_EFFICIENCY = 0.6;
/** FP8 GEMMs reach a lower fraction of their (doubled) peak, and add casts. */
const FP8_GEMM_DERATE = 0.75;

/** GEMM efficiency falls for thin matrices: d / (d + 64) of the large-GEMM figure at inner size d. */
function sizeFactor(d: number): number {
  return d / (d + 64);
}

/** Seconds of one average layer for one micro-batch on one GPU, by part (forward + backward). */
export interface LayerTime {
  gemm: number;
  attention: number;
  elementwise: number;
  /** Extra forward work of recomputation. */
  recompute: number;
  tp: number;
  a2a: number;
  total: number;
}

export function layerTime(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster, r: Recompute): LayerTime {
  const T = l.microBatch * s.seq;
  const f = forwardFlops(m, s.seq);
  const moeShare = m.moeLayers / m.layers;
  const peak = (s.precision === 'fp8' && c.gpu.fp8Tflops ? c.gpu.fp8Tflops * FP8_GEMM_DERATE : c.gpu.bf16Tflops) * 1e12;
  const eff = c.gpu.gemmEfficiency;
  const h = m.hidden;
  // dense GEMMs: attention projections (+ dense MLP), split over TP
  const denseFwd = ((f.attnProj + (1 - moeShare) * f.mlp) * T) / l.tp;
  const denseRate = peak * eff * sizeFactor(Math.min(h, (m.heads * m.headDim) / l.tp, T));
  let moeFwd = 0, moeRate = 1;
  if (m.experts) {
    const local = m.experts / l.ep;
    const pairs = ((l.etp * m.topK) / l.tp) * T * rankImbalance(s.routingImbalance, local); // routed pairs on the busiest GPU
    moeFwd = moeShare * (pairs * (f.experts / m.topK) / l.etp + (f.router * T) / l.tp);
    moeRate = peak * eff * sizeFactor(Math.min(pairs / local, m.expertFfn / l.etp, h));
  }
  const gemmFwd = denseFwd / denseRate + (moeFwd > 0 ? moeFwd / moeRate : 0);
  const attnFwd = (f.attnCore * T) / l.tp / (c.gpu.bf16Tflops * 1e12 * ATTENTION_EFFICIENCY);
  // element-wise work reads and writes the stored activations about four times (forward write, backward read, gradients)
  const ewFwd = (activationPerLayer(m, l, 'none', s.routingImbalance) * T * 4) / 3 / (c.gpu.memoryTBs * 1e12);
  const fwd = gemmFwd + attnFwd + ewFwd;
  const recompute = r === 'full' ? fwd : r === 'selective' ? ewFwd * 0.5 : 0;
  // TP seams (with sequence parallelism), expert all-to-alls; full recomputation repeats the forward ones
  let tp = 0, a2a = 0, recomputeComm = 0;
  for (const t of layerTraffic(m, s, l, MEGATRON_TRAFFIC)) {
    const sec = transferTime(c, t) * (1 - (t.kind === 'all-to-all' ? s.a2aOverlap : s.tpOverlap));
    if (t.kind === 'all-to-all') a2a += sec;
    else tp += sec;
    if (r === 'full' && t.pass === 'forward') recomputeComm += sec;
  }
  const total = 3 * fwd + recompute + recomputeComm + tp + a2a;
  return { gemm: 3 * gemmFwd, attention: 3 * attnFwd, elementwise: 3 * ewFwd, recompute: recompute + recomputeComm, tp, a2a, total };
}

/** Seconds per micro-batch a stage spends outside its layers: embedding (first), output layer and loss (last), their TP seams, pipeline transfers. */
export function stageExtra(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster, i: number): { embedding: number; head: number; tp: number; p2p: number } {
  const T = l.microBatch * s.seq;
  const hbm = c.gpu.memoryTBs * 1e12;
  const peak = c.gpu.bf16Tflops * 1e12 * c.gpu.gemmEfficiency;
  const embedding = i === 0 ? (3 * T * 2 * m.hidden) / l.tp / hbm : 0;
  // logits GEMM (forward + both backward GEMMs) and the fp32 softmax cross-entropy over the vocabulary shard
  const head = i === l.pp - 1 ? (3 * 2 * m.hidden * m.vocab * T) / l.tp / peak + (4 * 4 * m.vocab * T) / l.tp / hbm : 0;
  let tp = 0, p2p = 0;
  for (const t of [...stageTraffic(m, s, l, i, MEGATRON_TRAFFIC), ...stageRowsTraffic(m, s, l, MEGATRON_TRAFFIC)]) {
    if (t.group === 'pp') p2p += transferTime(c, t);
    else tp += transferTime(c, t) * (1 - s.tpOverlap);
  }
  return { embedding, head, tp, p2p };
}

/** The linear stage models the balancer works on. */
export function stageModels(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster): StageModel[] {
  const lt = Object.fromEntries(RECOMPUTE_MODES.map((r) => [r, layerTime(m, s, l, c, r).total])) as Record<Recompute, number>;
  return Array.from({ length: l.pp }, (_, i) => {
    const e = stageExtra(m, s, l, c, i);
    // memory is affine in the layer count for n >= 1 (buffers paid once a stage has a layer)
    const mem = (n: number, r: Recompute) => stageMemory(m, s, l, i, n, r).total;
    const memPerLayer = Object.fromEntries(RECOMPUTE_MODES.map((r) => [r, mem(2, r) - mem(1, r)])) as Record<Recompute, number>;
    const memFixed = Object.fromEntries(RECOMPUTE_MODES.map((r) => [r, mem(1, r) - memPerLayer[r]])) as Record<Recompute, number>;
    return { perLayer: lt, extra: e.embedding + e.head + e.tp + e.p2p, memFixed, memPerLayer };
  });
}

/** Data-parallel gradient reduction and parameter gather of one stage (seconds, before overlap). */
export function dataParallelTime(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster, i: number, n: number): { grads: number; params: number } {
  let grads = 0, params = 0;
  for (const t of dataParallelTraffic(m, s, l, i, n, MEGATRON_TRAFFIC)) {
    if (t.pass === 'gather') params += transferTime(c, t);
    else grads += transferTime(c, t);
  }
  return { grads, params };
}

/** Adam over this GPU's shard: about 30 bytes per parameter through HBM (fp32 master, m, v, grad read and write, bf16 copy). */
export function optimizerTime(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster, i: number, n: number): number {
  const sp = stageParams(m, l, i === 0, i === l.pp - 1);
  const dense = sp.densePerLayer * n + sp.denseFixed;
  const experts = sp.expertPerLayer * n;
  const shard = (p: number, g: number) => (s.zero >= 1 ? p / g : p);
  return ((shard(dense, l.dp) + shard(experts, expertDataParallel(l))) * 30) / (c.gpu.memoryTBs * 1e12);
}

export interface StepBreakdown {
  /** Per-stage seconds per micro-batch. */
  stageTimes: number[];
  micro: number;
  pipeline: number;
  bubble: number;
  /** Exposed data-parallel communication (slowest stage). */
  dataParallel: number;
  optimizer: number;
  step: number;
  /** Parts of the slowest stage's micro-batch time, seconds per step. */
  compute: number;
  recompute: number;
  tp: number;
  a2a: number;
  p2p: number;
}

export interface Evaluation {
  layout: Layout;
  memory: MemoryBreakdown[];
  /** Max over stages. */
  peakMemory: number;
  fits: boolean;
  time: StepBreakdown;
  tokensPerGpuSecond: number;
  /** Model FLOPs per second per GPU (Megatron's count) and over the bf16 peak. */
  tflopsPerGpu: number;
  mfu: number;
}

export function evaluate(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster): Evaluation {
  const micro = s.globalBatch / (l.dp * l.microBatch);
  const memory = l.stages.map((n, i) => stageMemory(m, s, l, i, n, l.recompute[i]!));
  const peakMemory = Math.max(...memory.map((b) => b.total));
  const lts = Object.fromEntries(RECOMPUTE_MODES.map((r) => [r, layerTime(m, s, l, c, r)])) as Record<Recompute, LayerTime>;
  const extras = l.stages.map((_, i) => stageExtra(m, s, l, c, i));
  const stageTimes = l.stages.map((n, i) => n * lts[l.recompute[i]!].total + extras[i]!.embedding + extras[i]!.head + extras[i]!.tp + extras[i]!.p2p);
  const pipeline = pipelineTime(stageTimes, micro, l.vp);
  const bubble = bubbleFraction(stageTimes, micro, l.vp) * pipeline;
  let dataParallel = 0, optimizer = 0;
  for (let i = 0; i < l.pp; i++) {
    const dpt = dataParallelTime(m, s, l, c, i, l.stages[i]!);
    // overlapped with the last micro-batch's backward (grads) and the first one's forward (params)
    const exposed = s.dpOverlap ? Math.max(0, dpt.grads - (2 / 3) * stageTimes[i]!) + Math.max(0, dpt.params - stageTimes[i]! / 3) : dpt.grads + dpt.params;
    dataParallel = Math.max(dataParallel, exposed);
    optimizer = Math.max(optimizer, optimizerTime(m, s, l, c, i, l.stages[i]!));
  }
  const step = pipeline + dataParallel + optimizer;
  const slow = stageTimes.indexOf(Math.max(...stageTimes));
  const lt = lts[l.recompute[slow]!];
  const n = l.stages[slow]!;
  const ex = extras[slow]!;
  const tokens = s.globalBatch * s.seq;
  const tokensPerGpuSecond = tokens / step / (l.tp * l.pp * l.dp);
  const flops = trainFlopsPerToken(m, s.seq, { causal: s.causalFlops }) * tokensPerGpuSecond;
  return {
    layout: l,
    memory,
    peakMemory,
    fits: peakMemory <= c.gpu.memoryBytes,
    time: {
      stageTimes,
      micro,
      pipeline,
      bubble,
      dataParallel,
      optimizer,
      step,
      compute: micro * (n * (lt.gemm + lt.attention + lt.elementwise) + ex.embedding + ex.head),
      recompute: micro * n * lt.recompute,
      tp: micro * (n * lt.tp + ex.tp),
      a2a: micro * n * lt.a2a,
      p2p: micro * ex.p2p,
    },
    tokensPerGpuSecond,
    tflopsPerGpu: flops / 1e12,
    mfu: flops / (c.gpu.bf16Tflops * 1e12),
  };
}

/** What bounds a plan: the largest loss next to pure compute, or memory when it is nearly full. */
export function boundOf(e: Evaluation, capacity: number): { bound: 'compute' | 'memory' | 'all-to-all' | 'tensor-parallel' | 'bubble' | 'data-parallel' | 'recompute'; why: string } {
  const t = e.time;
  const parts: [ReturnType<typeof boundOf>['bound'], number][] = [
    ['bubble', t.bubble],
    ['all-to-all', t.a2a],
    ['tensor-parallel', t.tp + t.p2p],
    ['data-parallel', t.dataParallel + t.optimizer],
    ['recompute', t.recompute],
  ];
  parts.sort((a, b) => b[1] - a[1]);
  const [kind, sec] = parts[0]!;
  const pct = (x: number) => `${((100 * x) / t.step).toFixed(0)}%`;
  const headroom = 1 - e.peakMemory / capacity;
  if (headroom < 0.05) return { bound: 'memory', why: `${(headroom * 100).toFixed(1)}% memory headroom; ${kind} ${pct(sec)} of the step` };
  if (sec / t.step < 0.1) return { bound: 'compute', why: `compute ${pct(t.compute)} of the step; largest loss ${kind} ${pct(sec)}` };
  return { bound: kind, why: `${kind} ${pct(sec)} of the step (compute ${pct(t.compute)})` };
}
