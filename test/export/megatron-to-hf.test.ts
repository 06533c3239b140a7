/**
 * The way back under PyTorch: the kit's to_hf.py turns a Megatron-Core GPTModel state dict of the
 * model (torch_dist's stacked-layer form, and the per-layer forms of SequentialMLP and TEGroupedMLP,
 * the vocabulary padded as convert.py pads it; made by test/export/mcore_state.py) into the kit's
 * hf/ tensors byte for byte, and `skymoe import megatron` of that gives the original model's logits
 * bit for bit; the kit's plugin reads skymoe_kit.json to the settings export wrote. The model is bf16 with grouped-query attention (2 key/value heads for 4 query heads),
 * so the per-group q/k/v layout of linear_qkv is exercised. With MEGATRON_LM set to a Megatron-LM
 * checkout, mcore_state.py also checks its layer tensors against Megatron-LM's own
 * loader_mixtral_hf.set_layer_state. Needs a Python with torch (Debian's python3-torch, which
 * .ci/run installs, or $SKYMOE_PYTHON): fails otherwise, as the plugin's equivalence test.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCheckpoint } from '../../bench/make-checkpoint.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { importMegatron } from '../../src/export/megatron/import.js';
import { loadModel } from '../../src/io/hf.js';
import { openCheckpoint } from '../../src/io/sharded.js';
import * as T from '../../src/tensor/index.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const mcoreState = fileURLToPath(new URL('../../../test/export/mcore_state.py', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'skymoe-megatron-to-hf-'));
after(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '2', SKYMOE_CACHE: join(work, 'cache') };

/** The first of $SKYMOE_PYTHON, Debian's /usr/bin/python3, python3 that imports torch (as test/export/megatron-python.test.ts). */
const python = [process.env.SKYMOE_PYTHON, '/usr/bin/python3', 'python3'].find((p) => p && spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0);
const NO_TORCH = "needs a Python with torch: Debian's python3-torch (.ci/run installs it) or SKYMOE_PYTHON";
const megatron = process.env.MEGATRON_LM && existsSync(join(process.env.MEGATRON_LM, 'tools', 'checkpoint', 'loader_mixtral_hf.py')) ? process.env.MEGATRON_LM : undefined;

const model = join(work, 'model');
const kit = join(work, 'kit');
before(async () => {
  await makeCheckpoint({ preset: 'tiny', layout: 'skywork', dtype: 'bf16', out: model, kvHeads: 2, seed: 5, std: 0.08 });
  const r = spawnSync(process.execPath, [main, 'export', 'megatron', '--model', model, '--gpus', '8', '--gpu', 'a100-80g', '--out', kit], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
});

const be = new JsBackend();
function logits(dir: string, ids: number[]): Buffer {
  const m = loadModel(dir, be);
  try {
    const l = T.noGrad(() => T.tidy(() => m.forward(T.tensor(Int32Array.from(ids), [1, ids.length], 'i32', be)).logits.toFloat32()));
    return Buffer.from(l.buffer, l.byteOffset, l.byteLength);
  } finally {
    m.dispose();
  }
}

function py(args: string[]) {
  return spawnSync(python!, args, { encoding: 'utf8' });
}

for (const form of ['stacked', 'per-layer', 'grouped']) {
  test(`to_hf.py: a Megatron state dict (${form}) -> the kit's hf/ byte for byte -> import: the original logits`, async (t) => {
    assert.ok(python, NO_TORCH);
    const sd = join(work, `${form}.pt`), hf = join(work, `hf-${form}`);
    const s = py([mcoreState, join(kit, 'hf'), form, sd, ...(megatron ? [megatron] : [])]);
    assert.equal(s.status, 0, s.stderr);
    if (megatron) assert.match(s.stdout, /equals what Megatron-LM's loader_mixtral_hf\.set_layer_state writes/);
    else t.diagnostic('MEGATRON_LM not set: the layout was not checked against Megatron-LM\'s loader here');
    const r = py([join(kit, 'to_hf.py'), '--state-dict', sd, '--out', hf]);
    assert.equal(r.status, 0, r.stderr);
    const a = openCheckpoint(join(kit, 'hf')), b = openCheckpoint(hf);
    try {
      assert.deepEqual([...b.names()].sort(), [...a.names()].sort());
      for (const n of a.names()) {
        assert.deepEqual(b.info(n), a.info(n), n);
        assert.ok(Buffer.from(b.readRaw(n)).equals(Buffer.from(a.readRaw(n))), `${n}: bytes differ`);
      }
    } finally {
      a.close();
      b.close();
    }
    const out = join(work, `model-${form}`);
    await importMegatron({ hf, kit, out });
    const ids = [1, 5, 77, 200, 3, 411, 9, 2];
    assert.ok(logits(out, ids).equals(logits(model, ids)), 'logits bit for bit');
  });
}

test('to_hf.py names what a state dict lacks, and writes nothing', () => {
  assert.ok(python, NO_TORCH);
  const sd = join(work, 'broken.pt'), hf = join(work, 'hf-broken');
  assert.equal(py([mcoreState, join(kit, 'hf'), 'per-layer', sd]).status, 0);
  const drop = py(['-c', 'import sys, torch\nd = torch.load(sys.argv[1])\ndel d["decoder.layers.1.mlp.experts.local_experts.3.linear_fc2.weight"]\ntorch.save(d, sys.argv[1])', sd]);
  assert.equal(drop.status, 0, drop.stderr);
  const r = py([join(kit, 'to_hf.py'), '--state-dict', sd, '--out', hf]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /ConversionError: expert 3's linear_fc2 is missing/);
  assert.ok(!existsSync(hf) && !existsSync(`${hf}.tmp`));
});

test("the kit's plugin reads skymoe_kit.json as export wrote it; pretrain_skymoe.py names a missing Megatron-LM", () => {
  assert.ok(python, NO_TORCH);
  const r = py(['-c', 'import dataclasses, json, sys\nsys.path.insert(0, sys.argv[1])\nimport skymoe_megatron\nk = skymoe_megatron.load_kit()\nprint(json.dumps({"router": dataclasses.asdict(k.router), "aux_loss": dataclasses.asdict(k.aux_loss)}))', kit]);
  assert.equal(r.status, 0, r.stderr);
  const read = JSON.parse(r.stdout);
  const written = JSON.parse(readFileSync(join(kit, 'skymoe_kit.json'), 'utf8'));
  assert.deepEqual(read.router, written.router);
  const { z_loss_coeff: _z, ...aux } = written.aux_loss;
  assert.deepEqual(read.aux_loss, aux);
  const entry = spawnSync(python!, [join(kit, 'pretrain_skymoe.py')], { encoding: 'utf8', env: { ...process.env, MEGATRON_LM: join(work, 'no-megatron') } });
  assert.notEqual(entry.status, 0);
  assert.match(entry.stderr, /set MEGATRON_LM to a Megatron-LM checkout with pretrain_gpt\.py/);
});
