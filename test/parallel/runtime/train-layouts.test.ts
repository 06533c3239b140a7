/**
 * Training layouts end to end: 10 steps under data parallelism (dp = 2 and 4, plain and ZeRO-1),
 * tensor parallelism (tp = 2 with EDP experts, tp = 3 with uneven heads and ETP experts) and both
 * (tp=2 x dp=2) give one rank's losses and final weights (the same micro-batches: one rank
 * accumulating `accum` of them, or dp replicas running accum/dp each), and a run's checkpoints
 * resume across layouts as if never stopped.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createJsBackend } from '../../../src/backend/js/index.js';
import { openSafetensors } from '../../../src/io/index.js';
import { setBackend } from '../../../src/tensor/index.js';
import { type TrainLayout, parseTrainLayout, trainDataParallel } from '../../../src/train/parallel-train.js';
import { applyOverrides, DEFAULT_TRAIN, resumeRun, type RunSource, startRun } from '../../../src/train/run.js';
import type { TrainOptions } from '../../../src/train/trainer.js';

const root = mkdtempSync(join(tmpdir(), 'skymoe-dp-'));
const oldCache = process.env.SKYMOE_CACHE;
before(() => (process.env.SKYMOE_CACHE = join(root, 'cache')));
after(() => {
  rmSync(root, { recursive: true, force: true });
  if (oldCache === undefined) delete process.env.SKYMOE_CACHE;
  else process.env.SKYMOE_CACHE = oldCache;
});

// a constant schedule (after warmup) does not depend on the total steps, so a run of 5 resumed to 10 is a run of 10
const OPTIONS = (steps: number): TrainOptions => applyOverrides(DEFAULT_TRAIN, { steps, batch: 2, seq: 32, accum: 4, warmup: 3, schedule: 'constant', evalEvery: 5, evalBatches: 2, saveEvery: 5, keep: 3 });
const SOURCE: RunSource = { preset: 'tiny', corpus: [], valFraction: 0.05, modelSeed: 3 };
const quiet = { onWarn: () => {} };

async function oneRank(dir: string, steps: number, resume = false): Promise<void> {
  const be = createJsBackend();
  setBackend(be);
  const h = resume ? await resumeRun(dir, be, { steps }, quiet) : await startRun(dir, SOURCE, OPTIONS(steps), be, quiet);
  try {
    await h.trainer.run();
  } finally {
    h.trainer.dispose();
    h.trainer.model.dispose();
  }
}

async function ranks(dir: string, steps: number, layout: TrainLayout, resume = false): Promise<void> {
  const run = trainDataParallel({ runDir: dir, layout, backend: 'js', ...(resume ? { resume: { overrides: { steps } } } : { start: { source: SOURCE, options: OPTIONS(steps) } }) }, () => {}, () => {});
  const r = await run.done;
  assert.equal(r.step, steps);
}

const losses = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; ce: number; gradNorm: number });

function sameRun(dir: string, ref: string, what: string): void {
  const a = losses(dir), b = losses(ref);
  assert.deepEqual(a.map((m) => m.step), b.map((m) => m.step), `${what}: steps`);
  a.forEach((m, i) => {
    for (const k of ['loss', 'ce', 'gradNorm'] as const) assert.ok(Math.abs(m[k] - b[i]![k]) <= 1e-5 * Math.abs(b[i]![k]), `${what}: step ${m.step} ${k} ${m[k]} vs ${b[i]![k]}`);
  });
  const x = openSafetensors(join(dir, 'checkpoints', 'step-000010', 'model.safetensors'));
  const y = openSafetensors(join(ref, 'checkpoints', 'step-000010', 'model.safetensors'));
  assert.deepEqual(x.names().sort(), y.names().sort());
  // Each weight tensor to 1e-5 relative (L2 norm of the difference over the norm of the tensor).
  // Element by element is no measure after AdamW: an element whose gradient is at rounding level
  // moves by lr * m/sqrt(v), whatever the rounding, so a different order of summation (tensor
  // parallelism's partial sums) moves it differently; the tensor as a whole agrees.
  let worst = 0;
  for (const n of y.names()) {
    const u = x.readF32(n), v = y.readF32(n);
    let d = 0, r = 0;
    for (let i = 0; i < v.length; i++) {
      d += (u[i]! - v[i]!) ** 2;
      r += v[i]! ** 2;
    }
    const rel = Math.sqrt(d / r);
    worst = Math.max(worst, rel);
    assert.ok(rel <= 1e-5, `${what}: ${n} differs by ${rel.toExponential(2)} relative`);
  }
  if (process.env.SKYMOE_TEST_VERBOSE) console.log(`${what}: worst tensor relative difference ${worst.toExponential(2)}`);
  x.close();
  y.close();
}

let ref = '';
test('reference: one rank, 10 steps of 4 micro-batches', { timeout: 120_000 }, async () => {
  ref = join(root, 'one');
  await oneRank(ref, 10);
  assert.equal(losses(ref).length, 10);
});

const name = (l: TrainLayout) => `${l.tp > 1 ? `tp=${l.tp} (${l.experts}) x ` : ''}dp=${l.dp}${l.zero ? ' with ZeRO-1' : ''}`;
const LAYOUTS: TrainLayout[] = [
  { dp: 2, tp: 1, experts: 'edp', zero: false },
  { dp: 2, tp: 1, experts: 'edp', zero: true },
  { dp: 4, tp: 1, experts: 'edp', zero: true },
  { dp: 1, tp: 2, experts: 'edp', zero: false },
  { dp: 1, tp: 3, experts: 'etp', zero: false }, // heads 2+1+1
  { dp: 2, tp: 2, experts: 'edp', zero: true },
];
for (const layout of LAYOUTS)
  test(`${name(layout)}: the same losses and final weights as one rank`, { timeout: 120_000 }, async () => {
    const dir = join(root, name(layout).replace(/[^a-z0-9]+/gi, '-'));
    await ranks(dir, 10, layout);
    sameRun(dir, ref, name(layout));
  });

test('checkpoints resume across layouts: tp=2 x dp=2 (ZeRO-1) -> one rank, and one rank -> tp=3 (ETP)', { timeout: 120_000 }, async () => {
  const a = join(root, 'tp2dp2-then-one');
  await ranks(a, 5, { dp: 2, tp: 2, experts: 'edp', zero: true });
  await oneRank(a, 10, true);
  sameRun(a, ref, 'tp=2 x dp=2 then one rank');
  const b = join(root, 'one-then-tp3');
  await oneRank(b, 5);
  await ranks(b, 10, { dp: 1, tp: 3, experts: 'etp', zero: false }, true);
  sameRun(b, ref, 'one rank then tp=3');
});

test('--layout: dp and tp run; what is not run yet, unknown keys and bad values are refused by name', () => {
  assert.deepEqual(parseTrainLayout('dp=4', undefined), { dp: 4, tp: 1, experts: 'edp', zero: true });
  assert.deepEqual(parseTrainLayout('tp=1,pp=1,dp=2', 0), { dp: 2, tp: 1, experts: 'edp', zero: false });
  assert.deepEqual(parseTrainLayout('tp=2,dp=2,expert=etp,etp=2', undefined), { dp: 2, tp: 2, experts: 'etp', zero: true });
  assert.throws(() => parseTrainLayout('pp=2,dp=2', undefined), /pp=2 is not run by skymoe train yet/);
  assert.throws(() => parseTrainLayout('tp=2,expert=ep', undefined), /expert=ep .* is not run by skymoe train yet/);
  assert.throws(() => parseTrainLayout('tp=2,expert=edp,ep=4', undefined), /ep=4 does not match expert=edp with tp=2/);
  assert.throws(() => parseTrainLayout('dp=2,foo=1', undefined), /unknown key 'foo'/);
  assert.throws(() => parseTrainLayout('dp=0', undefined), /dp must be a positive integer, got '0'/);
  assert.throws(() => parseTrainLayout('dp=2', 2), /--zero must be 0 or 1/);
});

test('an --accum that does not divide over the ranks is refused before training', { timeout: 60_000 }, async () => {
  const dir = join(root, 'bad-accum');
  const run = trainDataParallel({ runDir: dir, layout: { dp: 3, tp: 1, experts: 'edp', zero: false }, backend: 'js', start: { source: SOURCE, options: OPTIONS(2) } }, () => {}, () => {});
  await assert.rejects(run.done, /--accum 4 must be a multiple of dp=3/);
});
