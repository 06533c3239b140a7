/**
 * `skymoe experiment gate-norm`: the report's figure 3 at small scale. Three MoE models trained
 * from the same init and data: no gating logit normalization, lambda 1 and lambda 2. The report
 * found every normalized run lower in training loss and token-drop rate, and larger lambda giving
 * larger Max1/Max2 and Max2/Max3 gate-probability ratios (both near 1 without normalization).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { preset } from '../model/presets.js';
import { SkyworkMoE } from '../model/skywork-moe.js';
import { loadCorpus } from '../train/corpus.js';
import { newSession, type RunResult, runOptions, table, timeSteps, trainRun } from './session.js';

export interface ExperimentOptions {
  preset: string;
  minutes: number;
  outDir: string;
  seed: number;
  corpus: string[];
  seq: number;
  batch: number;
}

/** Mean of a metric over the last quarter of a run's steps (smooths step-to-step noise). */
export function tailMean(dir: string, pick: (m: Record<string, unknown>) => number[]): number {
  const lines = readMetrics(dir);
  const tail = lines.slice(Math.floor(lines.length * 0.75));
  const vals = tail.map((m) => {
    const v = pick(m);
    return v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
  });
  return vals.reduce((a, b) => a + b, 0) / Math.max(1, vals.length);
}

function readMetrics(dir: string): Record<string, unknown>[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

export async function gateNormExperiment(backend: Backend, o: ExperimentOptions, log: (m: string) => void): Promise<{ runs: RunResult[]; table: string }> {
  const cfg = preset(o.preset);
  if (cfg.numExperts === 0) throw new Error(`gate-norm: preset '${o.preset}' is dense; use an MoE preset`);
  const s = newSession(backend, loadCorpus(o.corpus), cfg.vocabSize, o.outDir, o.seq, log);
  const base = runOptions(s, { batch: o.batch, seed: o.seed, warmup: 20, lr: 3e-3, minLr: 3e-4 });
  const variants = [
    { name: 'no-norm', label: 'no logit normalization', logitsNorm: false, gateNormStd: 1 },
    { name: 'lambda-1', label: 'logit normalization, lambda 1', logitsNorm: true, gateNormStd: 1 },
    { name: 'lambda-2', label: 'logit normalization, lambda 2', logitsNorm: true, gateNormStd: 2 },
  ];
  const probe = SkyworkMoE.create(cfg, { seed: o.seed, backend });
  const perStep = await timeSteps(s, probe, base);
  probe.dispose();
  const steps = Math.max(20, Math.floor((o.minutes * 60) / (variants.length * perStep)));
  log(`gate-norm: ${variants.length} runs of ${steps} steps on '${o.preset}' (${(steps * perStep).toFixed(0)} s each)`);
  const runs: RunResult[] = [];
  for (const v of variants) {
    const m = SkyworkMoE.create({ ...cfg, logitsNorm: v.logitsNorm, gateNormStd: v.gateNormStd }, { seed: o.seed, backend });
    runs.push(await trainRun(s, v.name, m, { ...base, steps, evalEvery: Math.max(10, Math.floor(steps / 10)) }, v.label));
    m.dispose();
  }
  const rows = runs.map((r) => [
    r.name,
    tailMean(r.dir, (m) => [m.loss as number]).toFixed(4),
    r.valLoss.toFixed(4),
    (100 * tailMean(r.dir, (m) => m.dropRate as number[])).toFixed(2) + '%',
    tailMean(r.dir, (m) => m.max1OverMax2 as number[]).toFixed(3),
    tailMean(r.dir, (m) => m.max2OverMax3 as number[]).toFixed(3),
  ]);
  return { runs, table: table(['run', 'train loss (last 25%)', 'val loss', 'drop rate', 'Max1/Max2', 'Max2/Max3'], rows) };
}
