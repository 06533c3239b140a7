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
import { assertClose, assertCloseToScale } from '../helpers.js';
import { moeForward, DROPLESS } from '../../src/model/moe.js';
import { openCheckpoint } from '../../src/io/sharded.js';
import { tinyLayouts } from '../model/tiny-layouts.js';

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
  assert.throws(() => upcycle(noisy, { experts: 4, topK: 2 }), /the source must be a dense model/);
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
  assert.throws(() => saveModel(sky, dir, { layout: 'mixtral' }), /cannot save this skywork model in the mixtral layout: .*no field for gating logit normalization/);
  for (const x of [m, sky, dense]) x.dispose();
  rmSync(dir, { recursive: true });
});

test('a Qwen3 model upcycles into Qwen3-MoE: q/k norms copied, experts the MLP, the dense logits at step 0; saved and reloaded in its own names', async () => {
  const be = await createBackend({ name: 'wasm', threads: 2 });
  T.setBackend(be);
  const cfg = tinyLayouts().find(([, c]) => c.layout === 'qwen3')![1];
  const dense = SkyworkMoE.create({ ...cfg, initializerRange: 0.1 }, { seed: 6, backend: be });
  for (const [n, p] of dense.params) if (/(q|k)_norm/.test(n)) (p as T.Tensor).assign(Float32Array.from({ length: p.shape[0]! }, (_, i) => 0.6 + ((i * 5) % 9) / 10));
  const logits = (m: SkyworkMoE) => T.noGrad(() => T.tidy(() => m.forward(T.tensor(ids, [2, 6], 'i32', be)).logits.toFloat32()));
  const want = logits(dense);
  for (const [experts, topK] of [[4, 2], [8, 3]] as const) {
    const moe = upcycle(dense, { experts, topK, gateInitStd: 0.5, seed: 2 });
    const c = moe.config;
    assert.deepEqual([c.layout, c.qkNorm, c.normTopK, c.numExperts, c.topK, c.moeIntermediateSize, c.headDim], ['qwen3_moe', 'head', true, experts, topK, cfg.intermediateSize, 24]);
    assert.deepEqual(Array.from((moe.params.get('model.layers.1.self_attn.k_norm.weight') as T.Tensor).toFloat32()), Array.from((dense.params.get('model.layers.1.self_attn.k_norm.weight') as T.Tensor).toFloat32()));
    assertClose(logits(moe), want, `qwen3 upcycled ${experts}x top-${topK} vs dense`, 1e-4, 1e-5);
    if (experts === 4) {
      const dir = mkdtempSync(join(tmpdir(), 'skymoe-up-qwen3-'));
      saveModel(moe, dir);
      const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      assert.deepEqual([hf.architectures[0], hf.model_type, hf.num_experts, hf.norm_topk_prob, hf.moe_intermediate_size, hf.head_dim], ['Qwen3MoeForCausalLM', 'qwen3_moe', 4, true, cfg.intermediateSize, 24]);
      const r = openCheckpoint(dir);
      assert.ok(r.has('model.layers.0.mlp.experts.3.down_proj.weight') && r.has('model.layers.1.mlp.gate.weight') && r.has('model.layers.0.self_attn.q_norm.weight'));
      r.close();
      const back = loadModel(dir, be);
      assertClose(logits(back), want, 'reloaded upcycled Qwen3-MoE', 1e-4, 1e-5);
      back.dispose();
      rmSync(dir, { recursive: true });
    }
    moe.dispose();
  }
  // What cannot carry the model over is named.
  assert.throws(() => upcycle(dense, { experts: 4, topK: 2, layout: 'skywork' }), /a qwen3 model cannot become a skywork one: the skywork layout has no q\/k norm, this model has a per-head one/);
  assert.throws(() => upcycle(dense, { experts: 4, topK: 2, logitsNorm: true }), /qwen3_moe layout has no field for gating logit normalization/);
  const llama = SkyworkMoE.create(preset('tiny-dense'), { seed: 1, backend: be });
  assert.throws(() => upcycle(llama, { experts: 4, topK: 2, layout: 'qwen3_moe' }), /a llama model cannot become a qwen3_moe one: the qwen3_moe layout has a per-head q\/k norm, this model has none/);
  assert.throws(() => upcycle(llama, { experts: 4, topK: 2, layout: 'mixtral', logitsNorm: false, normTopK: false }), /always renormalizes the top-k weights/);
  llama.dispose();
  dense.dispose();
  await be.dispose();
});

test('without top-k renormalization (norm_topk_prob false) an upcycled layer computes the dense FFN scaled by its experts\' probability mass, per token', async () => {
  const be = await createBackend({ name: 'js' });
  T.setBackend(be);
  const cfg = tinyLayouts().find(([, c]) => c.layout === 'qwen3')![1];
  const dense = SkyworkMoE.create({ ...cfg, initializerRange: 0.1 }, { seed: 7, backend: be });
  const moe = upcycle(dense, { experts: 4, topK: 2, normTopK: false, gateInitStd: 0.05, seed: 3 });
  assert.equal(moe.config.normTopK, false);
  const N = 10, H = cfg.hiddenSize;
  const x = T.tensor(Float32Array.from({ length: N * H }, (_, i) => Math.sin(i * 0.37)), [N, H], 'f32', be);
  const p = (n: string) => moe.params.get(`model.layers.0.${n}`) as T.Tensor;
  const d = (n: string) => dense.params.get(`model.layers.0.mlp.${n}.weight`) as T.Tensor;
  T.noGrad(() => T.tidy(() => {
    const y = moeForward(x, { gate: p('mlp.gate.weight'), w1: p('mlp.experts.gate_proj'), w3: p('mlp.experts.up_proj'), w2: p('mlp.experts.down_proj') }, moe.config, DROPLESS).y.toFloat32();
    const ffn = T.linear(T.swiglu(T.linear(x, d('gate_proj')), T.linear(x, d('up_proj'))), d('down_proj')).toFloat32();
    const probs = T.softmax(T.linear(x, p('mlp.gate.weight'))).toFloat32();
    for (let i = 0; i < N; i++) {
      const row = Array.from(probs.subarray(i * 4, i * 4 + 4)).sort((a, b) => b - a);
      const mass = row[0]! + row[1]!;
      assert.ok(mass < 0.9, `token ${i}: mass ${mass} (the check means something only below 1)`);
      assertCloseToScale(y.subarray(i * H, (i + 1) * H), ffn.subarray(i * H, (i + 1) * H).map((v) => v * mass), `token ${i}`, 1e-5);
    }
  }));
  x.dispose();
  moe.dispose();
  dense.dispose();
});
