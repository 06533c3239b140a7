/**
 * Golden tests in the llm.c manner: tiny checkpoints in the Skywork (logit normalization, BF16),
 * Mixtral (GQA), Llama (MQA, tied embeddings), Qwen3 (per-head q/k norm, head_dim != hidden /
 * heads, tied), Qwen3-MoE (a dense layer among MoE layers, expert width != MLP width) and OLMoE
 * (q/k norm over the whole projection, top-k not renormalized, BF16) layouts, with the logits an
 * independent PyTorch implementation computed for them in float64
 * (test/fixtures/golden/make_golden.py, written from the Hugging Face modeling conventions; the
 * fixtures are committed, so no Python is needed here). A swapped w1/w3, a q/k permutation,
 * another RoPE convention, a misplaced or mis-shaped norm survives a save -> load round trip but
 * not this.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadModel } from '../../src/io/hf.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import * as T from '../../src/tensor/index.js';
import { allBackends, assertClose, tryCreate } from '../helpers.js';
import { ReferenceModel } from '../reference/model64.js';

const root = fileURLToPath(new URL('../../../test/fixtures/golden', import.meta.url));
const CASES = ['skywork', 'mixtral', 'llama', 'qwen3', 'qwen3_moe', 'olmoe'] as const;

function golden(name: string) {
  const f = openSafetensors(join(root, name, 'golden.safetensors'));
  try {
    const [B, Tn] = f.info('input_ids').shape as [number, number];
    const ids = Int32Array.from(f.readI64('input_ids'), (x) => Number(x));
    return { B, Tn, ids, logits: f.readF32('logits') };
  } finally {
    f.close();
  }
}

for (const bc of allBackends()) {
  test(`golden logits of the Skywork, Mixtral, Llama, Qwen3, Qwen3-MoE and OLMoE layouts on ${bc.label}`, async (t) => {
    const be = await tryCreate(bc);
    if (!be) return t.skip(`${bc.label} not available`);
    try {
      for (const name of CASES) {
        const g = golden(name);
        const model = loadModel(join(root, name), be);
        const got = T.noGrad(() => T.tidy(() => model.forward(T.tensor(g.ids, [g.B, g.Tn], 'i32', be)).logits.toFloat32()));
        // Logits are O(1) (std ~1.1); float32 compute is within ~1.5e-6, a wrong convention is O(1) off.
        assertClose(got, g.logits, `${name} on ${bc.label}`, 2e-5, 2e-5);
        model.dispose();
      }
    } finally {
      await be.dispose();
    }
  });
}

test('the float64 reference model of the tests reproduces the golden logits (so it can judge score and generate)', () => {
  for (const name of CASES) {
    const g = golden(name);
    const ref = new ReferenceModel(join(root, name));
    for (let b = 0; b < g.B; b++) {
      const rows = ref.forward(Array.from(g.ids.subarray(b * g.Tn, (b + 1) * g.Tn)));
      const flat = new Float64Array(g.Tn * ref.vocab);
      rows.forEach((r, i) => flat.set(r, i * ref.vocab));
      assertClose(flat, g.logits.subarray(b * g.Tn * ref.vocab, (b + 1) * g.Tn * ref.vocab), `reference ${name} sequence ${b}`, 1e-6, 1e-6);
    }
  }
});

test('the fixtures are what the layouts say: BF16 Skywork with logit normalization, GQA Mixtral, tied Llama, Qwen3 and OLMoE q/k norms', () => {
  const sky = openSafetensors(join(root, 'skywork', 'model.safetensors'));
  assert.equal(sky.info('model.layers.0.block_sparse_moe.experts.3.w2.weight').dtype, 'BF16');
  sky.close();
  const mix = openSafetensors(join(root, 'mixtral', 'model.safetensors'));
  assert.deepEqual(mix.info('model.layers.1.self_attn.k_proj.weight').shape, [16, 32]); // 2 kv heads x 8
  mix.close();
  const llama = openSafetensors(join(root, 'llama', 'model.safetensors'));
  assert.ok(!llama.has('lm_head.weight'));
  llama.close();
  // q/k norm weights away from 1, so a skipped or misplaced norm changes the logits
  const notOnes = (f: ReturnType<typeof openSafetensors>, name: string) => assert.ok(f.readF32(name).some((v) => Math.abs(v - 1) > 0.1), `${name} is not all ones`);
  const qwen3 = openSafetensors(join(root, 'qwen3', 'model.safetensors'));
  assert.deepEqual(qwen3.info('model.layers.0.self_attn.q_proj.weight').shape, [48, 32]); // 4 heads x head_dim 12 != 32 / 4
  assert.deepEqual(qwen3.info('model.layers.0.self_attn.o_proj.weight').shape, [32, 48]);
  assert.deepEqual(qwen3.info('model.layers.1.self_attn.k_norm.weight').shape, [12]);
  assert.ok(!qwen3.has('lm_head.weight'));
  notOnes(qwen3, 'model.layers.1.self_attn.q_norm.weight');
  qwen3.close();
  const qmoe = openSafetensors(join(root, 'qwen3_moe', 'model.safetensors'));
  assert.deepEqual(qmoe.info('model.layers.1.mlp.down_proj.weight').shape, [32, 40]); // mlp_only_layers [1]: intermediate_size 40
  assert.deepEqual(qmoe.info('model.layers.2.mlp.experts.3.down_proj.weight').shape, [32, 24]); // moe_intermediate_size 24
  assert.deepEqual(qmoe.info('model.layers.0.mlp.gate.weight').shape, [4, 32]);
  assert.ok(!qmoe.has('model.layers.1.mlp.gate.weight'));
  assert.deepEqual(qmoe.info('model.layers.0.self_attn.k_proj.weight').shape, [32, 32]); // 2 kv heads x 16
  notOnes(qmoe, 'model.layers.2.self_attn.k_norm.weight');
  qmoe.close();
  const olmoe = openSafetensors(join(root, 'olmoe', 'model.safetensors'));
  assert.deepEqual(olmoe.info('model.layers.0.self_attn.q_norm.weight').shape, [32]); // over the whole q projection
  assert.deepEqual(olmoe.info('model.layers.0.self_attn.k_norm.weight').shape, [16]); // 2 kv heads x 8
  assert.equal(olmoe.info('model.layers.1.mlp.experts.0.up_proj.weight').dtype, 'BF16');
  notOnes(olmoe, 'model.layers.0.self_attn.q_norm.weight');
  olmoe.close();
});
