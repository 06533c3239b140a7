/**
 * The layouts' config.json: the published Qwen3-30B-A3B and OLMoE-1B-7B configs, Llama-2 and
 * Mistral ones read field by field and written back unchanged; every field skymoe cannot compute
 * refused with a ConfigError naming it. The q/k norms under training: their gradients against
 * finite differences of the whole model, and a few AdamW steps lower the loss of a tiny Qwen3-MoE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { ConfigError, configFromHF, configToHF, isMoeLayer, layoutRefusal, stopTokenIds, type ModelConfig } from '../../src/model/config.js';
import { countParams } from '../../src/model/params.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { AdamW } from '../../src/train/optimizer.js';
import { assertCloseToScale, randomArray } from '../helpers.js';
import { tinyLayouts } from './tiny-layouts.js';

const configs = fileURLToPath(new URL('../../../test/fixtures/configs/', import.meta.url));
const published = (name: string) => JSON.parse(readFileSync(`${configs}${name}`, 'utf8')) as Record<string, unknown>;

/** The fields of a written config.json are the original's with their values (torch_dtype follows the saved weights). */
function sameFields(written: Record<string, unknown>, original: Record<string, unknown>, what: string): void {
  const { torch_dtype: _a, ...w } = written;
  const { torch_dtype: _b, ...o } = original;
  assert.deepEqual(Object.keys(w).sort(), Object.keys(o).sort(), `${what}: the same fields`);
  for (const k of Object.keys(o)) assert.deepEqual(w[k], o[k], `${what}: field '${k}'`);
}

test('Qwen3-30B-A3B as published: head_dim 128 apart from 2048 / 32, per-head q/k norm, 128 experts of width 768, every layer MoE; written back field for field', () => {
  const raw = published('qwen3-30b-a3b.json');
  const c = configFromHF(raw, 'qwen3-30b-a3b.json');
  assert.equal(c.layout, 'qwen3_moe');
  assert.deepEqual([c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.qkNorm], [2048, 32, 4, 128, 'head']);
  assert.deepEqual([c.numExperts, c.topK, c.moeIntermediateSize, c.intermediateSize, c.normTopK, c.moeInterval, c.mlpOnlyLayers], [128, 8, 768, 6144, true, 1, []]);
  assert.deepEqual([c.ropeTheta, c.maxPositions, c.rmsNormEps, c.tieWordEmbeddings, c.routerAuxLossCoef], [1e6, 40960, 1e-6, false, 0.001]);
  assert.ok(Array.from({ length: 48 }, (_, i) => i).every((i) => isMoeLayer(c, i)));
  sameFields(configToHF(c), raw, 'Qwen3-30B-A3B');
  // published totals 30.5B / 3.3B active
  const n = countParams(c);
  assert.ok(Math.abs(n.total / 30.5e9 - 1) < 0.01 && Math.abs(n.active / 3.3e9 - 1) < 0.02, `${n.total} / ${n.active}`);
});

test('OLMoE-1B-7B as published: q/k norm over the whole projections, 64 experts top-8 not renormalized; written back field for field (bos_token_id null kept)', () => {
  const raw = published('olmoe-1b-7b-0924.json');
  const c = configFromHF(raw);
  assert.deepEqual([c.layout, c.qkNorm, c.headDim, c.numExperts, c.topK, c.normTopK, c.moeIntermediateSize, c.padTokenId, c.eosTokenId], ['olmoe', 'full', 128, 64, 8, false, 1024, 1, 50279]);
  // skymoe uses 1 in place of a null bos_token_id, and writes null back
  assert.equal(raw.bos_token_id, null);
  sameFields(configToHF(c), raw, 'OLMoE');
  // a changed id is written as it now is
  assert.equal(configToHF({ ...c, bosTokenId: 7 }).bos_token_id, 7);
  const n = countParams(c);
  assert.ok(Math.abs(n.total / 6.9e9 - 1) < 0.01 && Math.abs(n.active / 1.3e9 - 1) < 0.02, `${n.total} / ${n.active}`);
});

test('eos_token_id lists (Llama-3.1) are kept: generation stops at each, and a save writes the list', () => {
  const llama31 = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], hidden_size: 64, intermediate_size: 128,
    num_attention_heads: 4, num_hidden_layers: 1, max_position_embeddings: 128, vocab_size: 128256, rope_theta: 500000, rms_norm_eps: 1e-5, tie_word_embeddings: true,
  };
  const c = configFromHF(llama31);
  assert.deepEqual([c.eosTokenId, stopTokenIds(c)], [128001, [128001, 128008, 128009]]);
  assert.equal('pad_token_id' in configToHF(c), false, 'absent stays absent');
  const written = configToHF(c);
  assert.deepEqual([written.bos_token_id, written.eos_token_id], [128000, [128001, 128008, 128009]]);
  assert.deepEqual(configToHF(configFromHF(written)).eos_token_id, [128001, 128008, 128009], 'save -> load -> save');
  assert.throws(() => configFromHF({ ...llama31, eos_token_id: [128001, 200000] }), /field 'eos_token_id': 200000 is outside the vocabulary/);
});

test('Llama-2 (pretraining_tp 1, no rope_theta) and Mistral (head_dim given, sliding_window null) configs', () => {
  const llama2 = {
    architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02, intermediate_size: 11008,
    max_position_embeddings: 4096, model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32, pretraining_tp: 1, rms_norm_eps: 1e-5,
    rope_scaling: null, tie_word_embeddings: false, torch_dtype: 'float16', transformers_version: '4.31.0.dev0', use_cache: true, vocab_size: 32000,
  };
  const l = configFromHF(llama2);
  assert.deepEqual([l.layout, l.headDim, l.ropeTheta, l.qkNorm], ['llama', 128, 10000, 'none']);
  assert.equal(Math.round(countParams(l).total / 1e8), 67); // Llama-2-7B: 6.74B
  // pretraining_tp > 1 only splits the matmuls (HF modeling_llama): the same function, accepted
  assert.equal(configFromHF({ ...llama2, pretraining_tp: 2 }).layout, 'llama');
  const { rope_theta: _, ...l2 } = configToHF(l);
  sameFields(l2, llama2, 'Llama-2');
  // Mistral-Nemo: hidden 5120, 32 heads of head_dim 128 (not 160)
  const nemo = { architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 5120, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, intermediate_size: 14336, num_hidden_layers: 40, vocab_size: 131072, max_position_embeddings: 1024000, rope_theta: 1e6, rms_norm_eps: 1e-5, sliding_window: null, tie_word_embeddings: false };
  const m = configFromHF(nemo);
  assert.deepEqual([m.layout, m.headDim], ['mistral', 128]);
  assert.equal(configToHF(m).head_dim, 128);
  assert.equal(configFromHF({ ...nemo, head_dim: undefined }).headDim, 160);
  assert.equal(configFromHF({ ...published('qwen3-30b-a3b.json'), model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], head_dim: undefined }).headDim, 128, "Qwen3Config's default head_dim");
});

test('config fields skymoe cannot compute are refused with a ConfigError naming the field', () => {
  const qwen = published('qwen3-30b-a3b.json'), olmoe = published('olmoe-1b-7b-0924.json');
  const refuses = (raw: Record<string, unknown>, field: string, also?: RegExp) =>
    assert.throws(
      () => configFromHF(raw, 'm/config.json'),
      (e: Error) => e instanceof ConfigError && e.message.startsWith('m/config.json: ') && e.message.includes(`'${field}'`) && (!also || also.test(e.message)),
      `${field}: ${JSON.stringify(raw[field])}`,
    );
  refuses({ ...qwen, use_sliding_window: true, sliding_window: 4096 }, 'use_sliding_window', /sliding-window attention is not implemented/);
  refuses({ ...qwen, layer_types: Array(48).fill('sliding_attention') }, 'layer_types.0');
  refuses({ ...qwen, mlp_only_layers: [48] }, 'mlp_only_layers', /layer 48 is not a layer of this model \(0\.\.47\)/);
  refuses({ ...qwen, mlp_only_layers: [3, 3] }, 'mlp_only_layers', /listed twice/);
  refuses({ ...qwen, mlp_only_layers: [-1] }, 'mlp_only_layers.0');
  refuses({ ...qwen, decoder_sparse_step: 0 }, 'decoder_sparse_step');
  refuses({ ...qwen, moe_intermediate_size: undefined }, 'moe_intermediate_size');
  refuses({ ...qwen, num_experts_per_tok: 129 }, 'num_experts_per_tok');
  refuses({ ...qwen, head_dim: 127 }, 'head_dim', /even/);
  refuses({ ...qwen, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'rope_scaling');
  refuses({ ...qwen, rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e6 } }, 'rope_parameters');
  refuses({ ...qwen, attention_bias: true }, 'attention_bias');
  refuses({ ...olmoe, clip_qkv: 8 }, 'clip_qkv', /clipping q\/k\/v is not implemented/);
  refuses({ ...olmoe, head_dim: 64 }, 'head_dim', /always uses/);
  refuses({ ...olmoe, num_experts: [64] }, 'num_experts');
  refuses({ ...olmoe, norm_topk_prob: 'yes' }, 'norm_topk_prob');
  refuses({ architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 64, num_attention_heads: 4, intermediate_size: 128, num_hidden_layers: 2, vocab_size: 100, max_position_embeddings: 64, sliding_window: 4096 }, 'sliding_window');
  refuses({ ...qwen, model_type: 'qwen2_moe' }, 'model_type', /'qwen3_moe', 'olmoe'/);
  // accepted: what HF ignores (Qwen3's sliding_window without use_sliding_window), the plain RoPE's rope_parameters
  assert.equal(configFromHF({ ...qwen, sliding_window: 4096, max_window_layers: 28 }).layout, 'qwen3_moe');
  assert.equal(configFromHF({ ...qwen, rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }).ropeTheta, 5e5);
  assert.equal(configFromHF({ ...qwen, norm_topk_prob: undefined }).normTopK, false, "Qwen3MoeConfig's default");
  assert.deepEqual(configFromHF({ ...qwen, mlp_only_layers: null }).mlpOnlyLayers, []);
});

test('which layers are MoE: decoder_sparse_step as (i + 1) % n == 0, mlp_only_layers always dense', () => {
  const c = configFromHF({ ...published('qwen3-30b-a3b.json'), num_hidden_layers: 8, decoder_sparse_step: 2, mlp_only_layers: [5, 0] });
  assert.deepEqual(Array.from({ length: 8 }, (_, i) => isMoeLayer(c, i)), [false, true, false, true, false, false, false, true]);
  const written = configToHF(c);
  assert.deepEqual([written.decoder_sparse_step, written.mlp_only_layers], [2, [5, 0]]);
});

test('a layout that cannot say what the model computes is named: layoutRefusal', () => {
  const [, , [, qmoe], [, olmoe]] = tinyLayouts();
  assert.equal(layoutRefusal(qmoe!, 'qwen3_moe'), null);
  assert.match(layoutRefusal(qmoe!, 'mixtral')!, /the mixtral layout has no q\/k norm, this model has a per-head one/);
  assert.match(layoutRefusal(olmoe!, 'qwen3_moe')!, /per-head q\/k norm, this model has a full-projection one/);
  assert.match(layoutRefusal({ ...olmoe!, layout: 'mixtral', qkNorm: 'none' }, 'mixtral')!, /norm_topk_prob false/);
  assert.match(layoutRefusal({ ...qmoe!, layout: 'skywork', qkNorm: 'none' }, 'skywork')!, /mlp_only_layers/);
});

/** sum(logits * r) for a fixed r: every logit matters, so every weight's gradient is exercised. */
function weightedLogits(model: SkyworkMoE, ids: T.Tensor, r: Float32Array): T.Tensor {
  const logits = model.forward(ids).logits;
  return T.sumAll(T.mul(logits, T.tensor(r, logits.shape, 'f32', ids.backend)));
}

test('q/k norm weights: the gradient through the whole model equals central finite differences (per head and full projection)', () => {
  const be = new JsBackend();
  T.setBackend(be);
  for (const [name, cfg] of tinyLayouts().filter(([, c]) => c.qkNorm !== 'none')) {
    const model = SkyworkMoE.create({ ...cfg, numLayers: 2, mlpOnlyLayers: [], initializerRange: 0.1 }, { seed: 3, backend: be });
    // norm weights away from 1, so the check does not sit at a special point
    for (const [n, p] of model.params) if (/q_norm|k_norm/.test(n)) (p as T.Tensor).assign(Float32Array.from(randomArray(p.shape.reduce((a, b) => a * b, 1), n.length), (v) => 1 + 0.3 * v));
    const ids = T.keep(T.tensor(Int32Array.from([3, 17, 200, 5, 42, 9]), [1, 6], 'i32', be));
    const r = randomArray(6 * cfg.vocabSize, 11);
    T.tidy(() => T.backward(weightedLogits(model, ids, r)));
    const lossOf = () => T.noGrad(() => T.tidy(() => weightedLogits(model, ids, r).item()));
    for (const which of ['model.layers.0.self_attn.q_norm.weight', 'model.layers.1.self_attn.k_norm.weight']) {
      const p = model.params.get(which) as T.Tensor;
      const analytic = p.grad!.toFloat32();
      const base = p.toFloat32();
      const idx = Array.from({ length: Math.min(8, base.length) }, (_, i) => Math.floor((i * base.length) / 8));
      const numeric = idx.map((j) => {
        const eps = 1e-2, v = base.slice();
        v[j] = base[j]! + eps;
        p.assign(v);
        const up = lossOf();
        v[j] = base[j]! - eps;
        p.assign(v);
        const down = lossOf();
        p.assign(base);
        return (up - down) / (2 * eps);
      });
      assertCloseToScale(idx.map((j) => analytic[j]!), numeric, `${name}: d/d ${which}`, 2e-2);
      assert.ok(numeric.some((x) => Math.abs(x) > 1e-3), `${name}: ${which} changes the output`);
    }
    ids.dispose();
    model.dispose();
  }
});

test('training a tiny Qwen3-MoE for a few AdamW steps lowers its loss; every parameter, the q/k norms included, is updated', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const cfg: ModelConfig = tinyLayouts().find(([n]) => n.startsWith('qwen3_moe'))![1];
  const model = SkyworkMoE.create(cfg, { seed: 5, backend: be });
  const B = 2, S = 12;
  const ids = Int32Array.from({ length: B * (S + 1) }, (_, i) => (i * 37 + 11) % 64);
  const x = T.keep(T.tensor(Int32Array.from({ length: B * S }, (_, i) => ids[Math.floor(i / S) * (S + 1) + (i % S)]!), [B, S], 'i32', be));
  const y = T.keep(T.tensor(Int32Array.from({ length: B * S }, (_, i) => ids[Math.floor(i / S) * (S + 1) + (i % S) + 1]!), [B * S], 'i32', be));
  const opt = new AdamW(model.parameters());
  const before = new Map([...model.params].map(([n, p]) => [n, (p as T.Tensor).toFloat32()]));
  const losses: number[] = [];
  for (let step = 0; step < 8; step++) {
    losses.push(T.tidy(() => {
      const out = model.forward(x, { moe: { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'switch', zLoss: false } });
      let loss = T.crossEntropy(T.reshape(out.logits, [B * S, cfg.vocabSize]), y);
      for (const l of out.moe) loss = T.add(loss, T.scale(l.aux!, 0.001));
      T.backward(loss);
      return loss.item();
    }));
    opt.update(3e-3);
  }
  assert.equal(losses.length, 8);
  assert.ok(losses.at(-1)! < losses[0]! - 0.3, `loss ${losses.map((l) => l.toFixed(3)).join(' -> ')}`);
  for (const [n, p] of model.params) assert.ok((p as T.Tensor).toFloat32().some((v, i) => v !== before.get(n)![i]), `${n} was not updated`);
  x.dispose();
  y.dispose();
  model.dispose();
});
