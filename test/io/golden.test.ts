/**
 * Golden tests in the llm.c manner: tiny checkpoints in the Skywork (logit normalization, BF16),
 * Mixtral (GQA) and Llama (MQA, tied embeddings) layouts, with the logits an independent PyTorch
 * implementation computed for them in float64 (test/fixtures/golden/make_golden.py, written from
 * the Hugging Face modeling conventions; the fixtures are committed, so no Python is needed here).
 * A swapped w1/w3, a q/k permutation, another RoPE convention or a misplaced norm survives a
 * save -> load round trip but not this.
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
const CASES = ['skywork', 'mixtral', 'llama'] as const;

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
  test(`golden logits of the Skywork, Mixtral and Llama layouts on ${bc.label}`, async (t) => {
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

test('the fixtures are what the layouts say: BF16 Skywork with logit normalization, GQA Mixtral, tied Llama', () => {
  const sky = openSafetensors(join(root, 'skywork', 'model.safetensors'));
  assert.equal(sky.info('model.layers.0.block_sparse_moe.experts.3.w2.weight').dtype, 'BF16');
  sky.close();
  const mix = openSafetensors(join(root, 'mixtral', 'model.safetensors'));
  assert.deepEqual(mix.info('model.layers.1.self_attn.k_proj.weight').shape, [16, 32]); // 2 kv heads x 8
  mix.close();
  const llama = openSafetensors(join(root, 'llama', 'model.safetensors'));
  assert.ok(!llama.has('lm_head.weight'));
  llama.close();
});
