/**
 * A training run on disk: RUN/run.json (the options and where the model and data came from),
 * RUN/metrics.jsonl, RUN/checkpoints/. `startRun` begins one, `resumeRun` continues one.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { processAlive, withPath, writeFully } from '../io/atomic.js';
import { join, resolve } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { checkTokenizerFitsModel, loadModel, writeJsonAtomic } from '../io/hf.js';
import { type Tokenizer, loadTokenizer, trainBpe } from '../io/tokenizer/index.js';
import { configToHF, type ModelConfig } from '../model/config.js';
import { preset } from '../model/presets.js';
import { SkyworkMoE } from '../model/skywork-moe.js';
import { type ControllerOptions, DEFAULT_CONTROLLER } from './aux-controller.js';
import { loadCheckpoint, loadOptimizer } from './checkpoint.js';
import { loadCorpus } from './corpus.js';
import { TokenDataset, tokenizeCorpus } from './data.js';
import { tokenizerConfigJson, tokenizerFromJson, tokenizerToJson } from '../io/tokenizer/hf-json.js';
import { sliceModel, sliceOptimizer } from '../parallel/runtime/tensor-parallel.js';
import { AdamW } from './optimizer.js';
import { Trainer, type TrainerHooks, type TrainerParallel, type TrainOptions } from './trainer.js';

/**
 * Defaults. Capacity factor 1.25 and initial alpha = alpha_max = 0.01: the report gives neither
 * (SPEC section 3); 1.25 is the usual Switch/GShard-era choice and leaves a measurable drop
 * rate for the adaptive coefficient to react to, and starting at alpha_max balances a fresh
 * (or freshly upcycled) router hardest when it is most skewed, then the EMA (beta 0.99) relaxes it.
 */
export const DEFAULT_TRAIN: TrainOptions = {
  steps: 200,
  batch: 8,
  seq: 128,
  accum: 1,
  lr: 3e-3,
  minLr: 3e-4,
  warmup: 20,
  schedule: 'cosine',
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  clip: 1.0,
  seed: 0,
  evalEvery: 50,
  evalBatches: 8,
  saveEvery: 100,
  keep: 2,
  capacityFactor: 1.25,
  dropPolicy: 'probability',
  auxLoss: 'skywork',
  zLossCoef: 0,
  controller: DEFAULT_CONTROLLER,
  deadExpertSteps: 50,
  dropWarnRate: 0.2,
  dropWarnSteps: 50,
};

export interface RunSource {
  /** A model directory to start from, or a preset for random init. */
  modelDir?: string;
  preset?: string;
  /** Corpus files/folders ([] = Moby Dick). */
  corpus: string[];
  valFraction: number;
  modelSeed: number;
}

export interface RunHandle {
  trainer: Trainer;
  info: { corpus: string; corpusBytes: number; tokens: number; cached: boolean; resumedFrom?: string };
}

function log(msg: string) {
  process.stderr.write(`${msg}\n`);
}

async function prepareData(src: RunSource, tok: Tokenizer, o: TrainOptions) {
  const corpus = loadCorpus(src.corpus);
  const t = tokenizeCorpus(corpus, tok);
  const data = new TokenDataset(t.tokens, o.seq, { valFraction: src.valFraction, seed: o.seed });
  return { corpus, t, data };
}

/**
 * Take the run directory for this process: RUN/.lock holds the owner's pid, created exclusively.
 * Another live process's lock is an error naming it (two trainers in one directory would delete
 * each other's temp files); a dead process's lock (killed) is taken over. Released at exit.
 */
export function lockRun(runDir: string): void {
  mkdirSync(runDir, { recursive: true });
  const path = join(runDir, '.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number | undefined;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (fd !== undefined) {
      try {
        writeFully(fd, new TextEncoder().encode(`${process.pid}\n`));
      } catch (e) {
        // A full disk: no empty lock file left behind, and the error names it.
        closeSync(fd);
        unlinkSync(path);
        throw withPath(e, path);
      }
      closeSync(fd);
      process.once('exit', () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // Already gone.
        }
      });
      return;
    }
    const owner = Number(readFileSync(path, 'utf8').trim());
    if (owner === process.pid) return;
    if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) throw new Error(`${runDir} is in use by process ${owner} (another skymoe train); wait for it or remove ${path} if that process is not skymoe`);
    unlinkSync(path); // its owner died: take it over
  }
  throw new Error(`${path}: could not be created`);
}

/** Start a new run in runDir. */
/**
 * Start a new run in runDir. With data parallelism every rank calls it: the writer rank locks the
 * directory and writes run.json, trains the tokenizer of a preset run and hands it to the others,
 * and tokenizes the corpus first (the others then read the token cache).
 */
export async function startRun(runDir: string, src: RunSource, o: TrainOptions, backend: Backend, hooks: TrainerHooks = {}, parallel?: TrainerParallel): Promise<RunHandle> {
  const writer = parallel?.writer ?? true;
  if (writer) {
    if (existsSync(join(runDir, 'checkpoints', 'latest.json'))) throw new Error(`${runDir} already holds a run with checkpoints: use --resume ${runDir}, or another --out`);
    lockRun(runDir);
    // A run killed before its first checkpoint left metrics that a new run must not append to;
    // they are kept aside, not deleted.
    const metrics = join(runDir, 'metrics.jsonl');
    if (existsSync(metrics)) renameSync(metrics, join(runDir, `metrics.jsonl.before-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  }
  if (parallel) parallel.world.barrier(); // the others start once the writer holds the directory
  let model: SkyworkMoE;
  let tok!: Tokenizer;
  if (src.modelDir) {
    model = loadModel(src.modelDir, backend);
    if (parallel?.tp || parallel?.pp || parallel?.ep) {
      const whole = model;
      model = sliceModel(whole, parallel.tp?.ops, parallel.pp?.stage, parallel.ep?.ops); // this rank's slices of the starting model
      whole.dispose();
    }
    tok = await loadTokenizer(src.modelDir);
  } else {
    const cfg: ModelConfig = preset(src.preset ?? 'tiny');
    if (writer) {
      const corpus = loadCorpus(src.corpus);
      log(`training a ${cfg.vocabSize}-token tokenizer on ${corpus.name}...`);
      tok = trainBpe(corpus.documents, { vocabSize: cfg.vocabSize });
    }
    if (parallel) {
      const json = parallel.world.broadcastJson(writer ? { tokenizer: tokenizerToJson(tok!), config: tokenizerConfigJson(tok!) } : undefined);
      if (!writer) tok = tokenizerFromJson(json.tokenizer, 'tokenizer.json (from the writer rank)', json.config);
    }
    model = SkyworkMoE.create(cfg, { seed: src.modelSeed, backend, tp: parallel?.tp?.ops, stage: parallel?.pp?.stage, ep: parallel?.ep?.ops });
  }
  checkTokenizerFitsModel(tok, model.config, src.modelDir ?? runDir);
  // Paths recorded absolute, so that --resume works from any directory.
  const source: RunSource = { ...src, corpus: src.corpus.map((p) => resolve(p)), ...(src.modelDir ? { modelDir: resolve(src.modelDir) } : {}) };
  const { corpus, t, data } = await prepareTogether(parallel, () => prepareData(source, tok, o));
  if (writer) {
    mkdirSync(runDir, { recursive: true });
    writeJsonAtomic(join(runDir, 'run.json'), { version: 1, source, options: o, backend: backend.describe(), createdAt: new Date().toISOString(), corpusHash: corpus.hash, config: configToHF(model.config), ...(parallel ? { parallel: { dp: parallel.dp.size, tp: parallel.tp?.group.size ?? 1, experts: parallel.ep ? 'ep' : parallel.tp?.ops.shard.experts, zero: parallel.zero, ...(parallel.pp ? { pp: parallel.pp.group.size, stages: parallel.pp.stages, recompute: parallel.pp.recomputeAll } : {}) } } : {}) });
  }
  const trainer = new Trainer(model, tok, data, o, runDir, hooks, parallel);
  return { trainer, info: { corpus: corpus.name, corpusBytes: corpus.bytes, tokens: t.tokens.length, cached: t.cached } };
}

/** Options given on top of defaults or of a run's saved options; the controller is patched field by field. */
export type TrainOverrides = Omit<Partial<TrainOptions>, 'controller'> & { controller?: Partial<ControllerOptions> };

/** Merge overrides into base options (controller fields one by one, so unnamed ones keep their values). */
export function applyOverrides(base: TrainOptions, ov: TrainOverrides): TrainOptions {
  const { controller, ...rest } = ov;
  return { ...base, ...rest, controller: { ...base.controller, ...controller } };
}

/**
 * The checkpoint's config against the one the run started with: a field that changes the
 * computation (rope_theta, num_experts_per_tok, moe_use_logits_norm, ...) edited in between is
 * refused, naming it.
 */
function checkSameModel(runPath: string, started: Record<string, unknown> | undefined, now: ModelConfig, ckDir: string): void {
  if (started === undefined) return; // a run from before configs were recorded
  const cur = configToHF(now);
  const changed = [...new Set([...Object.keys(started), ...Object.keys(cur)])].filter((k) => JSON.stringify(started[k]) !== JSON.stringify(cur[k]));
  if (changed.length > 0) {
    const what = changed.map((k) => `${k} ${JSON.stringify(started[k])} -> ${JSON.stringify(cur[k])}`).join(', ');
    throw new Error(`${join(ckDir, 'config.json')}: differs from the config the run started with (${runPath}): ${what}; resuming would train another model`);
  }
}

/** Continue the run in runDir from its latest checkpoint; `overrides` may extend steps etc. */
/** The writer prepares the data first (filling the token cache), then the other ranks. */
async function prepareTogether<R>(parallel: TrainerParallel | undefined, prepare: () => Promise<R>): Promise<R> {
  if (!parallel) return prepare();
  let r: R | undefined;
  if (parallel.writer) r = await prepare();
  parallel.world.barrier();
  if (!parallel.writer) r = await prepare();
  return r!;
}

/** Continue the run in runDir from its latest checkpoint; `overrides` may extend steps etc. With data parallelism every rank calls it (the writer locks and rewrites run.json). */
export async function resumeRun(runDir: string, backend: Backend, overrides: TrainOverrides = {}, hooks: TrainerHooks = {}, parallel?: TrainerParallel): Promise<RunHandle> {
  const writer = parallel?.writer ?? true;
  const runPath = join(runDir, 'run.json');
  if (!existsSync(runPath)) throw new Error(`${runPath}: not found (is ${runDir} a training run?)`);
  let run: { source: RunSource; options: TrainOptions; corpusHash?: string; config?: Record<string, unknown> };
  try {
    run = JSON.parse(readFileSync(runPath, 'utf8'));
  } catch (e) {
    throw new Error(`${runPath}: not valid JSON (${(e as Error).message})`);
  }
  const o = applyOverrides(run.options, overrides);
  if (writer) lockRun(runDir);
  if (parallel) parallel.world.barrier();
  const ck = await loadCheckpoint(runDir, backend);
  let prepared: Awaited<ReturnType<typeof prepareData>>;
  try {
    checkSameModel(runPath, run.config, ck.model.config, ck.dir);
    prepared = await prepareTogether(parallel, () => prepareData(run.source, ck.tokenizer, o));
    if (run.corpusHash !== undefined && prepared.corpus.hash !== run.corpusHash) {
      throw new Error(`${runPath}: the corpus (${prepared.corpus.name}) changed since the run started (sha256 ${run.corpusHash.slice(0, 12)}..., now ${prepared.corpus.hash.slice(0, 12)}...): resuming would not continue the same run; start a new one (--out) on the new data`);
    }
  } catch (e) {
    ck.model.dispose();
    throw e;
  }
  const { corpus, t, data } = prepared;
  // under tensor or pipeline parallelism the checkpoint (always whole) is cut into this rank's slices
  const tp = parallel?.tp, pp = parallel?.pp, ep = parallel?.ep;
  const cut = tp !== undefined || pp !== undefined || ep !== undefined;
  const model = cut ? sliceModel(ck.model, tp?.ops, pp?.stage, ep?.ops) : ck.model;
  const trainer = new Trainer(model, ck.tokenizer, data, o, runDir, hooks, parallel);
  try {
    trainer.loadOptimizerState((opt) => {
      if (!cut) return loadOptimizer(ck.dir, opt);
      const whole = new AdamW(ck.model.parameters(), opt.opts);
      try {
        loadOptimizer(ck.dir, whole);
        sliceOptimizer(whole, opt, model);
      } finally {
        whole.dispose();
      }
    });
    trainer.restore(ck.state);
  } catch (e) {
    trainer.dispose();
    model.dispose();
    if (cut) ck.model.dispose();
    throw e;
  }
  if (cut) ck.model.dispose();
  if (writer && Object.keys(overrides).length) writeJsonAtomic(runPath, { ...run, options: o });
  return { trainer, info: { corpus: corpus.name, corpusBytes: corpus.bytes, tokens: t.tokens.length, cached: t.cached, resumedFrom: ck.dir } };
}
