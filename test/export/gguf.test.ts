/**
 * GGUF export: the file read back by a reader of our own (metadata, tokenizer, every tensor's
 * values in each type, the q/k RoPE permutation), llama.cpp's Q8_0 rounding, refusals of what
 * llama.cpp cannot compute, corrupt files; and llama.cpp itself (node-llama-cpp, when the peer is
 * installed): its greedy continuation of the exported f32 model equals skymoe's for 32 tokens.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../src/backend/index.js';
import { exportGguf, permuteRopeRows } from '../../src/export/gguf.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from '../../src/io/dtypes.js';
import { decodeGgml, GgufError, GgufReader, quantizeQ8_0 } from '../../src/io/gguf.js';
import { loadModel, readConfig } from '../../src/io/hf.js';
import { openCheckpoint } from '../../src/io/sharded.js';
import { loadTokenizer } from '../../src/io/tokenizer/index.js';
import { generateTokens } from '../../src/infer/generate.js';
import { makeCheckpoint } from '../../bench/make-checkpoint.js';
import { llamaGreedy, loadLlamaPeer } from '../../bench/peers/llama.js';
import { ReferenceModel } from '../reference/model64.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { saveModel } from '../../src/io/hf.js';
import type { ModelConfig } from '../../src/model/config.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import type { Tensor } from '../../src/tensor/index.js';
import { tinyLayouts } from '../model/tiny-layouts.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-gguf-'));
after(() => rmSync(work, { recursive: true, force: true }));
const model = join(work, 'mix');
// GQA (4 query heads on 2 kv heads): the k permutation must use the kv head count
const ready = makeCheckpoint({ preset: 'tiny', layout: 'mixtral', dtype: 'f32', out: model, std: 0.08, seed: 3, kvHeads: 2 });
/**
 * Each greedy token of `ours` is the argmax of the float64 reference forward over the prefix; the
 * smallest gap between the best and second-best logit (a comparison of greedy outputs means
 * something only without near ties).
 */
function float64ArgmaxGap(dir: string, prompt: number[], ours: number[], what: string): number {
  const ref = new ReferenceModel(dir);
  const seq = [...prompt];
  let gap = Infinity;
  for (const id of ours) {
    const row = ref.forward(seq).at(-1)!;
    const s = Array.from(row).sort((a, b) => b - a);
    gap = Math.min(gap, s[0]! - s[1]!);
    assert.equal(row.indexOf(s[0]!), id, `${what}: skymoe took the float64 argmax`);
    seq.push(id);
  }
  assert.ok(gap > 1e-4, `${what}: smallest argmax gap ${gap}`);
  return gap;
}

/** The f32 export, written once by whichever test needs it first. */
let f32Export: Promise<string> | null = null;
const exportedF32 = () => (f32Export ??= ready.then(async () => (await exportGguf(model, join(work, 'mix-f32.gguf'), { type: 'f32' }), join(work, 'mix-f32.gguf'))));

test('the GGUF reads back: architecture, sizes, tokenizer, and every tensor in f32, f16, bf16 and q8_0', async () => {
  await ready;
  const cfg = readConfig(model);
  const tok = await loadTokenizer(model);
  const src = openCheckpoint(model);
  for (const type of ['f32', 'f16', 'bf16', 'q8_0'] as const) {
    const file = join(work, `mix-${type}-roundtrip.gguf`);
    const r = await exportGguf(model, file, { type });
    const g = GgufReader.open(file);
    try {
      const m = g.metadata;
      assert.equal(m.get('general.architecture'), 'llama');
      assert.equal(m.get('general.file_type'), { f32: 0, f16: 1, q8_0: 7, bf16: 32 }[type]);
      for (const [k, v] of [['block_count', cfg.numLayers], ['embedding_length', cfg.hiddenSize], ['feed_forward_length', cfg.intermediateSize], ['attention.head_count', cfg.numHeads], ['attention.head_count_kv', cfg.numKvHeads], ['expert_count', cfg.numExperts], ['expert_used_count', cfg.topK], ['context_length', cfg.maxPositions], ['rope.dimension_count', cfg.headDim]] as const) assert.equal(m.get(`llama.${k}`), v, k);
      assert.ok(Math.abs((m.get('llama.rope.freq_base') as number) - cfg.ropeTheta) < 1e-3);
      assert.ok(Math.abs((m.get('llama.attention.layer_norm_rms_epsilon') as number) - cfg.rmsNormEps) < 1e-9);
      const tokens = m.get('tokenizer.ggml.tokens') as string[];
      assert.equal(tokens.length, cfg.vocabSize);
      for (const id of [0, 1, 2, 300, tok.vocabSize - 1]) assert.equal(tokens[id], tok.idToToken(id));
      assert.deepEqual((m.get('tokenizer.ggml.merges') as string[]).slice(0, 3), tok.merges.slice(0, 3).map(([a, b]) => `${a} ${b}`));
      assert.deepEqual([m.get('tokenizer.ggml.bos_token_id'), m.get('tokenizer.ggml.eos_token_id')], [cfg.bosTokenId, cfg.eosTokenId]);
      assert.equal((m.get('tokenizer.ggml.token_type') as number[])[cfg.bosTokenId], 3, 'special tokens are control tokens');
      assert.equal(g.tensors.length, r.tensors);
      // every tensor: ggml dims are the HF shape reversed; values as the type encodes them
      const check = (name: string, hfShape: number[], want: Float32Array, matrix: boolean) => {
        const t = g.tensor(name);
        assert.deepEqual(t.ne, [...hfShape].reverse(), name);
        const got = g.readF32(name);
        const kind = matrix ? type : 'f32';
        if (kind === 'f32') assert.deepEqual(Array.from(got), Array.from(want), name);
        else if (kind === 'f16') assert.deepEqual(Array.from(got), Array.from(decodeF16(encodeF16(want))), name);
        else if (kind === 'bf16') assert.deepEqual(Array.from(got), Array.from(decodeBf16(encodeBf16(want))), name);
        else {
          // each value within half a step (amax / 127 / 2) of its block's scale
          for (let b = 0; b < want.length / 32; b++) {
            const blk = want.subarray(b * 32, b * 32 + 32);
            const step = Math.max(...blk.map(Math.abs)) / 127;
            // half a step of rounding, plus the f16 rounding of the scale (2^-11 relative) times |q| <= 127
            for (let i = 0; i < 32; i++) assert.ok(Math.abs(got[b * 32 + i]! - blk[i]!) <= step * (0.5 + 127 * 2 ** -11) + 1e-12, `${name} block ${b}`);
          }
        }
      };
      const H = cfg.hiddenSize, E = cfg.numExperts, F = cfg.intermediateSize;
      check('token_embd.weight', [cfg.vocabSize, H], src.readF32('model.embed_tokens.weight'), true);
      check('output.weight', [cfg.vocabSize, H], src.readF32('lm_head.weight'), true);
      check('output_norm.weight', [H], src.readF32('model.norm.weight'), false);
      for (let l = 0; l < cfg.numLayers; l++) {
        const p = `model.layers.${l}`, b = `blk.${l}`;
        check(`${b}.attn_norm.weight`, [H], src.readF32(`${p}.input_layernorm.weight`), false);
        check(`${b}.attn_q.weight`, [H, H], permuteRopeRows(src.readF32(`${p}.self_attn.q_proj.weight`), cfg.numHeads, H), true);
        check(`${b}.attn_k.weight`, [cfg.numKvHeads * cfg.headDim, H], permuteRopeRows(src.readF32(`${p}.self_attn.k_proj.weight`), cfg.numKvHeads, H), true);
        check(`${b}.attn_v.weight`, [cfg.numKvHeads * cfg.headDim, H], src.readF32(`${p}.self_attn.v_proj.weight`), true);
        check(`${b}.ffn_gate_inp.weight`, [E, H], src.readF32(`${p}.block_sparse_moe.gate.weight`), false);
        for (const [w, name, shape] of [['w1', 'ffn_gate_exps', [E, F, H]], ['w3', 'ffn_up_exps', [E, F, H]], ['w2', 'ffn_down_exps', [E, H, F]]] as const) {
          const per = shape[1] * shape[2];
          const stacked = new Float32Array(E * per);
          for (let e = 0; e < E; e++) stacked.set(src.readF32(`${p}.block_sparse_moe.experts.${e}.${w}.weight`), e * per);
          check(`${b}.${name}.weight`, [...shape], stacked, true);
        }
      }
    } finally {
      g.close();
    }
  }
  src.close();
});

test('permuteRopeRows turns rotate-half pairs (i, i + D/2) into adjacent rows (2i, 2i + 1), per head', () => {
  // 2 heads of D = 4, 1 column: rows h0: [a0 a1 b0 b1] -> [a0 b0 a1 b1]
  const w = Float32Array.from([10, 11, 20, 21, 30, 31, 40, 41]);
  assert.deepEqual(Array.from(permuteRopeRows(w, 2, 1)), [10, 20, 11, 21, 30, 40, 31, 41]);
});

test("Q8_0 as llama.cpp's quantize_row_q8_0_ref: d = amax / 127 in f16, q = round half away from zero", () => {
  const x = new Float32Array(32);
  x[0] = 127; // amax 127 -> d 1
  x[1] = 2.5; // 2.5 -> 3 (away from zero)
  x[2] = -2.5; // -> -3
  x[3] = -0.49;
  x[4] = 63.5;
  const q = quantizeQ8_0(x);
  assert.equal(new DataView(q.buffer).getUint16(0, true), 0x3c00); // f16 1.0
  assert.deepEqual(Array.from(new Int8Array(q.buffer, 2, 5)), [127, 3, -3, 0, 64]);
  assert.deepEqual(Array.from(decodeGgml('Q8_0', q, 32).subarray(0, 5)), [127, 3, -3, 0, 64]);
  assert.throws(() => quantizeQ8_0(new Float32Array(33)), /multiple of 32/);
});

test('models llama.cpp cannot compute are refused, naming why; damaged GGUF files are named', async () => {
  await ready;
  const sky = join(work, 'sky');
  await makeCheckpoint({ preset: 'tiny', dtype: 'f32', out: sky, seed: 5 });
  await assert.rejects(exportGguf(sky, join(work, 'sky.gguf'), { type: 'f16' }), /sky\/config\.json: cannot export to GGUF: the model uses gating logit normalization/);
  const cfgPath = join(sky, 'config.json');
  const c = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...c, moe_use_logits_norm: false, moe_2layer_gate: true }));
  await assert.rejects(exportGguf(sky, join(work, 'sky.gguf'), { type: 'f16' }), /2-layer gate/);
  writeFileSync(cfgPath, JSON.stringify({ ...c, moe_use_logits_norm: false, moe_expert_interval: 2 }));
  await assert.rejects(exportGguf(sky, join(work, 'sky.gguf'), { type: 'f16' }), /mixes dense and MoE layers/);
  const bytes = readFileSync(await exportedF32());
  const cut = join(work, 'cut.gguf');
  writeFileSync(cut, bytes);
  truncateSync(cut, bytes.length - 100);
  assert.throws(() => GgufReader.open(cut), /cut\.gguf: tensor 'output\.weight' .* runs past the end of the file/);
  const bad = Buffer.from(bytes);
  bad.write('GGUX', 0);
  writeFileSync(cut, bad);
  assert.throws(() => GgufReader.open(cut), /cut\.gguf: not a GGUF file/);
  // A directory in place of the file: a GgufError naming it, not the EISDIR of readSync.
  const dir = join(work, 'dir.gguf');
  mkdirSync(dir);
  assert.throws(() => GgufReader.open(dir), (e: Error) => e instanceof GgufError && e.message.startsWith(`${dir}: read failed`) && /EISDIR/.test(e.message));
});

test("llama.cpp's greedy continuation of the exported f32 GGUF equals skymoe's for 32 tokens", async (t) => {
  await ready;
  const peer = await loadLlamaPeer();
  if ('unavailable' in peer) return t.skip(peer.unavailable);
  t.diagnostic(`node-llama-cpp ${peer.version}`);
  const be = await createBackend({ threads: 2 });
  const m = loadModel(model, be, { dtype: 'auto' });
  const prompt = [1, 40, 41, 42, 300, 7];
  const ours = [...generateTokens(m, prompt, { maxTokens: 32, temperature: 0, stopIds: [] })].map((x) => x.id);
  m.dispose();
  await be.dispose();
  // the comparison means something only when no step is a near tie (float64 reference)
  float64ArgmaxGap(model, prompt, ours, 'mixtral');
  const theirs = await llamaGreedy(peer, await exportedF32(), prompt, 32, 2, 'F32');
  assert.deepEqual(theirs.ids, ours);
  await peer.llama.dispose();
});

test('an FP8 checkpoint exports its real values: the weight_scale applied', async () => {
  await ready;
  const { quantizeCheckpoint } = await import('../../src/quant/quantize.js');
  const { readRealValues } = await import('../../src/io/weights.js');
  const fp8 = join(work, 'mix-fp8');
  quantizeCheckpoint(model, fp8, { to: 'fp8' });
  const file = join(work, 'mix-fp8.gguf');
  await exportGguf(fp8, file, { type: 'f32' });
  const g = GgufReader.open(file);
  const src = openCheckpoint(fp8);
  try {
    assert.deepEqual(Array.from(g.readF32('blk.1.attn_v.weight')), Array.from(readRealValues(src, 'model.layers.1.self_attn.v_proj.weight', fp8).values));
    const E = readConfig(fp8).numExperts;
    const per = g.tensor('blk.0.ffn_down_exps.weight').ne[0]! * g.tensor('blk.0.ffn_down_exps.weight').ne[1]!;
    const want = new Float32Array(E * per);
    for (let e = 0; e < E; e++) want.set(readRealValues(src, `model.layers.0.block_sparse_moe.experts.${e}.w2.weight`, fp8).values, e * per);
    assert.deepEqual(Array.from(g.readF32('blk.0.ffn_down_exps.weight')), Array.from(want));
    // and the values are the original weights to E4M3 precision, not raw codes
    const orig = openCheckpoint(model).readF32('model.layers.1.self_attn.v_proj.weight');
    const got = g.readF32('blk.1.attn_v.weight');
    assert.ok(Math.max(...got.map((v, i) => Math.abs(v - orig[i]!))) < 0.1 * Math.max(...orig.map(Math.abs)));
  } finally {
    g.close();
    src.close();
  }
});

/** Tiny Qwen3, Qwen3-MoE and OLMoE checkpoints (GQA, q/k norms away from 1) with the mixtral model's tokenizer. */
async function newArchCheckpoints(): Promise<{ name: string; dir: string; cfg: ModelConfig }[]> {
  await ready;
  const layouts = tinyLayouts();
  const pick = (layout: string) => layouts.find(([, c]) => c.layout === layout)![1];
  const cases: [string, ModelConfig][] = [
    ['qwen3', { ...pick('qwen3'), initializerRange: 0.08 }],
    ['qwen3_moe', { ...pick('qwen3_moe'), numLayers: 2, mlpOnlyLayers: [], initializerRange: 0.08 }],
    // MHA: llama.cpp's olmoe sizes the k norm by the embedding length (GQA is refused, below)
    ['olmoe', { ...pick('olmoe'), numKvHeads: 4, initializerRange: 0.08 }],
  ];
  const be = new JsBackend();
  return cases.map(([name, cfg], i) => {
    const dir = join(work, `arch-${name}`);
    const m = SkyworkMoE.create(cfg, { seed: 20 + i, backend: be });
    for (const [n, p] of m.params) {
      if (/(q|k)_norm|layernorm|model\.norm/.test(n)) (p as Tensor).assign(Float32Array.from({ length: p.shape[0]! }, (_, j) => 0.7 + ((j * 7 + i) % 13) / 20));
      // a router between uniform and peaked: the top-k mass is well below 1, so renormalizing it or not changes the output
      if (/\.gate\.weight$/.test(n)) (p as Tensor).assign((p as Tensor).toFloat32().map((v) => v * 2));
    }
    saveModel(m, dir);
    m.dispose();
    copyFileSync(join(model, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    return { name, dir, cfg };
  });
}
let newArch: ReturnType<typeof newArchCheckpoints> | null = null;

test('Qwen3, Qwen3-MoE and OLMoE export as llama.cpp\'s qwen3, qwen3moe and olmoe: q/k norms, no RoPE permutation (NeoX RoPE), the expert widths', async () => {
  for (const { name, dir, cfg } of await (newArch ??= newArchCheckpoints())) {
    const file = join(work, `${name}.gguf`);
    await exportGguf(dir, file, { type: 'f32' });
    const g = GgufReader.open(file);
    const src = openCheckpoint(dir);
    try {
      const A = { qwen3: 'qwen3', qwen3_moe: 'qwen3moe', olmoe: 'olmoe' }[name]!;
      const m = g.metadata;
      assert.equal(m.get('general.architecture'), A);
      assert.equal(m.get(`${A}.rope.dimension_count`), cfg.headDim);
      assert.equal(m.get(`${A}.attention.head_count_kv`), cfg.numKvHeads);
      if (A !== 'olmoe') assert.deepEqual([m.get(`${A}.attention.key_length`), m.get(`${A}.attention.value_length`)], [cfg.headDim, cfg.headDim]);
      if (A === 'qwen3moe') assert.deepEqual([m.get(`${A}.expert_feed_forward_length`), m.get(`${A}.feed_forward_length`), m.get(`${A}.expert_used_count`)], [cfg.moeIntermediateSize, cfg.intermediateSize, cfg.topK]);
      if (A === 'olmoe') assert.deepEqual([m.get(`${A}.feed_forward_length`), m.get(`${A}.expert_count`)], [cfg.moeIntermediateSize, cfg.numExperts]);
      // q and k rows as HF stores them (rotate-half is llama.cpp's NeoX RoPE)
      assert.deepEqual(Array.from(g.readF32('blk.1.attn_q.weight')), Array.from(src.readF32('model.layers.1.self_attn.q_proj.weight')));
      assert.deepEqual(Array.from(g.readF32('blk.0.attn_k.weight')), Array.from(src.readF32('model.layers.0.self_attn.k_proj.weight')));
      const qn = g.tensor('blk.0.attn_q_norm.weight'), kn = g.tensor('blk.1.attn_k_norm.weight');
      assert.deepEqual([qn.ne, kn.ne], cfg.qkNorm === 'head' ? [[cfg.headDim], [cfg.headDim]] : [[cfg.numHeads * cfg.headDim], [cfg.numKvHeads * cfg.headDim]]);
      assert.deepEqual(Array.from(g.readF32('blk.1.attn_k_norm.weight')), Array.from(src.readF32('model.layers.1.self_attn.k_norm.weight')));
      if (cfg.numExperts) {
        const E = cfg.numExperts, F = cfg.moeIntermediateSize, H = cfg.hiddenSize;
        assert.deepEqual(g.tensor('blk.1.ffn_down_exps.weight').ne, [F, H, E]);
        const stacked = new Float32Array(E * F * H);
        for (let e = 0; e < E; e++) stacked.set(src.readF32(`model.layers.1.mlp.experts.${e}.up_proj.weight`), e * F * H);
        assert.deepEqual(Array.from(g.readF32('blk.1.ffn_up_exps.weight')), Array.from(stacked));
      } else assert.ok(!g.tensors.some((t) => t.name === 'output.weight'), 'tied embeddings: no output tensor');
    } finally {
      g.close();
      src.close();
    }
  }
});

test('models llama.cpp\'s qwen3moe and olmoe cannot compute are refused: top-k weights renormalized or not against the architecture, OLMoE with GQA, dense layers among MoE ones', async () => {
  const [, qmoe, olmoe] = await (newArch ??= newArchCheckpoints());
  const edit = async (dir: string, to: string, change: Record<string, unknown>) => {
    const out = join(work, to);
    await exportGguf(dir, join(work, 'probe.gguf'), { type: 'f32' }); // the original exports
    const { cpSync } = await import('node:fs');
    cpSync(dir, out, { recursive: true });
    const p = join(out, 'config.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), ...change }));
    return out;
  };
  await assert.rejects(exportGguf(await edit(qmoe!.dir, 'qmoe-nonorm', { norm_topk_prob: false }), join(work, 'x.gguf'), { type: 'f32' }), /qmoe-nonorm\/config\.json: cannot export to GGUF: the model does not renormalize its top-k weights \(norm_topk_prob false\), llama\.cpp's qwen3moe architecture always renormalizes them/);
  await assert.rejects(exportGguf(await edit(olmoe!.dir, 'olmoe-norm', { norm_topk_prob: true }), join(work, 'x.gguf'), { type: 'f32' }), /llama\.cpp's olmoe architecture always leaves them as they are/);
  const gqa = join(work, 'olmoe-gqa');
  const m = SkyworkMoE.create(tinyLayouts().find(([, c]) => c.layout === 'olmoe')![1], { seed: 1, backend: new JsBackend() });
  saveModel(m, gqa);
  m.dispose();
  copyFileSync(join(model, 'tokenizer.json'), join(gqa, 'tokenizer.json'));
  await assert.rejects(exportGguf(gqa, join(work, 'x.gguf'), { type: 'f32' }), /2 key\/value heads for 4 query heads; llama\.cpp's olmoe architecture expects the k norm over embedding_length \(64\) weights/);
  const mixed = await edit(qmoe!.dir, 'qmoe-mixed', { decoder_sparse_step: 2 });
  await assert.rejects(exportGguf(mixed, join(work, 'x.gguf'), { type: 'f32' }), /MoE every 2 layers \(decoder_sparse_step\) mixes dense and MoE layers, which llama\.cpp's qwen3moe architecture cannot express/);
});

test("llama.cpp's greedy continuations of exported Qwen3, Qwen3-MoE and OLMoE models equal skymoe's for 24 tokens", async (t) => {
  const checkpoints = await (newArch ??= newArchCheckpoints());
  const peer = await loadLlamaPeer();
  if ('unavailable' in peer) return t.skip(peer.unavailable);
  const be = await createBackend({ threads: 2 });
  const prompt = [1, 40, 41, 42, 300, 7];
  try {
    for (const { name, dir } of checkpoints) {
      const m = loadModel(dir, be, { dtype: 'auto' });
      const greedy = (x: SkyworkMoE) => [...generateTokens(x, prompt, { maxTokens: 24, temperature: 0, stopIds: [] })].map((y) => y.id);
      const ours = greedy(m);
      if (m.config.numExperts) {
        // the comparison tells a renormalized top-k from a plain one: the other choice continues differently
        const flipped = SkyworkMoE.fromParams({ ...m.config, normTopK: !m.config.normTopK }, new Map(m.params), be);
        assert.notDeepEqual(greedy(flipped), ours, `${name}: norm_topk_prob makes a difference here`);
      }
      m.dispose();
      // meaningful only without near ties (float64 reference); and not a constant output
      float64ArgmaxGap(dir, prompt, ours, name);
      assert.ok(new Set(ours).size >= 3, `${name}: a varied continuation ${ours}`);
      const file = join(work, `${name}-peer.gguf`);
      await exportGguf(dir, file, { type: 'f32' });
      const theirs = await llamaGreedy(peer, file, prompt, 24, 2, 'F32');
      assert.deepEqual(theirs.ids, ours, `${name}: llama.cpp vs skymoe`);
    }
  } finally {
    await be.dispose();
    await peer.llama.dispose();
  }
});
