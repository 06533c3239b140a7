/**
 * The main job (`npm start` = `skymoe demo`): on the built-in corpus, train a dense `demo` model,
 * upcycle it into 8 experts top-2 with gating logit normalization and the adaptive aux loss, and
 * continue; for the same extra tokens continue the dense model and train an MoE from scratch;
 * compare, report, and sample from the best.
 */
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { saveModel } from '../io/hf.js';
import { saveTokenizer } from '../io/tokenizer/index.js';
import { generateTokens } from '../infer/generate.js';
import { preset } from '../model/presets.js';
import { SkyworkMoE } from '../model/skywork-moe.js';
import { defaultCorpus } from '../train/corpus.js';
import { DEFAULT_CONTROLLER } from '../train/aux-controller.js';
import { upcycle } from '../upcycle/upcycle.js';
import { newSession, type RunResult, runOptions, type Session, table, timeSteps, trainRun } from './session.js';

export interface DemoOptions {
  /** Wall-clock budget for the training phases (the tokenizer and report come on top). */
  minutes: number;
  outDir: string;
  seed: number;
  /** Build the HTML report (set false in quick tests). */
  report: boolean;
}

export interface DemoResult {
  runs: RunResult[];
  table: string;
  reportPath?: string;
  best: string;
  samples: string[];
}

function sample(s: Session, model: SkyworkMoE, prompt: string, seed: number): string {
  const ids = s.tokenizer.encodePrompt(prompt);
  const stream = s.tokenizer.decodeStream();
  let text = prompt;
  for (const t of generateTokens(model, ids, { maxTokens: 40, temperature: 0.8, topP: 0.95, seed, knownVocab: s.tokenizer.vocabSize })) text += stream.push(t.id);
  return (text + stream.end()).replace(/\s+/g, ' ').trim();
}

export async function runDemo(backend: Backend, o: DemoOptions, log: (m: string) => void = (m) => process.stderr.write(`${m}\n`)): Promise<DemoResult> {
  const denseCfg = preset('demo-dense');
  const seq = 128;
  const s = newSession(backend, defaultCorpus(), denseCfg.vocabSize, o.outDir, seq, log);
  const base = runOptions(s, { batch: 16, seed: o.seed, evalBatches: 16 });
  const budget = o.minutes * 60;

  // Plan the steps from measured step times: phase 1 (dense) gets 30% of the budget, phase 2
  // runs three models for the same number of tokens in the rest.
  const dense = SkyworkMoE.create(denseCfg, { seed: o.seed, backend });
  const scratch = SkyworkMoE.create({ ...preset('demo'), logitsNorm: true }, { seed: o.seed + 1, backend });
  const tDense = await timeSteps(s, dense, base);
  const tMoe = await timeSteps(s, scratch, base);
  const steps1 = Math.max(20, Math.floor((0.3 * budget) / tDense));
  const steps2 = Math.max(20, Math.floor((0.7 * budget) / (tDense + 2 * tMoe)));
  const stepTokens = base.batch * seq;
  log(`plan: dense ${(1 / tDense) * stepTokens | 0} tok/s, MoE ${(1 / tMoe) * stepTokens | 0} tok/s on ${backend.describe()}; phase 1: ${steps1} steps (${steps1 * stepTokens} tokens); phase 2: ${steps2} steps (${steps2 * stepTokens} tokens) per run`);
  const evalEvery = Math.max(10, Math.floor(steps2 / 8));

  log('phase 1: dense pre-training');
  const p1 = await trainRun(s, 'dense-pretrain', dense, { ...base, steps: steps1, lr: 3e-3, minLr: 1e-3, warmup: 20, evalEvery: Math.max(10, Math.floor(steps1 / 8)) }, 'dense (phase 1)');
  const denseDir = join(o.outDir, 'dense-pretrain', 'model');
  saveModel(dense, denseDir);
  await saveTokenizer(denseDir, s.tokenizer, { modelMaxLength: denseCfg.maxPositions });

  log('phase 2: the same extra tokens for three models (new windows, the same for all three)');
  const cont = { ...base, steps: steps2, warmup: 0, lr: 1e-3, minLr: 1e-4, evalEvery };
  // 1% noise on each expert copy breaks the experts' symmetry so they specialize sooner (report
  // section 3.2: the most similar upcycled run was the worst); it moves step-0 logits negligibly.
  const up = upcycle(dense, { experts: 8, topK: 2, logitsNorm: true, gateNormStd: 1, seed: o.seed, noise: 0.01 });
  const rUp = await trainRun(s, 'moe-upcycled', up, { ...cont, controller: { ...DEFAULT_CONTROLLER } }, 'MoE upcycled (8x top-2, logit norm, adaptive aux)', o.seed + 1);
  const rDense = await trainRun(s, 'dense-continued', dense, cont, 'dense continued', o.seed + 1);
  const rScratch = await trainRun(s, 'moe-scratch', scratch, { ...base, steps: steps2, warmup: 20, lr: 3e-3, minLr: 3e-4, evalEvery, controller: { ...DEFAULT_CONTROLLER } }, 'MoE from scratch', o.seed + 1);

  const runs = [p1, rUp, rDense, rScratch];
  const rows = [
    ['dense (phase 1)', p1],
    ['MoE upcycled from dense', rUp],
    ['dense continued', rDense],
    ['MoE from scratch', rScratch],
  ].map(([label, r]) => {
    const x = r as RunResult;
    return [label as string, String(x.tokens), x.valLoss.toFixed(4), x.valPpl.toFixed(2), x.tokensPerSec.toFixed(0)];
  });
  const tbl = table(['run', 'tokens', 'val loss', 'val ppl', 'tokens/s'], rows);
  const candidates: [string, RunResult, SkyworkMoE][] = [
    ['moe-upcycled', rUp, up],
    ['dense-continued', rDense, dense],
    ['moe-scratch', rScratch, scratch],
  ];
  const [bestName, , bestModel] = candidates.reduce((a, b) => (b[1].valLoss < a[1].valLoss ? b : a));
  const bestDir = join(o.outDir, 'best-model');
  saveModel(bestModel, bestDir);
  await saveTokenizer(bestDir, s.tokenizer, { modelMaxLength: bestModel.config.maxPositions });
  const samples = ['Call me Ishmael', 'The whale', 'Captain Ahab said'].map((p, i) => sample(s, bestModel, p, o.seed + i));
  let reportPath: string | undefined;
  if (o.report) {
    const { buildReport } = await import('../report/index.js');
    const r = await buildReport(runs.map((x) => x.dir), { outDir: join(o.outDir, 'report'), title: 'skymoe demo: upcycling vs dense vs scratch' });
    reportPath = r.html;
  }
  for (const m of [dense, up, scratch]) m.dispose();
  return { runs, table: tbl, reportPath, best: bestName, samples };
}
