/** The whole model: KV-cache decoding equals the full forward, every parameter gets a gradient, presets count right. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import { createBackend } from '../../src/backend/index.js';
import type { Backend } from '../../src/backend/backend.js';
import * as T from '../../src/tensor/index.js';
import { preset, denseTwin } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { countParams, formatCount } from '../../src/model/params.js';
import type { ModelConfig } from '../../src/model/config.js';
import { assertClose } from '../helpers.js';
import { tinyLayouts } from './tiny-layouts.js';

const layouts: [string, ModelConfig][] = [
  ['skywork', preset('tiny')],
  ['mixtral (GQA, no logit norm)', { ...preset('tiny'), layout: 'mixtral', logitsNorm: false, numKvHeads: 2 }],
  ['llama dense', preset('tiny-dense')],
  ['skywork 2-layer gate, every 2nd layer MoE', { ...preset('tiny'), twoLayerGate: true, moeInterval: 2 }],
  ...tinyLayouts(),
];

for (const make of [async () => new JsBackend() as Backend, () => createBackend({ name: 'wasm', threads: 2 })]) {
  for (const [name, cfg] of layouts) {
    test(`KV-cache decoding equals the full forward position by position: ${name}`, async (t) => {
      const be = await make();
      t.diagnostic(be.describe());
      T.setBackend(be);
      const model = SkyworkMoE.create({ ...cfg, initializerRange: 0.1 }, { seed: 4, backend: be });
      const ids = Int32Array.from([1, 17, 300, 5, 5, 42, 7, 99, 12, 3, 3, 250, 0, 8]);
      const Tn = ids.length;
      const full = T.noGrad(() => T.tidy(() => model.forward(T.tensor(ids, [1, Tn], 'i32', be)).logits.toFloat32()));
      const cache = model.newCache(1, 32);
      // A prompt of 5 tokens in one call, then one token at a time.
      const parts: Float32Array[] = [];
      parts.push(T.tidy(() => model.decode(T.tensor(ids.slice(0, 5), [1, 5], 'i32', be), cache).toFloat32()));
      for (let i = 5; i < Tn; i++) parts.push(T.tidy(() => model.decode(T.tensor(ids.slice(i, i + 1), [1, 1], 'i32', be), cache).toFloat32()));
      const inc = new Float32Array(full.length);
      let o = 0;
      for (const p of parts) {
        inc.set(p, o);
        o += p.length;
      }
      assert.equal(cache.length, Tn);
      assertClose(inc, full, `${name}: incremental vs full logits`, 1e-4, 1e-5);
      cache.dispose();
      model.dispose();
      await be.dispose();
    });
  }
}

test('a training forward/backward reaches every parameter', () => {
  const be = new JsBackend();
  T.setBackend(be);
  for (const [name, cfg] of layouts) {
    const model = SkyworkMoE.create(cfg, { seed: 1, backend: be });
    const B = 2, S = 9;
    const ids = Int32Array.from({ length: B * S }, (_, i) => (i * 37) % cfg.vocabSize);
    T.tidy(() => {
      const out = model.forward(T.tensor(ids, [B, S], 'i32', be), { moe: { capacityFactor: 1.25, dropPolicy: 'probability', auxLoss: 'skywork', zLoss: true } });
      const ce = T.crossEntropy(T.reshape(out.logits, [B * S, cfg.vocabSize]), T.tensor(ids.map((x) => (x + 1) % cfg.vocabSize), [B * S], 'i32', be));
      let loss = ce;
      for (const l of out.moe) loss = T.add(loss, T.add(T.scale(l.aux!, 0.01), T.scale(l.zLoss!, 1e-3)));
      assert.ok(Number.isFinite(loss.item()));
      T.backward(loss);
    });
    for (const p of model.parameters()) {
      assert.ok(p.grad, `${name}: ${p.name} got no gradient`);
      const g = p.grad.toFloat32();
      assert.ok(g.some((v) => v !== 0), `${name}: ${p.name} has an all-zero gradient`);
    }
    model.dispose();
  }
});

test('parameter counts: the 146b preset gives 146.4B total and 22.7B active', () => {
  const c = countParams(preset('skywork-moe-146b'));
  assert.equal(formatCount(c.total), '146.4B');
  assert.equal(formatCount(c.active), '22.7B');
  // Independent arithmetic: 52 layers x (4 H^2 attention + 16 x 3 H F experts + 16 H gate + 2 H norms) + 2 V H + H.
  const H = 4608, F = 12288, V = 65532;
  assert.equal(c.total, 52 * (4 * H * H + 16 * 3 * H * F + 16 * H + 2 * H) + 2 * V * H + H);
  assert.equal(c.active, 52 * (4 * H * H + 2 * 3 * H * F + 16 * H + 2 * H) + 2 * V * H + H);
  const d = countParams(denseTwin(preset('skywork-moe-146b')));
  assert.equal(d.total, d.active);
  // The created tiny model holds exactly the counted parameters.
  const be = new JsBackend();
  const m = SkyworkMoE.create(preset('tiny'), { backend: be });
  assert.equal(m.parameters().reduce((s, p) => s + p.size, 0), countParams(preset('tiny')).total);
  m.dispose();
});

test('configs that would compute something else are refused, naming the field', async () => {
  const { configFromHF, configToHF } = await import('../../src/model/config.js');
  const base = configToHF(preset('tiny-dense'));
  for (const [field, value] of [['rope_scaling', { type: 'linear', factor: 2 }], ['attention_bias', true], ['mlp_bias', true], ['sliding_window', 4096]] as const) {
    assert.throws(() => configFromHF({ ...base, [field]: value }, 'x/config.json'), (e: Error) => e.message.includes('x/config.json') && e.message.includes(`'${field}'`));
  }
  assert.equal(configFromHF({ ...base, rope_scaling: null, sliding_window: null }).layout, 'llama');
  assert.throws(() => configFromHF({ ...base, num_attention_heads: 'four' }), /'num_attention_heads'.*number/);
  assert.throws(() => configFromHF({ ...base, model_type: 'gpt2' }), /'model_type'.*'skywork'/);
});

test('decoding many prompt lengths does not grow the model\'s memory', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const model = SkyworkMoE.create(preset('tiny'), { seed: 2, backend: be });
  const run = (n: number) => {
    const cache = model.newCache(1, 64);
    T.tidy(() => {
      model.decode(T.tensor(Int32Array.from({ length: n }, (_, i) => (i * 7) % 512), [1, n], 'i32', be), cache);
    });
    cache.dispose();
  };
  run(3);
  const before = be.heap.stats().blocks;
  for (let n = 4; n < 40; n++) run(n);
  assert.equal(be.heap.stats().blocks, before);
  model.dispose();
});
