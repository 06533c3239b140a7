/**
 * Training layouts end to end: 10 steps under data parallelism (dp = 2 and 4, plain and ZeRO-1),
 * tensor parallelism (tp = 2 with EDP experts, tp = 3 with uneven heads and ETP experts), pipeline
 * parallelism (even and non-uniform splits, empty stages, each recomputation mode) and their
 * combination (pp=2 x tp=2 x dp=2 on 8 ranks) give one rank's losses and final weights (the same
 * micro-batches: one rank accumulating `accum` of them, or dp replicas running accum/dp each), and
 * a run's checkpoints resume across layouts as if never stopped.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createJsBackend } from '../../../src/backend/js/index.js';
import { openSafetensors } from '../../../src/io/index.js';
import { saveModel } from '../../../src/io/hf.js';
import { preset } from '../../../src/model/presets.js';
import { SkyworkMoE } from '../../../src/model/skywork-moe.js';
import { setBackend } from '../../../src/tensor/index.js';
import { type RankTrainResult, type TrainLayout, parseTrainLayout, trainDataParallel } from '../../../src/train/parallel-train.js';
import { applyOverrides, DEFAULT_TRAIN, resumeRun, type RunSource, startRun } from '../../../src/train/run.js';
import type { TrainOptions } from '../../../src/train/trainer.js';
import { tempRoot } from '../../helpers.js';

const root = tempRoot('skymoe-dp-');

// a constant schedule (after warmup) does not depend on the total steps, so a run of 5 resumed to 10 is a run of 10
const OPTIONS = (steps: number): TrainOptions => applyOverrides(DEFAULT_TRAIN, { steps, batch: 2, seq: 32, accum: 4, warmup: 3, schedule: 'constant', evalEvery: 5, evalBatches: 2, saveEvery: 5, keep: 3 });
const SOURCE: RunSource = { preset: 'tiny', corpus: [], valFraction: 0.05, modelSeed: 3 };
const quiet = { onWarn: () => {} };

async function oneRank(dir: string, steps: number, resume = false, source = SOURCE): Promise<void> {
  const be = createJsBackend();
  setBackend(be);
  const h = resume ? await resumeRun(dir, be, { steps }, quiet) : await startRun(dir, source, OPTIONS(steps), be, quiet);
  try {
    await h.trainer.run();
  } finally {
    h.trainer.dispose();
    h.trainer.model.dispose();
  }
}

async function ranks(dir: string, steps: number, layout: TrainLayout, resume = false, source = SOURCE): Promise<RankTrainResult> {
  const run = trainDataParallel({ runDir: dir, layout, backend: 'js', ...(resume ? { resume: { overrides: { steps } } } : { start: { source, options: OPTIONS(steps) } }) }, () => {}, () => {});
  const r = await run.done;
  assert.equal(r.step, steps);
  return r;
}

const losses = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; ce: number; gradNorm: number; valLoss?: number });

function sameRun(dir: string, ref: string, what: string, steps = 10): void {
  const a = losses(dir), b = losses(ref);
  assert.deepEqual(a.map((m) => m.step), b.map((m) => m.step), `${what}: steps`);
  a.forEach((m, i) => {
    for (const k of ['loss', 'ce', 'gradNorm'] as const) assert.ok(Math.abs(m[k] - b[i]![k]) <= 1e-5 * Math.abs(b[i]![k]), `${what}: step ${m.step} ${k} ${m[k]} vs ${b[i]![k]}`);
    // evaluation runs under the layout too (through the stages, with every expert-parallel rank)
    assert.equal(m.valLoss === undefined, b[i]!.valLoss === undefined, `${what}: step ${m.step} evaluated on both or neither`);
    if (m.valLoss !== undefined) assert.ok(Math.abs(m.valLoss - b[i]!.valLoss!) <= 1e-5 * b[i]!.valLoss!, `${what}: step ${m.step} valLoss ${m.valLoss} vs ${b[i]!.valLoss}`);
  });
  const step = `step-${String(steps).padStart(6, '0')}`;
  const x = openSafetensors(join(dir, 'checkpoints', step, 'model.safetensors'));
  const y = openSafetensors(join(ref, 'checkpoints', step, 'model.safetensors'));
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

const L = (o: Partial<TrainLayout>): TrainLayout => ({ dp: 1, tp: 1, pp: 1, recompute: ['none'], experts: 'edp', zero: false, ...o });
const name = (l: TrainLayout) =>
  `${l.experts === 'ep' ? 'expert=ep ' : ''}${l.pp > 1 ? `pp=${l.pp}${l.stages ? ` (${l.stages.join('+')})` : ''}${l.recompute.some((r) => r !== 'none') ? ` recompute ${l.recompute.join('+')}` : ''} x ` : ''}${l.tp > 1 ? `tp=${l.tp} (${l.experts}${l.sequenceParallel ? ', sp' : ''}) x ` : ''}dp=${l.dp}${l.zero ? ' with ZeRO-1' : ''}`;
const LAYOUTS: TrainLayout[] = [
  L({ dp: 2 }),
  L({ dp: 2, zero: true }),
  L({ dp: 4, zero: true }),
  L({ tp: 2 }),
  L({ tp: 3, experts: 'etp' }), // heads 2+1+1
  L({ dp: 2, tp: 2, zero: true }),
  L({ pp: 2 }), // even: a layer each
  L({ pp: 2, stages: [2, 0], recompute: ['full', 'none'] }), // non-uniform: the last stage only the head
  L({ pp: 3, stages: [0, 1, 1], recompute: ['none', 'selective', 'full'] }), // the first only the embedding
  L({ pp: 2, dp: 2, recompute: ['selective'], zero: true }),
  L({ pp: 2, tp: 2, dp: 2, experts: 'edp', zero: true }), // 8 ranks
  L({ dp: 2, experts: 'ep' }), // 2 experts per rank, tokens of both replicas by all-to-all
  L({ tp: 3, experts: 'ep' }), // experts 2+1+1, each TP rank dispatching its third of the rows
  L({ tp: 2, dp: 2, experts: 'ep', zero: true }), // one expert per rank
  L({ pp: 2, dp: 2, experts: 'ep', recompute: ['full', 'none'] }),
  L({ tp: 2, sequenceParallel: true }),
  L({ tp: 3, experts: 'etp', sequenceParallel: true }), // 64 token rows as 22+21+21
  L({ tp: 2, dp: 2, experts: 'ep', sequenceParallel: true, zero: true }),
  L({ pp: 2, tp: 2, sequenceParallel: true, recompute: ['selective'] }),
];
for (const layout of LAYOUTS)
  test(`${name(layout)}: the same losses and final weights as one rank`, { timeout: 120_000 }, async () => {
    const dir = join(root, name(layout).replace(/[^a-z0-9]+/gi, '-'));
    const r = await ranks(dir, 10, layout);
    sameRun(dir, ref, name(layout));
    if (layout.experts === 'ep') {
      // the tokens really travelled: rank 0 sent rows to other ranks' experts by all-to-all
      const a2a = (r.traffic ?? []).filter((t) => t.kind === 'all-to-all' && t.group.startsWith('ep'));
      assert.ok(a2a.length > 0 && a2a.every((t) => t.bytes > 0), `all-to-all traffic on rank 0: ${JSON.stringify(r.traffic)}`);
    }
    if (layout.sequenceParallel) {
      // the activations between the blocks really were split: reduce-scatters on the tensor-parallel group
      assert.ok((r.traffic ?? []).some((t) => t.kind === 'reduce-scatter' && t.group.startsWith('tp') && t.bytes > 0), `reduce-scatter traffic on rank 0: ${JSON.stringify(r.traffic)}`);
    }
    if (layout.pp > 1) {
      // 1F1B: the first stage holds at most pp micro-batches at once (all 4 of a step would be GPipe's schedule)
      const micro = OPTIONS(10).accum / layout.dp;
      assert.equal(r.pipeline?.maxInFlight, Math.min(layout.pp, micro), 'micro-batches in flight on the first stage');
      // full recomputation runs each micro-batch's forward again in its backward; the others keep the graph
      assert.equal(r.pipeline?.recomputedForwards, layout.recompute[0] === 'full' ? 10 * micro : 0, 'forwards recomputed on the first stage');
      // selective recomputation runs each of the stage's core attentions again in its backward
      const layers = layout.stages?.[0] ?? 1;
      assert.equal(r.pipeline?.recomputedAttention, layout.recompute[0] === 'selective' ? 10 * micro * layers : 0, 'core attentions recomputed on the first stage');
    }
  });

test('checkpoints resume across layouts: tp=2 x dp=2 (ZeRO-1) -> one rank, and one rank -> tp=3 (ETP)', { timeout: 120_000 }, async () => {
  const a = join(root, 'tp2dp2-then-one');
  await ranks(a, 5, L({ dp: 2, tp: 2, experts: 'edp', zero: true }));
  await oneRank(a, 10, true);
  sameRun(a, ref, 'tp=2 x dp=2 then one rank');
  const b = join(root, 'one-then-tp3');
  await oneRank(b, 5);
  await ranks(b, 10, L({ tp: 3, experts: 'etp' }), true);
  sameRun(b, ref, 'one rank then tp=3');
});

test('checkpoints resume across pipeline layouts: pp=2 x tp=2 -> pp=3 (0+1+1), and one rank -> pp=2 (2+0)', { timeout: 120_000 }, async () => {
  const a = join(root, 'pp2tp2-then-pp3');
  await ranks(a, 5, L({ pp: 2, tp: 2 }));
  await ranks(a, 10, L({ pp: 3, stages: [0, 1, 1] }), true);
  sameRun(a, ref, 'pp=2 x tp=2 then pp=3');
  const b = join(root, 'one-then-pp2');
  await oneRank(b, 5);
  await ranks(b, 10, L({ pp: 2, stages: [2, 0], recompute: ['full'] }), true);
  sameRun(b, ref, 'one rank then pp=2');
});

test('tied embeddings over a pipeline: the first and last stage each hold the embedding and sum its gradient', { timeout: 120_000 }, async () => {
  // a model directory whose lm_head is the embedding (Qwen3's small models, Llama 3.2)
  const modelDir = join(root, 'tied-model');
  const be = createJsBackend();
  setBackend(be);
  const m = SkyworkMoE.create({ ...preset('tiny'), tieWordEmbeddings: true }, { seed: 9, backend: be });
  saveModel(m, modelDir);
  m.dispose();
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(ref, 'checkpoints', 'step-000005', f), join(modelDir, f));
  const source: RunSource = { modelDir, corpus: [], valFraction: 0.05, modelSeed: 0 };
  const one = join(root, 'tied-one'), pp = join(root, 'tied-pp2');
  await oneRank(one, 6, false, source);
  await ranks(pp, 6, L({ pp: 2 }), false, source);
  sameRun(pp, one, 'tied embeddings, pp=2', 6);
});

test('--layout: dp, tp and pp run; what is not run yet, unknown keys and bad values are refused by name', () => {
  assert.deepEqual(parseTrainLayout('dp=4', undefined), L({ dp: 4, zero: true }));
  assert.deepEqual(parseTrainLayout('tp=1,pp=1,dp=2', 0), L({ dp: 2 }));
  assert.deepEqual(parseTrainLayout('tp=2,dp=2,expert=etp,etp=2', undefined), L({ dp: 2, tp: 2, experts: 'etp', zero: true }));
  assert.deepEqual(parseTrainLayout('pp=2,stages=3+1,recompute=full+none', 0), L({ pp: 2, stages: [3, 1], recompute: ['full', 'none'] }));
  assert.deepEqual(parseTrainLayout('pp=3,recompute=selective', 0), L({ pp: 3, recompute: ['selective'] }));
  assert.deepEqual(parseTrainLayout('tp=2,sp=1', 0), L({ tp: 2, sequenceParallel: true }));
  assert.throws(() => parseTrainLayout('sp=1,dp=2', undefined), /sp=1 .* needs tp > 1/);
  assert.throws(() => parseTrainLayout('tp=2,sp=yes', undefined), /sp must be 0 or 1/);
  assert.throws(() => parseTrainLayout('pp=2,vp=2', undefined), /vp=2 .* is not run by skymoe train yet/);
  assert.throws(() => parseTrainLayout('pp=2,stages=3+1+1', undefined), /stages 3\+1\+1 has 3 entries for pp=2/);
  assert.throws(() => parseTrainLayout('pp=2,stages=3+x', undefined), /stages must be non-negative integers/);
  assert.throws(() => parseTrainLayout('pp=3,recompute=full+none', undefined), /recompute full\+none has 2 entries for pp=3/);
  assert.throws(() => parseTrainLayout('pp=2,recompute=some', undefined), /recompute must be none, selective or full/);
  assert.deepEqual(parseTrainLayout('tp=2,dp=2,expert=ep,ep=4', 0), L({ tp: 2, dp: 2, experts: 'ep' }));
  assert.throws(() => parseTrainLayout('tp=2,dp=2,expert=ep,ep=2', undefined), /ep=2 does not match expert=ep with tp=2, dp=2 \(ep is tp x dp = 4\)/);
  assert.throws(() => parseTrainLayout('tp=2,expert=edp,ep=4', undefined), /ep=4 does not match expert=edp with tp=2/);
  assert.throws(() => parseTrainLayout('tp=2,expert=moe', undefined), /expert must be edp, etp or ep/);
  assert.throws(() => parseTrainLayout('dp=2,foo=1', undefined), /unknown key 'foo'/);
  assert.throws(() => parseTrainLayout('dp=0', undefined), /dp must be a positive integer, got '0'/);
  assert.throws(() => parseTrainLayout('dp=2', 2), /--zero must be 0 or 1/);
});

test('an --accum that does not divide over the ranks is refused before training', { timeout: 60_000 }, async () => {
  const dir = join(root, 'bad-accum');
  const run = trainDataParallel({ runDir: dir, layout: L({ dp: 3 }), backend: 'js', start: { source: SOURCE, options: OPTIONS(2) } }, () => {}, () => {});
  await assert.rejects(run.done, /--accum 4 must be a multiple of dp=3/);
});

test('a split that is not the model\'s layers is refused before any rank starts, naming it', () => {
  const start = { source: SOURCE, options: OPTIONS(2) };
  assert.throws(() => trainDataParallel({ runDir: join(root, 'bad-stages'), layout: L({ pp: 2, stages: [2, 1] }), backend: 'js', start }, () => {}), /stages 2\+1 sum to 3, but the model has 2 layers/);
  assert.throws(() => trainDataParallel({ runDir: join(root, 'bad-pp'), layout: L({ pp: 3 }), backend: 'js', start }, () => {}), /pp=3 stages for a model of 2 layers/);
});
