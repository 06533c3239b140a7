/** The trainer: exact resume, learning on the default corpus, gradient accumulation, checkpoint faults. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../src/backend/index.js';
import type { Backend } from '../../src/backend/backend.js';
import * as T from '../../src/tensor/index.js';
import { DEFAULT_TRAIN, resumeRun, startRun } from '../../src/train/run.js';
import type { TrainOptions } from '../../src/train/trainer.js';

process.env.SKYMOE_CACHE = mkdtempSync(join(tmpdir(), 'skymoe-cache-'));
const src = { preset: 'tiny', corpus: [] as string[], valFraction: 0.05, modelSeed: 1 };
const quiet = { onWarn: () => {} };

async function wasm(): Promise<Backend> {
  const be = await createBackend({ name: 'wasm', threads: 2 });
  T.setBackend(be);
  return be;
}

test('a resumed run continues bit-identically', async () => {
  const be = await wasm();
  const o: TrainOptions = { ...DEFAULT_TRAIN, steps: 8, batch: 4, seq: 32, saveEvery: 0, evalEvery: 4, evalBatches: 2, warmup: 2 };
  const dirA = mkdtempSync(join(tmpdir(), 'skymoe-runA-'));
  const a = await startRun(dirA, src, o, be, quiet);
  const lossesA: number[] = [];
  await a.trainer.run();
  for (const l of readFileSync(join(dirA, 'metrics.jsonl'), 'utf8').trim().split('\n')) lossesA.push(JSON.parse(l).loss);
  a.trainer.dispose();
  a.trainer.model.dispose();

  const dirB = mkdtempSync(join(tmpdir(), 'skymoe-runB-'));
  const b = await startRun(dirB, src, o, be, quiet);
  const r = await b.trainer.run(() => b.trainer.step === 3); // like Ctrl-C after step 3
  assert.equal(r.stopped, true);
  b.trainer.dispose();
  b.trainer.model.dispose();
  // A crash after the checkpoint may leave metrics lines past it, the last one cut short; resume drops them.
  writeFileSync(join(dirB, 'metrics.jsonl'), readFileSync(join(dirB, 'metrics.jsonl'), 'utf8') + JSON.stringify({ step: 4, loss: 0 }) + '\n{"step": 5, "lo');
  const c = await resumeRun(dirB, be, {}, quiet);
  assert.equal(c.trainer.step, 3);
  await c.trainer.run();
  c.trainer.dispose();
  c.trainer.model.dispose();
  const linesB = readFileSync(join(dirB, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(linesB.map((m) => m.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(linesB.map((m) => m.loss), lossesA, 'losses after resuming equal the uninterrupted run exactly');
  const valA = readFileSync(join(dirA, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).valLoss);
  assert.deepEqual(linesB.map((m) => m.valLoss), valA);
  await be.dispose();
  rmSync(dirA, { recursive: true });
  rmSync(dirB, { recursive: true });
});

test('a tiny model learns the default corpus (validation loss falls)', async () => {
  const be = await wasm();
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-learn-'));
  const o: TrainOptions = { ...DEFAULT_TRAIN, steps: 60, batch: 8, seq: 64, evalEvery: 60, evalBatches: 4, saveEvery: 0 };
  const h = await startRun(dir, src, o, be, quiet);
  const before = h.trainer.evaluate().loss;
  const r = await h.trainer.run();
  const after = r.last!.valLoss!;
  assert.ok(before > 6, `a random tiny model starts near ln(512) = 6.24 (got ${before})`);
  assert.ok(after < before - 0.8, `validation loss ${before.toFixed(3)} -> ${after.toFixed(3)}`);
  assert.ok(existsSync(join(dir, 'checkpoints', 'latest.json')), 'checkpoint at the end');
  h.trainer.dispose();
  h.trainer.model.dispose();
  await be.dispose();
  rmSync(dir, { recursive: true });
});

test('gradient accumulation over 4 micro-batches equals one batch 4x larger', async () => {
  const be = await wasm();
  const grads = async (batch: number, accum: number) => {
    const dir = mkdtempSync(join(tmpdir(), 'skymoe-accum-'));
    const o: TrainOptions = { ...DEFAULT_TRAIN, batch, accum, seq: 32, capacityFactor: null, auxLoss: 'none', controller: { ...DEFAULT_TRAIN.controller, kind: 'fixed', alpha: 0 } };
    const h = await startRun(dir, src, o, be, quiet);
    h.trainer.accumulateGradients();
    const g = h.trainer.model.parameters().map((p) => p.grad!.toFloat32());
    h.trainer.dispose();
    h.trainer.model.dispose();
    rmSync(dir, { recursive: true });
    return g;
  };
  const one = await grads(8, 1);
  const four = await grads(2, 4);
  let worst = 0;
  one.forEach((g, i) => {
    let scale = 0;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < g.length; j++) worst = Math.max(worst, Math.abs(g[j]! - four[i]![j]!) / (scale + 1e-12));
  });
  assert.ok(worst < 1e-4, `max relative gradient difference ${worst}`);
  await be.dispose();
});

test('a corrupt checkpoint gets a clear error and the previous good one is kept', async () => {
  const be = await wasm();
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-corrupt-'));
  const o: TrainOptions = { ...DEFAULT_TRAIN, steps: 4, batch: 2, seq: 16, saveEvery: 2, evalEvery: 0, keep: 3 };
  const h = await startRun(dir, src, o, be, quiet);
  await h.trainer.run();
  h.trainer.dispose();
  h.trainer.model.dispose();
  const ck = join(dir, 'checkpoints');
  assert.deepEqual(readdirSync(ck).sort(), ['latest.json', 'step-000002', 'step-000004']);
  // Damage the newest checkpoint's weights: resume names the file; the older one is untouched.
  const weights = join(ck, 'step-000004', 'model.safetensors');
  writeFileSync(weights, readFileSync(weights).subarray(0, 100));
  await assert.rejects(resumeRun(dir, be, {}, quiet), (e: Error) => e.message.includes(weights));
  assert.ok(existsSync(join(ck, 'step-000002', 'model.safetensors')));
  // Point latest at the good one and resume from it.
  writeFileSync(join(ck, 'latest.json'), JSON.stringify({ step: 2, dir: 'step-000002' }));
  const r = await resumeRun(dir, be, {}, quiet);
  assert.equal(r.trainer.step, 2);
  r.trainer.dispose();
  r.trainer.model.dispose();
  // Resuming with one controller option keeps the run's other controller options.
  const before = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')).options.controller;
  const r2 = await resumeRun(dir, be, { controller: { beta: 0.9 } }, quiet);
  assert.deepEqual(r2.trainer.o.controller, { ...before, beta: 0.9 });
  r2.trainer.dispose();
  r2.trainer.model.dispose();
  // A mismatched run option is refused.
  await assert.rejects(resumeRun(dir, be, { batch: 3 }, quiet), /differ from the checkpointed run/);
  writeFileSync(join(ck, 'latest.json'), '{oops');
  await assert.rejects(resumeRun(dir, be, {}, quiet), (e: Error) => e.message.includes('latest.json') && /JSON/.test(e.message));
  await be.dispose();
  rmSync(dir, { recursive: true });
});
