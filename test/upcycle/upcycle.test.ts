/** Upcycling keeps the dense model's function; the checkpoint round-trips; advise's boundaries; similarity. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../src/backend/index.js';
import * as T from '../../src/tensor/index.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { loadModel, saveModel } from '../../src/io/hf.js';
import { upcycle } from '../../src/upcycle/upcycle.js';
import { expertSimilarity } from '../../src/upcycle/similarity.js';
import { advise, trainFlopsPerToken } from '../../src/upcycle/advise.js';
import { assertClose } from '../helpers.js';

const ids = Int32Array.from([1, 40, 77, 300, 5, 9, 9, 120, 2, 64, 33, 500]);

test('an upcycled model at step 0 gives the dense logits; saved, it loads back in the Skywork layout', async () => {
  const be = await createBackend({ name: 'wasm', threads: 2 });
  T.setBackend(be);
  const dense = SkyworkMoE.create({ ...preset('tiny-dense'), initializerRange: 0.1 }, { seed: 5, backend: be });
  const logits = (m: SkyworkMoE) => T.noGrad(() => T.tidy(() => m.forward(T.tensor(ids, [2, 6], 'i32', be)).logits.toFloat32()));
  const want = logits(dense);
  for (const [experts, topK] of [[8, 2], [4, 1], [4, 3]] as const) {
    const moe = upcycle(dense, { experts, topK, gateInitStd: 0.5, seed: 1 });
    assert.equal(moe.config.layout, 'skywork');
    assert.equal(moe.config.numExperts, experts);
    assertClose(logits(moe), want, `upcycled ${experts}x top-${topK} vs dense`, 1e-4, 1e-5);
    assert.ok(expertSimilarity(moe).every((s) => Math.abs(s - 1) < 1e-6), 'identical experts have similarity 1');
    if (experts === 8) {
      const dir = mkdtempSync(join(tmpdir(), 'skymoe-up-'));
      saveModel(moe, dir);
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      assert.equal(cfg.architectures[0], 'SkyworkForCausalLM');
      assert.deepEqual(cfg.num_experts, [8]);
      const back = loadModel(dir, be);
      assertClose(logits(back), want, 'reloaded upcycled model', 1e-4, 1e-5);
      back.dispose();
      rmSync(dir, { recursive: true });
    }
    moe.dispose();
  }
  const noisy = upcycle(dense, { experts: 4, topK: 2, noise: 0.1, seed: 2 });
  const sim = expertSimilarity(noisy);
  assert.ok(sim.every((s) => s < 0.999 && s > 0.9), `noise lowers similarity a little: ${sim}`);
  noisy.dispose();
  assert.throws(() => upcycle(noisy, { experts: 4, topK: 2 }), /dense Llama-layout/);
  dense.dispose();
  await be.dispose();
});

test('advise: no dense checkpoint -> scratch; C_moe >= 2 C_dense -> scratch; well below -> upcycle', () => {
  const moe = preset('small');
  const dense = preset('small-dense');
  const seq = 1024;
  const perDense = trainFlopsPerToken(dense, seq);
  const perMoe = trainFlopsPerToken(moe, seq);
  const denseTokens = 1e9;
  const cDense = denseTokens * perDense;
  const at = (ratio: number) => advise({ dense: { config: dense, tokens: denseTokens }, moe, seq, budgetFlops: ratio * cDense });
  assert.equal(advise({ moe, seq, budgetTokens: 1e9 }).decision, 'scratch');
  assert.equal(at(2).decision, 'scratch');
  assert.equal(at(1.999).decision, 'upcycle');
  assert.equal(at(0.1).decision, 'upcycle');
  assert.ok(Math.abs(at(0.3).ratio! - 0.3) < 1e-12);
  // Tokens budget goes through the MoE's own cost per token.
  const byTokens = advise({ dense: { config: dense, tokens: denseTokens }, moe, seq, budgetTokens: 2e9 });
  assert.ok(Math.abs(byTokens.moeFlops - 2e9 * perMoe) / byTokens.moeFlops < 1e-12);
  const byHours = advise({ dense: { config: dense, tokens: denseTokens }, moe, seq, budgetGpuHours: { hours: 10, gpu: 'h100-sxm', mfu: 0.4 } });
  assert.ok(Math.abs(byHours.moeFlops - 10 * 3600 * 989e12 * 0.4) < 1);
  assert.throws(() => advise({ moe, seq }), /exactly one/);
});

test('the Mixtral layout cannot carry logit normalization: refused, not silently dropped', async () => {
  const be = await createBackend({ name: 'js' });
  T.setBackend(be);
  const dense = SkyworkMoE.create(preset('tiny-dense'), { seed: 1, backend: be });
  assert.throws(() => upcycle(dense, { experts: 4, topK: 2, layout: 'mixtral', logitsNorm: true }), /Mixtral layout has no field for gating logit normalization/);
  const m = upcycle(dense, { experts: 4, topK: 2, layout: 'mixtral' });
  assert.equal(m.config.logitsNorm, false);
  const sky = upcycle(dense, { experts: 4, topK: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-mx-'));
  assert.throws(() => saveModel(sky, dir, { layout: 'mixtral' }), /cannot save in the Mixtral layout/);
  for (const x of [m, sky, dense]) x.dispose();
  rmSync(dir, { recursive: true });
});
