/** One data-parallel training rank (the entry parallel-train.ts starts on every rank). */
import type { RankContext } from '../parallel/runtime/ranks.js';
import { tensorParallelOps } from '../parallel/runtime/tensor-parallel.js';
import type { ParallelTrainEvent, RankTrainData, RankTrainResult } from './parallel-train.js';
import { resumeRun, startRun } from './run.js';
import type { StepMetrics, Trainer } from './trainer.js';

export async function rankMain(ctx: RankContext<RankTrainData>): Promise<RankTrainResult> {
  const { req, stop } = ctx.data;
  // Megatron's rank order: tensor-parallel ranks adjacent (rank = dp_index * tp + tp_index)
  const tpSize = req.layout.tp, tpIndex = ctx.rank % tpSize, dpIndex = Math.floor(ctx.rank / tpSize);
  const dp = ctx.comm.group(`dp${tpIndex}`, Array.from({ length: ctx.size / tpSize }, (_, i) => i * tpSize + tpIndex));
  const world = ctx.comm.group('world', Array.from({ length: ctx.size }, (_, i) => i));
  const tpGroup = tpSize > 1 ? ctx.comm.group(`tp${dpIndex}`, Array.from({ length: tpSize }, (_, i) => dpIndex * tpSize + i)) : undefined;
  const tp = tpGroup ? { group: tpGroup, ops: tensorParallelOps(tpGroup, req.layout.experts) } : undefined;
  const parallel = { dp, world, tp, zero: req.layout.zero, writer: ctx.rank === 0 };
  const emit = (e: ParallelTrainEvent) => ctx.post(e);
  const hooks = {
    onStep: (m: StepMetrics, t: Trainer) => emit({ type: 'step', m, step: t.step, steps: t.o.steps }),
    onWarn: (message: string) => emit({ type: 'warn', message }),
    onCheckpoint: (dir: string) => emit({ type: 'checkpoint', dir }),
  };
  const handle = req.resume
    ? await resumeRun(req.runDir, ctx.backend, req.resume.overrides, hooks, parallel)
    : await startRun(req.runDir, req.start!.source, req.start!.options, ctx.backend, hooks, parallel);
  const t = handle.trainer;
  try {
    if (ctx.rank === 0) {
      const layout = `${tpSize > 1 ? `tp=${tpSize} (experts ${req.layout.experts}), ` : ''}dp=${ctx.size / tpSize}${req.layout.zero ? ' (ZeRO-1)' : ''}, ${ctx.threads} thread(s) per rank`;
      emit({ type: 'started', resumedFrom: handle.info.resumedFrom, step: t.step, steps: t.o.steps, layout, corpus: handle.info.corpus, tokens: handle.info.tokens, cached: handle.info.cached, backend: ctx.backend.describe() });
    }
    const flag = new Int32Array(stop);
    const r = await t.run(() => Atomics.load(flag, 0) !== 0);
    return { step: t.step, stopped: r.stopped, last: r.last };
  } finally {
    t.dispose();
    t.model.dispose();
  }
}
