/** Hugging Face directories: save -> load gives identical logits in each layout; faults name the file. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { preset } from '../../src/model/presets.js';
import { paramValues, SkyworkMoE } from '../../src/model/skywork-moe.js';
import { loadModel, saveModel, readConfig } from '../../src/io/hf.js';
import { openCheckpoint, writeSafetensors } from '../../src/io/index.js';
import { LAYOUTS, type ModelConfig } from '../../src/model/config.js';
import { tinyLayouts } from '../model/tiny-layouts.js';

const be = new JsBackend();
T.setBackend(be);
const ids = Int32Array.from([1, 5, 99, 300, 7, 42, 2, 0]);

function logitsOf(m: SkyworkMoE): Float32Array {
  return T.noGrad(() => T.tidy(() => m.forward(T.tensor(ids, [1, ids.length], 'i32', be)).logits.toFloat32()));
}

const cases: [string, ModelConfig][] = [
  ['skywork', preset('tiny')],
  ['mixtral', { ...preset('tiny'), layout: 'mixtral', logitsNorm: false, numKvHeads: 2 }],
  ['llama', preset('tiny-dense')],
];

for (const [name, cfg] of cases) {
  test(`save -> load gives identical logits: ${name} layout`, () => {
    const dir = mkdtempSync(join(tmpdir(), `skymoe-hf-${name}-`));
    const m = SkyworkMoE.create(cfg, { seed: 2, backend: be });
    const before = logitsOf(m);
    saveModel(m, dir, { maxShardBytes: 200_000 }); // forces several shards
    const files = readdirSync(dir);
    assert.ok(files.includes('model.safetensors.index.json'), `sharded: ${files}`);
    const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const reader = openCheckpoint(dir);
    if (name === 'llama') {
      assert.equal(hf.architectures[0], 'LlamaForCausalLM');
      assert.ok(reader.has('model.layers.0.mlp.gate_proj.weight'));
    } else {
      assert.ok(reader.has('model.layers.1.block_sparse_moe.experts.3.w2.weight'));
      assert.deepEqual(reader.info('model.layers.1.block_sparse_moe.experts.3.w1.weight').shape, [cfg.intermediateSize, cfg.hiddenSize]);
      assert.deepEqual(reader.info('model.layers.0.block_sparse_moe.gate.weight').shape, [cfg.numExperts, cfg.hiddenSize]);
      if (name === 'skywork') {
        assert.equal(hf.model_type, 'skywork');
        assert.deepEqual(hf.num_experts, [4]);
        assert.equal(hf.moe_use_logits_norm, true);
      } else assert.equal(hf.num_local_experts, 4);
    }
    reader.close();
    const back = loadModel(dir, be);
    assert.deepEqual(back.config.layout, cfg.layout);
    assert.deepEqual(Array.from(logitsOf(back)), Array.from(before));
    back.dispose();
    m.dispose();
    rmSync(dir, { recursive: true });
  });
}

for (const [name, cfg] of tinyLayouts()) {
  test(`save -> load gives identical logits and the same config.json: ${name}`, () => {
    const dir = mkdtempSync(join(tmpdir(), `skymoe-hf-${cfg.layout}-`));
    const m = SkyworkMoE.create({ ...cfg, initializerRange: 0.1 }, { seed: 2, backend: be });
    // q/k norm weights away from 1, so a norm dropped at save or load shows in the logits
    for (const [n, p] of m.params) if (/(q|k)_norm/.test(n)) (p as T.Tensor).assign(Float32Array.from({ length: p.shape[0]! }, (_, i) => 0.5 + ((i * 7) % 11) / 10));
    const before = logitsOf(m);
    saveModel(m, dir, { maxShardBytes: 200_000 });
    const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.deepEqual([hf.model_type, hf.architectures], [cfg.layout, [LAYOUTS[cfg.layout].architecture]]);
    const reader = openCheckpoint(dir);
    const E = cfg.numExperts, names = reader.names();
    if (cfg.qkNorm !== 'none') {
      const D = cfg.headDim, full = cfg.qkNorm === 'full';
      assert.deepEqual(reader.info('model.layers.0.self_attn.q_norm.weight').shape, [full ? cfg.numHeads * D : D]);
      assert.deepEqual(reader.info('model.layers.1.self_attn.k_norm.weight').shape, [full ? cfg.numKvHeads * D : D]);
    }
    assert.deepEqual(reader.info('model.layers.0.self_attn.o_proj.weight').shape, [cfg.hiddenSize, cfg.numHeads * cfg.headDim]);
    if (E) {
      // the layout's own per-expert names, nothing of another layout's
      assert.ok(!names.some((n) => n.includes('block_sparse_moe')), names.join());
      assert.deepEqual(reader.info(`model.layers.0.mlp.experts.${E - 1}.down_proj.weight`).shape, [cfg.hiddenSize, cfg.moeIntermediateSize]);
      assert.deepEqual(reader.info('model.layers.0.mlp.experts.0.gate_proj.weight').shape, [cfg.moeIntermediateSize, cfg.hiddenSize]);
      assert.equal(names.filter((n) => /^model\.layers\.0\.mlp\.experts\.\d+\.up_proj\.weight$/.test(n)).length, E);
      for (const l of cfg.mlpOnlyLayers) {
        assert.deepEqual(reader.info(`model.layers.${l}.mlp.up_proj.weight`).shape, [cfg.intermediateSize, cfg.hiddenSize]);
        assert.ok(!reader.has(`model.layers.${l}.mlp.gate.weight`));
      }
    }
    reader.close();
    const back = loadModel(dir, be);
    const { extra: _e, routerAuxLossCoef: _r, ...read } = back.config;
    assert.deepEqual(read, { ...cfg, initializerRange: 0.1 });
    assert.deepEqual(Array.from(logitsOf(back)), Array.from(before));
    // saved again, the config.json is the same file
    const dir2 = mkdtempSync(join(tmpdir(), `skymoe-hf-${cfg.layout}-again-`));
    saveModel(back, dir2);
    assert.equal(readFileSync(join(dir2, 'config.json'), 'utf8'), readFileSync(join(dir, 'config.json'), 'utf8'));
    back.dispose();
    m.dispose();
    rmSync(dir, { recursive: true });
    rmSync(dir2, { recursive: true });
  });
}

test('saving in a layout that cannot say the model is refused, naming why; llama <-> mistral and the golden configs go through', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-hf-to-'));
  const [[, mistral], [, qwen3], [, qmoe], [, olmoe]] = tinyLayouts();
  const models = [mistral!, qwen3!, qmoe!, olmoe!].map((c) => SkyworkMoE.create(c, { seed: 1, backend: be }));
  const [mis, q3, qm, ol] = models as [SkyworkMoE, SkyworkMoE, SkyworkMoE, SkyworkMoE];
  assert.throws(() => saveModel(q3, dir, { layout: 'llama' }), /cannot save this qwen3 model in the llama layout: the llama layout has no q\/k norm/);
  assert.throws(() => saveModel(qm, dir, { layout: 'mixtral' }), /cannot save this qwen3_moe model in the mixtral layout/);
  assert.throws(() => saveModel(ol, dir, { layout: 'qwen3_moe' }), /full-projection/);
  assert.throws(() => saveModel(mis, dir, { layout: 'qwen3' }), /per-head q\/k norm/);
  assert.throws(() => saveModel(mis, dir, { layout: 'mixtral' }), /the mixtral layout is MoE, this model is dense/);
  saveModel(mis, dir, { layout: 'llama' });
  const back = loadModel(dir, be);
  assert.equal(back.config.layout, 'llama');
  assert.deepEqual(Array.from(logitsOf(back)), Array.from(logitsOf(mis)));
  back.dispose();
  for (const m of models) m.dispose();
  rmSync(dir, { recursive: true });
});

test('bf16 save stores each weight rounded to nearest-even bf16: the reloaded model computes exactly what the rounded weights give', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-hf-bf16-'));
  const m = SkyworkMoE.create(preset('tiny'), { seed: 3, backend: be });
  saveModel(m, dir, { dtype: 'BF16' });
  assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
  const back = loadModel(dir, be);
  // The dequantized reference: the original weights rounded to bf16 (an independent codec: the bit
  // arithmetic of dtypes.test.ts's reference), in place.
  const toBf16 = (x: number) => {
    const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
    const r = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
    return new Float32Array(new Uint32Array([r << 16]).buffer)[0]!;
  };
  let changed = 0;
  for (const p of m.parameters()) {
    const w = p.toFloat32();
    const r = w.map(toBf16);
    changed += r.filter((v, i) => v !== w[i]).length;
    p.assign(r);
    assert.deepEqual(Array.from(paramValues(back.params.get(p.name!)!)), Array.from(r), `${p.name} as stored`);
  }
  assert.ok(changed > 1000, 'rounding to bf16 changed the weights');
  assert.deepEqual(Array.from(logitsOf(back)), Array.from(logitsOf(m)));
  back.dispose();
  m.dispose();
  rmSync(dir, { recursive: true });
});

test('faults name the file: bad config field, missing tensor, wrong shape', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-hf-bad-'));
  const m = SkyworkMoE.create(preset('tiny'), { seed: 4, backend: be });
  saveModel(m, dir);
  const cfgPath = join(dir, 'config.json');
  const good = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...good, hidden_size: '64' }));
  assert.throws(() => readConfig(dir), (e: Error) => e.message.includes(cfgPath) && e.message.includes("'hidden_size'") && e.message.includes('number'));
  writeFileSync(cfgPath, '{ nope');
  assert.throws(() => readConfig(dir), (e: Error) => e.message.includes(cfgPath) && /JSON/.test(e.message));
  writeFileSync(cfgPath, JSON.stringify({ ...good, num_hidden_layers: 3 }));
  assert.throws(() => loadModel(dir, be), (e: Error) => e.message.includes('model.safetensors') && e.message.includes("missing tensor 'model.layers.2"));
  writeFileSync(cfgPath, JSON.stringify({ ...good, intermediate_size: 64 }));
  assert.throws(() => loadModel(dir, be), (e: Error) => e.message.includes('model.safetensors') && e.message.includes('the config needs [64,64]'));
  writeFileSync(cfgPath, JSON.stringify(good));
  writeSafetensors(join(dir, 'model.safetensors'), [{ name: 'x', dtype: 'F32', shape: [1], data: Float32Array.of(1) }]);
  assert.throws(() => loadModel(dir, be), (e: Error) => e.message.includes('model.safetensors') && e.message.includes('missing tensor'));
  m.dispose();
  rmSync(dir, { recursive: true });
});
