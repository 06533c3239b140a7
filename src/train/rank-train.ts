/** One data-parallel training rank (the entry parallel-train.ts starts on every rank). */
import type { RankContext } from '../parallel/runtime/ranks.js';
import { expertParallelOps, tensorParallelOps } from '../parallel/runtime/tensor-parallel.js';
import type { ExpertParallelOps } from '../model/shard.js';
import type { Group } from '../parallel/runtime/comm.js';
import type { PipelineParallel } from '../parallel/runtime/pipeline.js';
import { pipelineStages } from '../model/skywork-moe.js';
import type { ParallelTrainEvent, RankTrainData, RankTrainResult } from './parallel-train.js';
import { resumeRun, startRun } from './run.js';
import type { StepMetrics, Trainer } from './trainer.js';

export async function rankMain(ctx: RankContext<RankTrainData>): Promise<RankTrainResult> {
  const { req, stop } = ctx.data;
  // Megatron's rank order (tp-dp-pp): tensor-parallel ranks adjacent, then data-parallel replicas,
  // then pipeline stages: rank = (pp_index * dp + dp_index) * tp + tp_index
  const tpSize = req.layout.tp, ppSize = req.layout.pp ?? 1, dpSize = ctx.size / (tpSize * ppSize);
  const tpIndex = ctx.rank % tpSize, dpIndex = Math.floor(ctx.rank / tpSize) % dpSize, ppIndex = Math.floor(ctx.rank / (tpSize * dpSize));
  const rankOf = (p: number, d: number, t: number) => (p * dpSize + d) * tpSize + t;
  const dp = ctx.comm.group(`dp${ppIndex * tpSize + tpIndex}`, Array.from({ length: dpSize }, (_, d) => rankOf(ppIndex, d, tpIndex)));
  const world = ctx.comm.group('world', Array.from({ length: ctx.size }, (_, i) => i));
  const tpGroup = tpSize > 1 ? ctx.comm.group(`tp${ppIndex * dpSize + dpIndex}`, Array.from({ length: tpSize }, (_, t) => rankOf(ppIndex, dpIndex, t))) : undefined;
  const tp = tpGroup ? { group: tpGroup, ops: tensorParallelOps(tpGroup, req.layout.experts, req.layout.sequenceParallel === true) } : undefined;
  // expert parallelism: this stage's tp x dp ranks hold the experts (tp index fastest)
  let ep: { group: Group; ops: ExpertParallelOps } | undefined;
  if (req.layout.experts === 'ep' && tpSize * dpSize > 1) {
    const group = ctx.comm.group(`ep${ppIndex}`, Array.from({ length: dpSize * tpSize }, (_, i) => rankOf(ppIndex, Math.floor(i / tpSize), i % tpSize)));
    ep = { group, ops: expertParallelOps(group, { size: tpSize, index: tpIndex }) };
  }
  let pp: PipelineParallel | undefined;
  let replica: Group | undefined;
  if (ppSize > 1) {
    const stages = req.layout.stages!, recomputeAll = req.layout.recompute;
    const line = Array.from({ length: ppSize }, (_, p) => rankOf(p, dpIndex, tpIndex));
    const label = `pp${dpIndex * tpSize + tpIndex}`;
    const group = ctx.comm.group(label, line);
    const tied = req.layout.tiedEmbeddings === true;
    pp = {
      stage: pipelineStages(stages)[ppIndex]!,
      stages,
      recomputeAll,
      recompute: recomputeAll[ppIndex]!,
      group,
      comm: ctx.comm,
      ...(ppIndex > 0 ? { prev: line[ppIndex - 1]! } : {}),
      ...(ppIndex < ppSize - 1 ? { next: line[ppIndex + 1]! } : {}),
      ...(tied && (ppIndex === 0 || ppIndex === ppSize - 1) ? { embedding: ctx.comm.group(`embedding${dpIndex * tpSize + tpIndex}`, [line[0]!, line[ppSize - 1]!]) } : {}),
      leaders: Array.from({ length: ppSize }, (_, p) => rankOf(p, 0, 0)),
      label,
    };
    replica = ctx.comm.group(`replica${dpIndex}`, Array.from({ length: ppSize * tpSize }, (_, i) => rankOf(Math.floor(i / tpSize), dpIndex, i % tpSize)));
  }
  const parallel = { dp, world, tp, pp, replica, ep, zero: req.layout.zero, writer: ctx.rank === 0 };
  const emit = (e: ParallelTrainEvent) => ctx.post(e);
  const hooks = {
    onStep: (m: StepMetrics, t: Trainer) => emit({ type: 'step', m, step: t.step, steps: t.o.steps }),
    onWarn: (message: string) => emit({ type: 'warn', message }),
    onCheckpoint: (dir: string) => emit({ type: 'checkpoint', dir }),
  };
  // setup (barriers, the tokenizer broadcast) is control traffic, not the step the planner models
  const handle = await ctx.comm.control(() =>
    req.resume ? resumeRun(req.runDir, ctx.backend, req.resume.overrides, hooks, parallel) : startRun(req.runDir, req.start!.source, req.start!.options, ctx.backend, hooks, parallel),
  );
  const t = handle.trainer;
  try {
    if (ctx.rank === 0) {
      const stages = ppSize > 1 ? `pp=${ppSize} (stages ${req.layout.stages!.join('+')}, recompute ${req.layout.recompute.join('+')}), ` : '';
      const layout = `${tpSize > 1 ? `tp=${tpSize} (experts ${req.layout.experts}${req.layout.sequenceParallel ? ', sequence parallel' : ''}), ` : ''}${ep ? `experts ep=${ep.group.size} (all-to-all), ` : ''}${stages}dp=${dpSize}${req.layout.zero ? ' (ZeRO-1)' : ''}, ${ctx.threads} thread(s) per rank`;
      emit({ type: 'started', resumedFrom: handle.info.resumedFrom, step: t.step, steps: t.o.steps, layout, corpus: handle.info.corpus, tokens: handle.info.tokens, cached: handle.info.cached, backend: ctx.backend.describe() });
    }
    const flag = new Int32Array(stop);
    const r = await t.run(() => Atomics.load(flag, 0) !== 0);
    return { step: t.step, stopped: r.stopped, last: r.last, traffic: ctx.comm.statistics(), ...(pp ? { pipeline: { ...t.pipelineStats } } : {}) };
  } finally {
    t.dispose();
    t.model.dispose();
  }
}
