/** `skymoe train`: train on text with the report's techniques; progress line, metrics, checkpoints, resume. */
import type { BackendName } from '../backend/backend.js';
import type { ControllerKind, ControllerOptions } from '../train/aux-controller.js';
import { type ParallelTrainEvent, parseTrainLayout, trainDataParallel } from '../train/parallel-train.js';
import { applyOverrides, DEFAULT_TRAIN, resumeRun, startRun, type TrainOverrides } from '../train/run.js';
import type { ScheduleKind } from '../train/schedule.js';
import type { StepMetrics, Trainer, TrainOptions } from '../train/trainer.js';
import { useBackend } from './common.js';

export interface TrainCliOptions {
  preset?: string;
  model?: string;
  corpus?: string[];
  out?: string;
  resume?: string;
  steps?: number;
  batch?: number;
  seq?: number;
  accum?: number;
  lr?: number;
  minLr?: number;
  warmup?: number;
  schedule?: ScheduleKind;
  weightDecay?: number;
  clip?: number;
  seed?: number;
  evalEvery?: number;
  evalBatches?: number;
  saveEvery?: number;
  keep?: number;
  capacityFactor?: number;
  dropless?: boolean;
  dropPolicy?: 'probability' | 'position';
  aux?: ControllerKind | 'none';
  auxLoss?: 'skywork' | 'switch';
  alpha?: number;
  xi?: number;
  alphaMax?: number;
  beta?: number;
  biasRate?: number;
  zLoss?: number;
  valFraction: number;
  backend?: BackendName;
  threads?: number;
  layout?: string;
  zero?: number;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** The options the user gave, on top of the defaults (or of the resumed run's). */
function overrides(o: TrainCliOptions): TrainOverrides {
  const r: TrainOverrides = {};
  const set = <K extends keyof TrainOverrides>(k: K, v: TrainOverrides[K] | undefined) => {
    if (v !== undefined) r[k] = v;
  };
  set('steps', o.steps);
  set('batch', o.batch);
  set('seq', o.seq);
  set('accum', o.accum);
  set('lr', o.lr);
  set('minLr', o.minLr);
  set('warmup', o.warmup);
  set('schedule', o.schedule);
  set('weightDecay', o.weightDecay);
  set('clip', o.clip);
  set('seed', o.seed);
  set('evalEvery', o.evalEvery);
  set('evalBatches', o.evalBatches);
  set('saveEvery', o.saveEvery);
  set('keep', o.keep);
  set('dropPolicy', o.dropPolicy);
  set('zLossCoef', o.zLoss);
  if (o.dropless) r.capacityFactor = null;
  else set('capacityFactor', o.capacityFactor);
  // Only the controller fields named on the command line: a resume keeps the others.
  const c: Partial<ControllerOptions> = {};
  for (const [k, v] of [['alpha', o.alpha], ['xi', o.xi], ['alphaMax', o.alphaMax], ['beta', o.beta], ['biasRate', o.biasRate]] as const) if (v !== undefined) c[k] = v;
  if (o.aux === 'none') {
    c.kind = 'fixed';
    c.alpha = 0;
    r.auxLoss = 'none';
  } else if (o.aux !== undefined) {
    c.kind = o.aux;
    r.auxLoss = o.aux === 'bias' ? 'none' : o.auxLoss ?? 'skywork';
  } else if (o.auxLoss) r.auxLoss = o.auxLoss;
  if (Object.keys(c).length) r.controller = c;
  return r;
}

export function progressLine(m: StepMetrics, t: { step: number; o: { steps: number } }, startedAt: number, startStep: number): string {
  const elapsed = (performance.now() - startedAt) / 1000;
  const rate = (t.step - startStep) / Math.max(1e-9, elapsed);
  const eta = (t.o.steps - t.step) / rate;
  const drop = m.dropRate.length ? ` | drop ${(100 * Math.max(...m.dropRate)).toFixed(1)}%` : '';
  const val = m.valLoss !== undefined ? ` | val ${m.valLoss.toFixed(3)} (ppl ${m.valPpl!.toFixed(1)})` : '';
  return `step ${t.step}/${t.o.steps} | loss ${m.loss.toFixed(4)} | ce ${m.ce.toFixed(4)}${drop} | ${m.tokensPerSec.toFixed(0)} tok/s | lr ${m.lr.toExponential(2)} | ETA ${fmtTime(eta)}${val}`;
}

export async function runTrain(o: TrainCliOptions): Promise<void> {
  if (o.resume && (o.preset || o.model || o.out)) throw new Error('train: --resume continues a run as it was; do not combine it with --preset, --model or --out');
  if (!o.resume && !o.out) throw new Error('train: give --out RUN_DIR for a new run (or --resume RUN_DIR)');
  if (o.preset && o.model) throw new Error('train: give --preset or --model, not both');
  if (o.zero !== undefined && !o.layout) throw new Error('train: --zero shards the optimizer over data-parallel ranks: give --layout dp=N with it');
  if (o.layout) return runTrainParallel(o);
  const be = await useBackend(o);
  const p = progressPrinter();
  const hooks = {
    onStep: (m: StepMetrics, t: Trainer) => p.step(m, t),
    onWarn: (msg: string) => p.line(`warning: ${msg}`),
    onCheckpoint: (dir: string) => p.line(`checkpoint ${dir}`),
  };
  const handle = o.resume
    ? await resumeRun(o.resume, be, overrides(o), hooks)
    : await startRun(o.out!, { modelDir: o.model, preset: o.model ? undefined : o.preset ?? 'tiny', corpus: o.corpus ?? [], valFraction: o.valFraction, modelSeed: o.seed ?? 0 }, applyOverrides(DEFAULT_TRAIN, overrides(o)), be, hooks);
  const t = handle.trainer;
  const runDir = o.resume ?? o.out!;
  process.stderr.write(
    `${handle.info.resumedFrom ? `resuming from ${handle.info.resumedFrom} at step ${t.step}` : 'new run'} in ${runDir}: ${t.model.config.layout} model, corpus ${handle.info.corpus} (${handle.info.tokens} tokens${handle.info.cached ? ', cached' : ''}), ${be.describe()}\n`,
  );
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\ninterrupt: finishing this step, saving a checkpoint (Ctrl-C again to quit without saving)\n');
  };
  process.on('SIGINT', onSigint);
  p.restart(t.step);
  try {
    const r = await t.run(() => interrupted);
    const v = r.last?.valLoss !== undefined ? r.last : undefined;
    process.stderr.write(`${r.stopped ? 'stopped' : 'done'} at step ${t.step}${v ? `: validation loss ${v.valLoss!.toFixed(4)}, perplexity ${v.valPpl!.toFixed(2)}` : ''}; metrics ${t.metricsPath}; resume with: skymoe train --resume ${runDir}\n`);
  } finally {
    process.off('SIGINT', onSigint);
    t.dispose();
    t.model.dispose();
    await be.dispose();
  }
}

/** Progress printing shared by the one-process and the data-parallel runs. */
function progressPrinter(): { step: (m: StepMetrics, t: { step: number; o: { steps: number } }) => void; line: (text: string) => void; restart: (step: number) => void } {
  const tty = process.stderr.isTTY;
  let startedAt = performance.now(), startStep = 0, lastPrint = -Infinity;
  return {
    step: (m, t) => {
      const line = progressLine(m, t, startedAt, startStep);
      const keepLine = m.valLoss !== undefined || t.step === t.o.steps;
      if (tty) process.stderr.write(`\r${line}\u001b[K${keepLine ? '\n' : ''}`);
      else if (keepLine || performance.now() - lastPrint > 5000) {
        process.stderr.write(`${line}\n`);
        lastPrint = performance.now();
      }
    },
    line: (text) => process.stderr.write(`${tty ? '\n' : ''}${text}\n`),
    restart: (step) => {
      startedAt = performance.now();
      startStep = step;
    },
  };
}

/** `--layout dp=N`: the same run on N worker-thread ranks (rank 0 writes; progress comes from it). */
async function runTrainParallel(o: TrainCliOptions): Promise<void> {
  const layout = parseTrainLayout(o.layout!, o.zero);
  if (o.threads !== undefined) throw new Error('train: --threads with --layout: each rank gets the cores divided by the ranks; set the total with SKYMOE_THREADS');
  const runDir = o.resume ?? o.out!;
  const p = progressPrinter();
  const onEvent = (e: ParallelTrainEvent) => {
    if (e.type === 'started') {
      p.restart(e.step);
      process.stderr.write(`${e.resumedFrom ? `resuming from ${e.resumedFrom} at step ${e.step}` : 'new run'} in ${runDir}: layout ${e.layout}, corpus ${e.corpus} (${e.tokens} tokens${e.cached ? ', cached' : ''}), ${e.backend}\n`);
    } else if (e.type === 'step') p.step(e.m, { step: e.step, o: { steps: e.steps } });
    else if (e.type === 'warn') p.line(`warning: ${e.message}`);
    else p.line(`checkpoint ${e.dir}`);
  };
  const run = trainDataParallel(
    {
      runDir,
      layout,
      backend: o.backend,
      cores: process.env.SKYMOE_THREADS ? Number(process.env.SKYMOE_THREADS) : undefined,
      ...(o.resume
        ? { resume: { overrides: overrides(o) } }
        : { start: { source: { modelDir: o.model, preset: o.model ? undefined : o.preset ?? 'tiny', corpus: o.corpus ?? [], valFraction: o.valFraction, modelSeed: o.seed ?? 0 }, options: applyOverrides(DEFAULT_TRAIN, overrides(o)) } }),
    },
    onEvent,
  );
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    run.requestStop();
    process.stderr.write('\ninterrupt: every rank finishes this step, then a checkpoint is saved (Ctrl-C again to quit without saving)\n');
  };
  process.on('SIGINT', onSigint);
  try {
    const r = await run.done;
    const v = r.last?.valLoss !== undefined ? r.last : undefined;
    process.stderr.write(`${r.stopped ? 'stopped' : 'done'} at step ${r.step}${v ? `: validation loss ${v.valLoss!.toFixed(4)}, perplexity ${v.valPpl!.toFixed(2)}` : ''}; metrics ${runDir}/metrics.jsonl; resume with: skymoe train --resume ${runDir} [--layout ...]\n`);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
