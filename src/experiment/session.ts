/**
 * In-process training sessions for the demo and the experiments: one corpus and tokenizer,
 * several runs that see the same data in the same order, each run a directory the report reads.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { writeJsonAtomic } from '../io/hf.js';
import type { Tokenizer } from '../io/tokenizer/index.js';
import { trainBpe } from '../io/tokenizer/index.js';
import type { SkyworkMoE } from '../model/skywork-moe.js';
import type { Corpus } from '../train/corpus.js';
import { TokenDataset, tokenizeCorpus } from '../train/data.js';
import { DEFAULT_TRAIN } from '../train/run.js';
import { type StepMetrics, Trainer, type TrainOptions } from '../train/trainer.js';

export interface Session {
  backend: Backend;
  corpus: Corpus;
  tokenizer: Tokenizer;
  tokens: Int32Array;
  outDir: string;
  seq: number;
  valFraction: number;
  log: (msg: string) => void;
}

export function newSession(backend: Backend, corpus: Corpus, vocabSize: number, outDir: string, seq: number, log: (m: string) => void): Session {
  mkdirSync(outDir, { recursive: true });
  const t0 = performance.now();
  const tokenizer = trainBpe(corpus.documents, { vocabSize });
  const { tokens } = tokenizeCorpus(corpus, tokenizer);
  log(`tokenizer: ${tokenizer.vocabSize} tokens trained on ${corpus.name} in ${((performance.now() - t0) / 1000).toFixed(1)} s; corpus = ${tokens.length} tokens`);
  return { backend, corpus, tokenizer, tokens, outDir, seq, valFraction: 0.05, log };
}

export interface RunResult {
  name: string;
  dir: string;
  steps: number;
  tokens: number;
  valLoss: number;
  valPpl: number;
  tokensPerSec: number;
  seconds: number;
  last?: StepMetrics;
}

/** Options for one run: the defaults of `skymoe train` with this session's sequence length. */
export function runOptions(s: Session, o: Partial<TrainOptions>): TrainOptions {
  return { ...DEFAULT_TRAIN, seq: s.seq, saveEvery: 0, keep: 1, ...o };
}

/**
 * Train `model` for o.steps in its own run directory; the model keeps its trained weights.
 * `dataSeed` picks the training windows: continuation runs pass a new one so that they see new
 * windows rather than replaying the ones their starting checkpoint was trained on.
 */
export async function trainRun(s: Session, name: string, model: SkyworkMoE, o: TrainOptions, label: string, dataSeed = o.seed): Promise<RunResult> {
  const dir = join(s.outDir, name);
  mkdirSync(dir, { recursive: true });
  writeJsonAtomic(join(dir, 'run.json'), { version: 1, label, source: { corpus: s.corpus.name, dataSeed }, options: o, backend: s.backend.describe(), createdAt: new Date().toISOString() });
  const data = new TokenDataset(s.tokens, o.seq, { valFraction: s.valFraction, seed: dataSeed });
  const trainer = new Trainer(model, s.tokenizer, data, o, dir, {
    onWarn: () => {},
    onStep: (m, t) => {
      if (process.stderr.isTTY) process.stderr.write(`\r  ${name}: step ${t.step}/${o.steps} loss ${m.loss.toFixed(3)} ${m.tokensPerSec.toFixed(0)} tok/s\u001b[K`);
    },
  });
  const t0 = performance.now();
  const r = await trainer.run();
  const seconds = (performance.now() - t0) / 1000;
  if (process.stderr.isTTY) process.stderr.write('\r\u001b[K');
  const v: { loss: number; ppl: number } = r.last?.valLoss !== undefined ? { loss: r.last.valLoss, ppl: r.last.valPpl ?? Math.exp(r.last.valLoss) } : trainer.evaluate();
  trainer.dispose();
  const tokens = o.steps * o.batch * o.seq * o.accum;
  const res: RunResult = { name, dir, steps: o.steps, tokens, valLoss: v.loss, valPpl: v.ppl, tokensPerSec: tokens / seconds, seconds, last: r.last };
  s.log(`  ${name}: ${o.steps} steps, ${tokens} tokens in ${seconds.toFixed(1)} s (${res.tokensPerSec.toFixed(0)} tok/s): validation loss ${res.valLoss.toFixed(4)}, perplexity ${res.valPpl.toFixed(2)}`);
  return res;
}

/** Seconds per optimizer step of a model with these options, timed over a few steps (weights restored after). */
export async function timeSteps(s: Session, model: SkyworkMoE, o: TrainOptions, steps = 3): Promise<number> {
  const saved = model.parameters().map((p) => p.toFloat32());
  const data = new TokenDataset(s.tokens, o.seq, { valFraction: s.valFraction, seed: o.seed + 1000 });
  const dir = join(s.outDir, '.timing');
  const t = new Trainer(model, s.tokenizer, data, { ...o, steps: steps + 1, evalEvery: 0 }, dir, {});
  t.trainStep(); // warm up
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) t.trainStep();
  const per = (performance.now() - t0) / 1000 / steps;
  t.dispose();
  model.parameters().forEach((p, i) => p.assign(saved[i]!));
  return per;
}

/** A fixed-width text table. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}
