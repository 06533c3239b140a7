/**
 * `skymoe export megatron` on a model trained here (skymoe train, 2 steps of the tiny preset with
 * non-default router options) and `skymoe import megatron` back: the kit is complete, the run's
 * router options reach skymoe_kit.json, hf/ holds the model's tensors byte for byte in the Mixtral
 * layout, hf/ plus the kit imports to a model with the original logits bit for bit (and hf/ alone,
 * without the kit's logit normalization, is a different model), the scripts parse and are
 * executable, the plugin is a copy of python/skymoe_megatron; bad inputs are refused naming the
 * flag or file, and nothing is left behind.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsBackend } from '../../src/backend/js/index.js';
import { importMegatron } from '../../src/export/megatron/import.js';
import { KIT_FILE, MEGATRON_LM_COMMIT } from '../../src/export/megatron/kit-config.js';
import { loadModel, readConfig } from '../../src/io/hf.js';
import { openCheckpoint } from '../../src/io/sharded.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { configToHF } from '../../src/model/config.js';
import { preset } from '../../src/model/presets.js';
import * as T from '../../src/tensor/index.js';
import { tinyLayouts } from '../model/tiny-layouts.js';
import { cliHarness } from '../cli-harness.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const { work, skymoe, fails } = cliHarness('skymoe-megatron-kit-');

const run = join(work, 'run');
const kit = join(work, 'kit');
let checkpoint = '';

before(() => {
  const t = skymoe('train', '--preset', 'tiny', '--steps', '2', '--batch', '2', '--seq', '32', '--eval-every', '0', '--capacity-factor', '1.5', '--drop-policy', 'position', '--alpha', '0.005', '--xi', '0.25', '--z-loss', '0.001', '--out', run);
  assert.equal(t.code, 0, t.err);
  checkpoint = join(run, 'checkpoints', JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8')).dir);
  const r = skymoe('export', 'megatron', '--model', run, '--gpus', '8', '--gpu', 'a100-80g', '--out', kit);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Megatron-Core kit for .*run/);
  assert.match(r.err, /export megatron: hf\/: \d+ tensors/);
});

const be = new JsBackend();
function logits(dir: string, ids: number[]): Float32Array {
  const m = loadModel(dir, be);
  try {
    return T.noGrad(() => T.tidy(() => m.forward(T.tensor(Int32Array.from(ids), [1, ids.length], 'i32', be)).logits.toFloat32()));
  } finally {
    m.dispose();
  }
}
const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const IDS = [1, 17, 250, 3, 99, 411, 8, 64, 2, 300, 7, 12];

test('the kit is complete: files, executable scripts that parse, the plugin copied, Python that compiles', () => {
  const files = readdirSync(kit).sort();
  assert.deepEqual(files, ['README.md', 'convert.sh', 'hf', KIT_FILE, 'pretrain.sh', 'pretrain_skymoe.py', 'skymoe_megatron', 'to_hf.py'].sort());
  for (const s of ['convert.sh', 'pretrain.sh', 'pretrain_skymoe.py']) {
    assert.ok((statSync(join(kit, s)).mode & 0o111) !== 0, `${s} is executable`);
  }
  for (const s of ['convert.sh', 'pretrain.sh']) {
    const r = spawnSync('bash', ['-n', join(kit, s)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `bash -n ${s}: ${r.stderr}`);
  }
  // a script that does not parse is caught (bash -n can fail)
  writeFileSync(join(work, 'broken.sh'), 'if [ 1 = 1 ]; then\n  echo\n');
  assert.notEqual(spawnSync('bash', ['-n', join(work, 'broken.sh')]).status, 0);
  const plugin = join(repo, 'python', 'skymoe_megatron');
  const shipped = readdirSync(plugin).filter((f) => f !== '__pycache__' && !f.endsWith('.pyc')).sort();
  assert.ok(shipped.includes('__init__.py'));
  assert.deepEqual(readdirSync(join(kit, 'skymoe_megatron')).sort(), shipped);
  for (const f of shipped) assert.ok(readFileSync(join(kit, 'skymoe_megatron', f)).equals(readFileSync(join(plugin, f))), f);
  assert.equal(readFileSync(join(kit, 'to_hf.py'), 'utf8'), readFileSync(join(repo, 'python', 'to_hf.py'), 'utf8'));
  const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['--version']).status === 0);
  if (python) {
    const r = spawnSync(python, ['-c', 'import ast, sys\nfor f in sys.argv[1:]: ast.parse(open(f).read(), f)', join(kit, 'pretrain_skymoe.py'), join(kit, 'to_hf.py')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
  const readme = readFileSync(join(kit, 'README.md'), 'utf8');
  for (const want of [/## The layout/, /tokens\/s per GPU/, /MFU/, /peak memory per GPU/, /convert\.sh/, /skymoe import megatron/, /What was verified, and what needs a GPU cluster/, new RegExp(MEGATRON_LM_COMMIT.slice(0, 12))]) assert.match(readme, want);
});

test("skymoe_kit.json carries the run's router options, the model config and the Mixtral config", () => {
  const k = JSON.parse(readFileSync(join(kit, KIT_FILE), 'utf8'));
  const cfg = readConfig(checkpoint);
  assert.equal(k.format, 'skymoe-megatron-kit');
  assert.equal(k.version, 1);
  assert.deepEqual(k.router, { num_experts: cfg.numExperts, top_k: cfg.topK, logits_norm: true, gate_norm_std: cfg.gateNormStd, norm_topk_prob: true });
  assert.deepEqual(k.aux_loss, { type: 'skywork', controller: { kind: 'skywork', alpha: 0.005, xi: 0.25, alpha_max: 0.01, beta: 0.99 }, capacity_factor: 1.5, drop_policy: 'position', z_loss_coeff: 0.001 });
  assert.deepEqual(k.model, configToHF(cfg));
  assert.equal(k.model.moe_use_logits_norm, true);
  assert.equal(k.source.run, join(run, 'run.json'));
  assert.equal(k.source.step, 2);
  assert.equal(k.source.alpha_per_layer.length, cfg.numLayers);
  assert.equal(k.hf.dir, 'hf');
  assert.equal(k.hf.padded_vocab_size, 512);
  assert.equal(k.mixtral_config.model_type, 'mixtral');
  assert.equal(k.mixtral_config.num_local_experts, cfg.numExperts);
  assert.equal(k.parallel.gpus, 8);
  assert.ok(k.predicted.tokens_per_gpu_second > 0 && k.predicted.mfu > 0 && k.predicted.peak_memory_bytes > 0);
  // the run's options reach pretrain.sh as Megatron flags
  const sh = readFileSync(join(kit, 'pretrain.sh'), 'utf8');
  assert.match(sh, /--moe-expert-capacity-factor 1\.5\n/);
  assert.match(sh, /--moe-token-drop-policy position\n/);
  assert.match(sh, /--moe-z-loss-coeff 0\.001\n/);
  assert.match(sh, /--moe-router-load-balancing-type none\n/);
  assert.doesNotMatch(sh, /--moe-aux-loss-coeff/);
  assert.match(sh, /--pretrained-checkpoint "\$PRETRAINED"/);
  assert.match(sh, /--padded-vocab-size 512\n/);
});

test('hf/ is the model in the Mixtral layout: every tensor byte for byte, config.json MixtralForCausalLM, the tokenizer', () => {
  const hfCfg = readConfig(join(kit, 'hf'));
  const cfg = readConfig(checkpoint);
  assert.equal(hfCfg.layout, 'mixtral');
  assert.equal(hfCfg.logitsNorm, false);
  for (const k of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'numExperts', 'topK', 'intermediateSize', 'ropeTheta', 'rmsNormEps'] as const) assert.equal(hfCfg[k], cfg[k], k);
  const a = openCheckpoint(checkpoint), b = openCheckpoint(join(kit, 'hf'));
  try {
    assert.deepEqual([...b.names()].sort(), [...a.names()].sort());
    for (const n of a.names()) {
      assert.deepEqual(b.info(n), a.info(n), n);
      assert.ok(Buffer.from(b.readRaw(n)).equals(Buffer.from(a.readRaw(n))), `${n} bytes`);
    }
  } finally {
    a.close();
    b.close();
  }
  assert.ok(existsSync(join(kit, 'hf', 'tokenizer.json')) && existsSync(join(kit, 'hf', 'tokenizer_config.json')));
});

test('import: hf/ + the kit is the original model, logits bit for bit; hf/ alone (no logit normalization) is not', async () => {
  const out = join(work, 'imported');
  const r = skymoe('import', 'megatron', '--hf', join(kit, 'hf'), '--kit', kit, '--out', out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /logit normalization \(lambda 1\) restored/);
  const cfg = readConfig(out);
  assert.equal(cfg.layout, 'skywork');
  assert.equal(cfg.logitsNorm, true);
  const want = logits(checkpoint, IDS);
  assert.ok(bytesOf(logits(out, IDS)).equals(bytesOf(want)), 'imported logits equal the original bit for bit');
  assert.ok(!bytesOf(logits(join(kit, 'hf'), IDS)).equals(bytesOf(want)), 'the Mixtral hf/ alone routes without logit normalization: another model');
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) assert.ok(existsSync(join(out, f)), f);
  // generate reads it
  const g = skymoe('generate', '--model', out, '--prompt', 'Call me', '--max-tokens', '4', '--temperature', '0');
  assert.equal(g.code, 0, g.err);
});

test("import: Megatron's padded vocabulary (rows past vocab_size) is trimmed; the logits stay bit for bit", async () => {
  const padded = join(work, 'padded-export');
  mkdirSync(padded);
  const src = openCheckpoint(join(kit, 'hf'));
  const hfCfg = JSON.parse(readFileSync(join(kit, 'hf', 'config.json'), 'utf8'));
  const V = hfCfg.vocab_size as number, P = 640;
  try {
    writeSafetensors(join(padded, 'model.safetensors'), src.names().map((n) => {
      const info = src.info(n);
      if (n !== 'model.embed_tokens.weight' && n !== 'lm_head.weight') return { name: n, dtype: info.dtype, shape: info.shape, data: src.readRaw(n) };
      const raw = src.readRaw(n), row = raw.length / V, out = new Uint8Array(P * row);
      out.set(raw);
      for (let i = V; i < P; i++) out.set(raw.subarray((V - 1) * row), i * row); // convert.py repeats the last row
      return { name: n, dtype: info.dtype, shape: [P, info.shape[1]!], data: out };
    }));
  } finally {
    src.close();
  }
  writeFileSync(join(padded, 'config.json'), JSON.stringify({ ...hfCfg, vocab_size: P }));
  const out = join(work, 'imported-padded');
  const r = await importMegatron({ hf: padded, kit, out });
  assert.equal(r.trimmedRows, P - V);
  assert.ok(bytesOf(logits(out, IDS)).equals(bytesOf(logits(checkpoint, IDS))));
});

test('export refuses bad flags naming them, and leaves nothing behind', () => {
  const out = join(work, 'bad');
  fails(['export', 'megatron', '--preset', 'tiny', '--gpu', 'a100-80g', '--out', out], /--gpus: how many GPUs/);
  fails(['export', 'megatron', '--preset', 'tiny', '--gpus', '8', '--out', out], /--gpu: which GPU/);
  fails(['export', 'megatron', '--preset', 'tiny', '--gpus', '8', '--gpu', 'tpu-v9', '--out', out], /--gpu: unknown GPU 'tpu-v9'/);
  fails(['export', 'megatron', '--preset', 'tiny', '--gpus', '0', '--gpu', 'a100-80g', '--out', out], /--gpus.*positive integer/);
  fails(['export', 'megatron', '--preset', 'tiny', '--gpus', '8', '--gpu', 'a100-80g', '--layout', 'tp=3', '--out', out], /--layout: tp 3 x pp 1 does not divide 8 GPUs/);
  fails(['export', 'megatron', '--preset', 'tiny', '--gpus', '8', '--gpu', 'a100-80g', '--layout', 'pipes=2', '--out', out], /--layout: unknown key 'pipes'/);
  fails(['export', 'megatron', '--preset', 'huge', '--gpus', '8', '--gpu', 'a100-80g', '--out', out], /--preset: unknown preset 'huge'/);
  fails(['export', 'megatron', '--gpus', '8', '--gpu', 'a100-80g', '--out', out], /--model: give the model/);
  fails(['export', 'megatron', '--preset', 'tiny', '--model', run, '--gpus', '8', '--gpu', 'a100-80g', '--out', out], /one of them/);
  fails(['export', 'megatron', '--model', join(work, 'nope'), '--gpus', '8', '--gpu', 'a100-80g', '--out', out], /nope: not found/);
  fails(['export', 'megatron', '--preset', 'tiny', '--gpus', '8', '--gpu', 'a100-80g', '--seq', '4096', '--out', out], /--seq: 4096 tokens is longer than the model's max_position_embeddings 128/);
  fails(['export', 'megatron', '--preset', 'tiny-dense', '--gpus', '8', '--gpu', 'a100-80g', '--out', out], /--preset tiny-dense: cannot be trained through the Megatron kit: a dense llama model/);
  fails(['export', 'gguf', '--preset', 'tiny', '--out', join(work, 'x.gguf')], /--preset is an option of export megatron/);
  fails(['export', 'megatron', '--model', run, '--gpus', '8', '--gpu', 'a100-80g', '--out', kit], /--out: .* exists and is not empty: give another --out, or --force/);
  assert.ok(!existsSync(out));
  assert.deepEqual(readdirSync(work).filter((f) => f.includes('.tmp-')), [], 'no temporary directory left');
});

test('--force replaces an existing kit whole', () => {
  const out = join(work, 'forced');
  mkdirSync(out);
  writeFileSync(join(out, 'stale.txt'), 'old');
  const r = skymoe('export', 'megatron', '--preset', 'tiny', '--gpus', '8', '--gpu', 'a100-80g', '--out', out, '--force');
  assert.equal(r.code, 0, r.err);
  assert.ok(!existsSync(join(out, 'stale.txt')));
  assert.ok(existsSync(join(out, KIT_FILE)));
});

test('what Megatron or the Mixtral layout cannot express is refused with the reason', () => {
  const dir = (name: string, hf: Record<string, unknown>) => {
    const d = join(work, `model-${name}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'config.json'), JSON.stringify(hf));
    return d;
  };
  const tiny = preset('tiny');
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['2layer', configToHF({ ...tiny, twoLayerGate: true }), /2-layer gate .*TopKRouter is one Linear\(H, E\)/],
    ['tied', configToHF({ ...tiny, tieWordEmbeddings: true }), /tied input and output embeddings.*loader_mixtral_hf always unties/],
    ['interval', configToHF({ ...tiny, moeInterval: 2 }), /dense layers among the MoE layers.*every layer an MoE layer/],
    ['qwen3moe', configToHF(tinyLayouts().find(([n]) => n.startsWith('qwen3_moe'))![1]), /qwen3_moe layout's q\/k norm \(per head\): the Mixtral layout and loader_mixtral_hf have none/],
    ['olmoe', configToHF(tinyLayouts().find(([n]) => n.startsWith('olmoe'))![1]), /olmoe layout's q\/k norm \(over the whole projection\)/],
  ];
  for (const [name, hf, re] of cases) {
    const r = skymoe('export', 'megatron', '--model', dir(name, hf), '--gpus', '8', '--gpu', 'a100-80g', '--out', join(work, `kit-${name}`));
    assert.notEqual(r.code, 0, name);
    assert.match(r.err, /cannot be trained through the Megatron kit/, name);
    assert.match(r.err, re, name);
    assert.doesNotMatch(r.err, /planning/, `${name}: refused before planning`);
    assert.ok(!existsSync(join(work, `kit-${name}`)), name);
  }
  // a run trained with the bias controller
  const biasRun = join(work, 'bias-run');
  cpSync(run, biasRun, { recursive: true });
  const runJson = JSON.parse(readFileSync(join(biasRun, 'run.json'), 'utf8'));
  runJson.options.controller.kind = 'bias';
  writeFileSync(join(biasRun, 'run.json'), JSON.stringify(runJson));
  fails(['export', 'megatron', '--model', biasRun, '--gpus', '8', '--gpu', 'a100-80g', '--out', join(work, 'kit-bias')], /aux-loss-free bias balancing/);
});

test('import refuses an export of another model, another layout, a bad kit, naming the file', async () => {
  const other = join(work, 'other-export');
  cpSync(join(kit, 'hf'), other, { recursive: true });
  const c = JSON.parse(readFileSync(join(other, 'config.json'), 'utf8'));
  writeFileSync(join(other, 'config.json'), JSON.stringify({ ...c, num_local_experts: 8 }));
  await assert.rejects(importMegatron({ hf: other, kit, out: join(work, 'x1') }), /other-export\/config\.json: field 'num_local_experts' is 8, the kit's model has 4/);
  await assert.rejects(importMegatron({ hf: checkpoint, kit, out: join(work, 'x2') }), /a skywork-layout model: expected the Mixtral layout/);
  const badKit = join(work, 'bad-kit');
  mkdirSync(badKit);
  writeFileSync(join(badKit, KIT_FILE), JSON.stringify({ format: 'skymoe-megatron-kit', version: 2 }));
  await assert.rejects(importMegatron({ hf: join(kit, 'hf'), kit: badKit, out: join(work, 'x3') }), /bad-kit\/skymoe_kit\.json: field 'version'/);
  await assert.rejects(importMegatron({ hf: join(kit, 'hf'), kit: join(work, 'no-kit'), out: join(work, 'x4') }), /no-kit\/skymoe_kit\.json: not found/);
  await assert.rejects(importMegatron({ hf: join(kit, 'hf'), kit, out: kit }), /--out: .* exists and is not empty/);
  for (const x of ['x1', 'x2', 'x3', 'x4']) assert.ok(!existsSync(join(work, x)), x);
  fails(['import', 'megatron', '--hf', join(kit, 'hf'), '--kit', kit, '--out', join(work, 'imported')], /exists and is not empty/);
});

test('the kit carries the model\'s own lambda (here 2.5), and import restores it: the logits of the model, bit for bit', () => {
  const model = join(work, 'lambda-model');
  cpSync(checkpoint, model, { recursive: true });
  const cfgPath = join(model, 'config.json');
  writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), moe_gate_norm_std: 2.5 }));
  const k2 = join(work, 'lambda-kit'), back = join(work, 'lambda-back');
  const r = skymoe('export', 'megatron', '--model', model, '--gpus', '8', '--gpu', 'a100-80g', '--out', k2);
  assert.equal(r.code, 0, r.err);
  const k = JSON.parse(readFileSync(join(k2, KIT_FILE), 'utf8'));
  assert.equal(k.router.gate_norm_std, 2.5);
  assert.equal(k.model.moe_gate_norm_std, 2.5);
  const i = skymoe('import', 'megatron', '--hf', join(k2, 'hf'), '--kit', k2, '--out', back);
  assert.equal(i.code, 0, i.err);
  assert.equal(Buffer.compare(bytesOf(logits(back, IDS)), bytesOf(logits(model, IDS))), 0);
  assert.notEqual(Buffer.compare(bytesOf(logits(back, IDS)), bytesOf(logits(checkpoint, IDS))), 0, 'lambda 2.5 changes the logits');
});
