/**
 * `skymoe experiment upcycle-vs-scratch`: the report's section 3.2 at small scale. A dense model
 * is trained with checkpoints early (1/3) and late (end); then, at a small and a large MoE budget,
 * four MoE runs with the report's learning rates: from scratch (peak 3e-3), upcycled from the
 * early checkpoint (peak 1.8e-3), upcycled from the late one with a constant 3e-4, and with peak
 * 1.2e-3; cosine decays go to 3e-4. The report found scratch ~ upcycled at the small budget and
 * scratch ahead at the large one, and the most expert-similar upcycled run the worst.
 */
import type { Backend } from '../backend/backend.js';
import { denseTwin, preset } from '../model/presets.js';
import { SkyworkMoE } from '../model/skywork-moe.js';
import { loadCorpus } from '../train/corpus.js';
import { upcycle } from '../upcycle/upcycle.js';
import type { ExperimentOptions } from './gate-norm.js';
import { newSession, type RunResult, runOptions, table, timeSteps, trainRun } from './session.js';

export async function upcycleVsScratchExperiment(backend: Backend, o: ExperimentOptions, log: (m: string) => void): Promise<{ runs: RunResult[]; table: string }> {
  const moeCfg = preset(o.preset);
  if (moeCfg.numExperts === 0) throw new Error(`upcycle-vs-scratch: preset '${o.preset}' is dense; use an MoE preset (its dense twin is trained first)`);
  const denseCfg = denseTwin(moeCfg);
  const s = newSession(backend, loadCorpus(o.corpus), moeCfg.vocabSize, o.outDir, o.seq, log);
  const base = runOptions(s, { batch: o.batch, seed: o.seed });
  const dense = SkyworkMoE.create(denseCfg, { seed: o.seed, backend });
  const probe = SkyworkMoE.create(moeCfg, { seed: o.seed, backend });
  const tDense = await timeSteps(s, dense, base);
  const tMoe = await timeSteps(s, probe, base);
  probe.dispose();
  // Budget: dense D steps; MoE runs of B (small) and 3B (large) steps, 4 runs each: D*tDense + 16 B tMoe = total.
  const total = o.minutes * 60;
  const B = Math.max(10, Math.floor((0.6 * total) / (16 * tMoe)));
  const D = Math.max(30, Math.floor((0.4 * total) / tDense));
  const early = Math.floor(D / 3);
  log(`upcycle-vs-scratch: dense ${D} steps (early checkpoint at ${early}); MoE budgets ${B} and ${3 * B} steps`);
  const dOpts = { ...base, lr: 3e-3, minLr: 3e-4, warmup: 20, evalEvery: Math.max(10, Math.floor(D / 10)) };
  await trainRun(s, 'dense-early', dense, { ...dOpts, steps: early }, `dense, ${early} steps`);
  const earlyCk = dense.parameters().map((p) => p.toFloat32());
  // Continue the same dense run to D steps: a fresh schedule over the remaining steps.
  await trainRun(s, 'dense-late', dense, { ...dOpts, steps: D - early, warmup: 0 }, `dense, ${D} steps`, o.seed + 1);
  const lateCk = dense.parameters().map((p) => p.toFloat32());
  const denseAt = (ck: Float32Array[]) => {
    dense.parameters().forEach((p, i) => p.assign(ck[i]!));
    return dense;
  };
  const runs: RunResult[] = [];
  for (const [budget, steps] of [['small', B], ['large', 3 * B]] as const) {
    const ev = Math.max(10, Math.floor(steps / 8));
    const mk = (lr: number, minLr: number, warmup: number, schedule: 'cosine' | 'constant') => ({ ...base, steps, lr, minLr, warmup, schedule, evalEvery: ev });
    const scratch = SkyworkMoE.create(moeCfg, { seed: o.seed + 7, backend });
    runs.push(await trainRun(s, `${budget}-scratch`, scratch, mk(3e-3, 3e-4, 20, 'cosine'), `${budget} budget: scratch, peak 3e-3`, o.seed + 2));
    scratch.dispose();
    for (const [name, ck, lr, schedule, label] of [
      ['upcycle-early', earlyCk, 1.8e-3, 'cosine', 'upcycled from early dense, peak 1.8e-3'],
      ['upcycle-late-const', lateCk, 3e-4, 'constant', 'upcycled from late dense, constant 3e-4'],
      ['upcycle-late', lateCk, 1.2e-3, 'cosine', 'upcycled from late dense, peak 1.2e-3'],
    ] as const) {
      const m = upcycle(denseAt(ck), { experts: moeCfg.numExperts, topK: moeCfg.topK, seed: o.seed });
      runs.push(await trainRun(s, `${budget}-${name}`, m, mk(lr, 3e-4, schedule === 'constant' ? 0 : 10, schedule), `${budget} budget: ${label}`, o.seed + 2));
      m.dispose();
    }
  }
  dense.dispose();
  const rows = runs.map((r) => [r.name, String(r.steps), r.valLoss.toFixed(4), r.valPpl.toFixed(2), r.last?.expertSimilarity ? (r.last.expertSimilarity.reduce((a, b) => a + b, 0) / r.last.expertSimilarity.length).toFixed(4) : '-']);
  return { runs, table: table(['run', 'steps', 'val loss', 'val ppl', 'expert sim.'], rows) };
}
