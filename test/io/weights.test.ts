/**
 * Weights as inference holds them: in their stored dtype, read in place from memory-mapped files on
 * native (no heap copy, asserted on heap bytes) or copied into the heap on wasm and js; the golden
 * logits through that path; sharded and single-file checkpoints with per-expert tensors; FP8
 * checkpoints written by `quantize` (Skywork/vLLM layout) and bf16/fp8 conversion on load, each
 * against the same model with its weights dequantized to f32; corrupt files; what cannot train.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../../src/backend/backend.js';
import { loadModel, loadModelWithReport, saveModel } from '../../src/io/hf.js';
import { openCheckpoint } from '../../src/io/sharded.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import { preset } from '../../src/model/presets.js';
import { expertValues, type Param, paramValues, SkyworkMoE } from '../../src/model/skywork-moe.js';
import { quantizeCheckpoint } from '../../src/quant/quantize.js';
import * as T from '../../src/tensor/index.js';
import { allBackends, assertCloseToScale, tryCreate } from '../helpers.js';

const golden = fileURLToPath(new URL('../../../test/fixtures/golden', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'skymoe-weights-'));
after(() => rmSync(work, { recursive: true, force: true }));

const ids = Int32Array.from([1, 5, 60, 3, 77, 20, 9, 41, 0, 88, 13, 2]);

function logitsOf(m: SkyworkMoE, be: Backend, tokens: Int32Array = ids, rows = 1): Float32Array {
  return T.noGrad(() => T.tidy(() => m.forward(T.tensor(tokens, [rows, tokens.length / rows], 'i32', be)).logits.toFloat32()));
}

/** The same model with every weight dequantized into an f32 tensor (the reference for weight-only quantization). */
function dequantizedTwin(m: SkyworkMoE, be: Backend): SkyworkMoE {
  const params = new Map<string, Param>();
  for (const [name, p] of m.params) params.set(name, T.keep(T.tensor(paramValues(p), [...p.shape], 'f32', be)));
  return SkyworkMoE.fromParams(m.config, params, be);
}

function compareRows(got: Float32Array, want: Float32Array, V: number, what: string, tol = 2e-5): void {
  for (let r = 0; r * V < want.length; r++) assertCloseToScale(got.subarray(r * V, (r + 1) * V), want.subarray(r * V, (r + 1) * V), `${what} position ${r}`, tol);
}

/**
 * On every backend, an FP8 checkpoint loaded as stored (auto) computes what its weights
 * dequantized to f32 compute; with `f32Load`, so does its f32 load (the scales applied the same way).
 */
async function fp8MatchesDequantized(dir: string, what: string, f32Load: boolean): Promise<void> {
  for (const bc of allBackends()) {
    const be = await tryCreate(bc);
    if (!be) continue;
    const fp8 = loadModel(dir, be, { dtype: 'auto' });
    const ref = dequantizedTwin(fp8, be);
    compareRows(logitsOf(fp8, be), logitsOf(ref, be), 96, `${what} on ${bc.label}`);
    if (f32Load) {
      const f32 = loadModel(dir, be, { dtype: 'f32' });
      compareRows(logitsOf(f32, be), logitsOf(ref, be), 96, `${what} loaded as f32 on ${bc.label}`);
      f32.dispose();
    }
    for (const m of [fp8, ref]) m.dispose();
    await be.dispose();
  }
}

for (const bc of allBackends()) {
  test(`golden logits through weights in their stored dtype (auto), ${bc.label}: mapped on native, copied elsewhere`, async (t) => {
    const be = await tryCreate(bc);
    if (!be) return t.skip(`${bc.label} not available`);
    try {
      for (const name of ['skywork', 'mixtral', 'llama', 'qwen3', 'qwen3_moe', 'olmoe']) {
        const dir = join(golden, name);
        const f = openSafetensors(join(dir, 'golden.safetensors'));
        const tokens = Int32Array.from(f.readI64('input_ids'), Number), want = f.readF32('logits');
        f.close();
        const before = be.heap.stats().inUse;
        const { model, report } = loadModelWithReport(dir, be, { dtype: 'auto' });
        const stored = openCheckpoint(dir);
        const fileBytes = stored.names().reduce((s, n) => s + stored.info(n).byteLength, 0);
        stored.close();
        if (be.mapFile) {
          assert.ok(report.mappedBytes > 0.95 * fileBytes && report.mappedFiles === 1, `${name}: ${JSON.stringify(report)}`);
          // only norms and the router (f32) are in the heap
          assert.ok(be.heap.stats().inUse - before < 0.05 * fileBytes + 64 * 1024, `${name}: heap grew by ${be.heap.stats().inUse - before} for ${fileBytes} bytes of weights`);
        } else assert.equal(report.mappedBytes, 0);
        if (name === 'skywork' || name === 'olmoe') assert.ok(report.bytesByDtype.bf16! > 0.9 * fileBytes, 'the bf16 matrices stay bf16');
        compareRows(logitsOf(model, be, tokens, 2), want, 96, `${name} on ${bc.label}`);
        model.dispose();
      }
    } finally {
      await be.dispose();
    }
  });
}

test('sharded and single-file bf16 checkpoints with per-expert tensors: mapped (no heap copy) and computing what the f32 load computes', async () => {
  for (const bc of allBackends().filter((b) => b.label === 'native/2' || b.label === 'wasm/2')) {
    const be = await tryCreate(bc);
    if (!be) continue;
    T.setBackend(be);
    const m = SkyworkMoE.create({ ...preset('tiny'), initializerRange: 0.1 }, { seed: 7, backend: be });
    for (const shards of [1, 4]) {
      const dir = join(work, `tiny-bf16-${shards}-${bc.label.replace('/', '')}`);
      saveModel(m, dir, { dtype: 'BF16', maxShardBytes: shards === 1 ? undefined : 150_000 });
      const r = openCheckpoint(dir);
      assert.equal(r.shardFiles().length >= shards, true);
      r.close();
      const before = be.heap.stats().inUse;
      const { model: mapped, report } = loadModelWithReport(dir, be, { dtype: 'auto' });
      const grew = be.heap.stats().inUse - before;
      if (be.mapFile) {
        assert.ok(report.mappedFiles >= shards && report.mappedBytes > 500_000, JSON.stringify(report));
        assert.ok(grew < 0.05 * report.mappedBytes, `heap grew by ${grew} with ${report.mappedBytes} bytes mapped`);
      } else assert.ok(grew >= report.heapBytes, 'copied into the heap');
      const f32 = loadModel(dir, be, { dtype: 'f32' });
      compareRows(logitsOf(mapped, be), logitsOf(f32, be), 512, `${shards} shard(s) on ${bc.label}`);
      assert.throws(() => mapped.parameters(), /is a bf16 (mapped )?weight, not a trainable f32 tensor: load the model with dtype f32 to train it/);
      mapped.dispose();
      f32.dispose();
    }
    m.dispose();
    await be.dispose();
  }
});

test('quantize --to fp8: the Skywork/vLLM layout, and its logits are those of the dequantized weights', async () => {
  const src = join(golden, 'mixtral');
  for (const perRow of [false, true]) {
    const out = join(work, `fp8-${perRow}`);
    const res = quantizeCheckpoint(src, out, { to: 'fp8', perRow, report: true });
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(cfg.quantization_config, { quant_method: 'fp8', activation_scheme: 'dynamic' });
    const r = openCheckpoint(out);
    const info = (n: string) => r.info(n);
    for (const n of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.o_proj.weight', 'model.layers.0.block_sparse_moe.experts.3.w2.weight']) {
      assert.equal(info(n).dtype, 'F8_E4M3', n);
      assert.equal(info(`${n}_scale`).dtype, 'F32');
      assert.deepEqual(info(`${n}_scale`).shape, perRow ? [info(n).shape[0], 1] : []);
    }
    for (const n of ['model.embed_tokens.weight', 'lm_head.weight', 'model.layers.0.block_sparse_moe.gate.weight', 'model.norm.weight', 'model.layers.1.input_layernorm.weight']) {
      assert.equal(info(n).dtype, 'BF16', n);
      assert.ok(!r.has(`${n}_scale`), `${n} has no scale`);
    }
    if (!perRow) {
      // an expert's w1 and w3 share one scale (vLLM fuses them into one projection)
      const s1 = r.readF32('model.layers.1.block_sparse_moe.experts.2.w1.weight_scale')[0]!, s3 = r.readF32('model.layers.1.block_sparse_moe.experts.2.w3.weight_scale')[0]!;
      assert.equal(s1, s3);
      const w1 = openCheckpoint(src).readF32('model.layers.1.block_sparse_moe.experts.2.w1.weight'), w3 = openCheckpoint(src).readF32('model.layers.1.block_sparse_moe.experts.2.w3.weight');
      assert.ok(Math.abs(s1 - Math.max(...w1.map(Math.abs), ...w3.map(Math.abs)) / 448) < 1e-6 * s1);
    }
    r.close();
    assert.ok(res.bytes < 0.4 * res.sourceBytes, `${res.bytes} of ${res.sourceBytes} bytes`);
    assert.ok(res.tensors.every((t) => t.relRms < (t.dtype === 'BF16' ? 5e-3 : 0.05)), 'quantization errors are E4M3/bf16 sized');
    // the loaded weights are the stored codes times their scales, decoded independently here
    const reader = openCheckpoint(out);
    const dequant = (name: string) => {
      const v = reader.readF32(name), s = reader.readF32(`${name}_scale`), cols = reader.info(name).shape[1]!;
      return v.map((x, i) => x * s[s.length === 1 ? 0 : Math.floor(i / cols)]!);
    };
    const be0 = new (await import('../../src/backend/js/index.js')).JsBackend();
    const loaded = loadModel(out, be0, { dtype: 'auto' });
    assert.deepEqual(Array.from(paramValues(loaded.params.get('model.layers.1.self_attn.v_proj.weight')!)), Array.from(dequant('model.layers.1.self_attn.v_proj.weight')));
    assert.deepEqual(Array.from(expertValues(loaded.params.get('model.layers.0.block_sparse_moe.experts.w2')!, 3)), Array.from(dequant('model.layers.0.block_sparse_moe.experts.3.w2.weight')));
    // and close to the original f32 weights (E4M3: ~3% relative)
    const orig = openCheckpoint(src).readF32('model.layers.1.self_attn.v_proj.weight');
    const got = paramValues(loaded.params.get('model.layers.1.self_attn.v_proj.weight')!);
    const err = Math.sqrt(got.reduce((a, v, i) => a + (v - orig[i]!) ** 2, 0) / orig.reduce((a, v) => a + v * v, 0));
    assert.ok(err < 0.05, `relative error ${err}`);
    loaded.dispose();
    reader.close();
    await fp8MatchesDequantized(out, `fp8 per-row=${perRow}`, true);
  }
  assert.throws(() => quantizeCheckpoint(join(work, 'fp8-false'), join(work, 'again'), { to: 'fp8' }), /already quantized/);
});

test('quantize --to fp8 of Qwen3-MoE and OLMoE: the experts\' own names, gate_proj and up_proj sharing a scale, q/k norms and routers kept bf16', async () => {
  for (const name of ['qwen3_moe', 'olmoe']) {
    const src = join(golden, name), out = join(work, `fp8-${name}`);
    quantizeCheckpoint(src, out, { to: 'fp8' });
    const r = openCheckpoint(out);
    const E = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')).num_experts as number;
    for (let e = 0; e < E; e++) {
      const p = `model.layers.0.mlp.experts.${e}`;
      for (const w of ['gate_proj', 'up_proj', 'down_proj']) assert.equal(r.info(`${p}.${w}.weight`).dtype, 'F8_E4M3', `${p}.${w}`);
      assert.equal(r.readF32(`${p}.gate_proj.weight_scale`)[0], r.readF32(`${p}.up_proj.weight_scale`)[0], `${p}: gate_proj and up_proj share a scale`);
      assert.notEqual(r.readF32(`${p}.gate_proj.weight_scale`)[0], r.readF32(`${p}.down_proj.weight_scale`)[0]);
    }
    for (const n of ['model.layers.0.mlp.gate.weight', 'model.layers.0.self_attn.q_norm.weight', 'model.layers.0.self_attn.k_norm.weight', 'model.embed_tokens.weight']) {
      assert.equal(r.info(n).dtype, 'BF16', n);
      assert.ok(!r.has(`${n}_scale`), n);
    }
    if (name === 'qwen3_moe') assert.equal(r.info('model.layers.1.mlp.gate_proj.weight').dtype, 'F8_E4M3', 'the dense layer\'s MLP is quantized');
    r.close();
    await fp8MatchesDequantized(out, `${name} fp8`, true);
  }
});

test('--dtype bf16 and fp8 convert on load; their logits are those of the converted weights dequantized', async () => {
  for (const bc of allBackends()) {
    const be = await tryCreate(bc);
    if (!be) continue;
    for (const [dir, dtype] of [['llama', 'bf16'], ['llama', 'fp8'], ['qwen3_moe', 'bf16'], ['olmoe', 'fp8']] as const) {
      const { model, report } = loadModelWithReport(join(golden, dir), be, { dtype });
      assert.equal(report.mappedBytes, 0, 'converted weights live in the heap');
      if (dtype === 'fp8') assert.ok(report.bytesByDtype.f8_e4m3! > 0 && report.bytesByDtype.bf16! > 0, 'fp8 projections, bf16 embedding');
      const ref = dequantizedTwin(model, be);
      compareRows(logitsOf(model, be), logitsOf(ref, be), 96, `${dir} ${dtype} on ${bc.label}`);
      model.dispose();
      ref.dispose();
    }
    await be.dispose();
  }
});

test('a corrupt or truncated checkpoint still gets the named error on the mapping path; quantization methods skymoe cannot compute are refused', async () => {
  const dir = join(work, 'broken');
  saveModel(SkyworkMoE.create(preset('tiny'), { seed: 1, backend: new (await import('../../src/backend/js/index.js')).JsBackend() }), dir, { dtype: 'BF16' });
  const file = join(dir, 'model.safetensors');
  for (const bc of allBackends()) {
    const be = await tryCreate(bc);
    if (!be) continue;
    const bytes = readFileSync(file);
    truncateSync(file, bytes.length - 10);
    assert.throws(() => loadModel(dir, be, { dtype: 'auto' }), (e: Error) => e.message.includes(file) && /trailing|past the end|needs/.test(e.message));
    writeFileSync(file, bytes);
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    copyFileSync(cfgPath, `${cfgPath}.bak`);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, quantization_config: { quant_method: 'gptq', bits: 4 } }));
    assert.throws(() => loadModel(dir, be, { dtype: 'auto' }), /quantization_config\.quant_method': "gptq" is not supported/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128] } }));
    assert.throws(() => loadModel(dir, be, { dtype: 'auto' }), /weight_block_size.*not supported/);
    copyFileSync(`${cfgPath}.bak`, cfgPath);
    await be.dispose();
  }
});

test('review fixes: scales only beside FP8 tensors in every load path; quantize refuses NaN, names a bad config; row scales counted in the heap', async () => {
  const { JsBackend } = await import('../../src/backend/js/index.js');
  const be = new JsBackend();
  // a stray weight_scale beside a BF16 tensor is refused whatever --dtype says
  const dir = join(work, 'stray-scale');
  const m = SkyworkMoE.create(preset('tiny'), { seed: 3, backend: be });
  saveModel(m, dir, { dtype: 'BF16' });
  const file = join(dir, 'model.safetensors');
  const r = openSafetensors(file);
  const tensors = r.names().map((n) => ({ name: n, dtype: r.info(n).dtype, shape: r.info(n).shape, data: r.readRaw(n) }));
  r.close();
  const { writeSafetensors } = await import('../../src/io/safetensors.js');
  writeSafetensors(file, [...tensors, { name: 'model.norm.weight_scale', dtype: 'F32', shape: [], data: Float32Array.of(2) }], { format: 'pt' });
  for (const dtype of ['auto', 'f32', 'bf16'] as const) assert.throws(() => loadModel(dir, be, { dtype }), /'model\.norm\.weight' is BF16 but has a scale 'model\.norm\.weight_scale'/, dtype);
  // quantize: NaN refused naming the tensor; config.json errors name the file
  const nan = join(work, 'nan');
  const bad = SkyworkMoE.create(preset('tiny'), { seed: 4, backend: be });
  const q = bad.params.get('model.layers.0.self_attn.q_proj.weight') as T.Tensor;
  const v = q.toFloat32();
  v[5] = NaN;
  q.assign(v);
  saveModel(bad, nan);
  assert.throws(() => quantizeCheckpoint(nan, join(work, 'nan-fp8'), { to: 'fp8' }), /tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' has a non-finite value \(NaN\) at element 5/);
  writeFileSync(join(nan, 'config.json'), '{ "model_type": mixtral');
  assert.throws(() => quantizeCheckpoint(nan, join(work, 'nan-fp8'), { to: 'fp8' }), /nan\/config\.json: not valid JSON/);
  // per-row scales live in the heap and are counted there, by the load and by inspect's plan
  const native = await tryCreate(allBackends().find((b) => b.label === 'native/2')!);
  if (native) {
    const pr = join(work, 'fp8-rows');
    quantizeCheckpoint(join(golden, 'mixtral'), pr, { to: 'fp8', perRow: true });
    const { model, report } = loadModelWithReport(pr, native, { dtype: 'auto' });
    // rows of the mixtral fixture per layer: q 32 + k 16 + v 16 + o 32, 4 experts x (w1 40 + w3 40 + w2 32); 2 layers
    const rowScaleBytes = 4 * 2 * (96 + 4 * 112);
    const f32Bytes = 4 * (2 * (2 * 32 + 4 * 32) + 32); // norms and routers
    assert.equal(report.heapBytes, f32Bytes + rowScaleBytes);
    const { loadPlan } = await import('../../src/io/weights.js');
    assert.equal(loadPlan(pr, model.config).smallHeapBytes, f32Bytes + rowScaleBytes);
    model.dispose();
    await native.dispose();
  }
  m.dispose();
  bad.dispose();
});

test('an expert weight used after dispose is named, not read from freed memory', async () => {
  const { JsBackend } = await import('../../src/backend/js/index.js');
  const be = new JsBackend();
  T.setBackend(be);
  const model = loadModel(join(golden, 'mixtral'), be, { dtype: 'auto' });
  const experts = model.params.get('model.layers.0.block_sparse_moe.experts.w1') as T.ExpertWeights;
  experts.experts[2]!.dispose();
  assert.throws(() => T.groupedMatmul(T.zeros([1, 32]), experts, Int32Array.of(0, 0, 0, 1, 1)), /use of a disposed expert weight 'model\.layers\.0\.block_sparse_moe\.experts\.2\.w1\.weight'/);
  model.dispose();
});
