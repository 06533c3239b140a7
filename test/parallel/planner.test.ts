/** The cluster planner: FLOP counts, Megatron's memory formula, the pipeline balancer, placements, head split, search speed, the CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configFromHF } from '../../src/model/config.js';
import { preset } from '../../src/model/presets.js';
import { countParams } from '../../src/model/params.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { forwardFlops, shapeOf, shapeParams, trainFlopsPerToken, type ModelShape } from '../../src/parallel/planner/flops.js';
import { cluster, gpuSpec, PlanError } from '../../src/parallel/planner/gpus.js';
import { stageMemory } from '../../src/parallel/planner/memory.js';
import { balanceStages, pipelineTime, type StageModel } from '../../src/parallel/planner/pipeline.js';
import { headSplit, planInference } from '../../src/parallel/planner/inference.js';
import { expertRanks, moeLayerComm } from '../../src/parallel/planner/placement.js';
import { balanceReport, search } from '../../src/parallel/planner/search.js';
import { checkLayout, defaultSetup, evenStages, parseLayout, type Layout } from '../../src/parallel/planner/setup.js';
import { megatronArgs, pipelineLayoutString } from '../../src/parallel/planner/megatron.js';
import { runPlan, trainingPlan } from '../../src/cli/plan.js';

const sky = shapeOf(preset('skywork-moe-146b'), 'skywork');

test('FLOPs per token match hand-computed values', () => {
  const f = forwardFlops(sky, 4096);
  assert.equal(f.attnProj, 2 * 4 * 4608 * 4608); // q, k, v, o: 4 h^2 weights, 2 FLOPs each
  assert.equal(f.attnCore, 4 * 4096 * 4608 * 0.5); // QK^T and AV, causal half
  assert.equal(f.experts, 2 * 2 * 3 * 4608 * 12288); // top-2 x 3 SwiGLU matrices
  assert.equal(f.router, 2 * 4608 * 16);
  assert.equal(f.logits, 2 * 4608 * 65532);
  // 3 x (52 x (169869312 + 37748736 + 679477248) + 603942912)
  assert.equal(trainFlopsPerToken(sky, 4096), 140198694912);
  assert.equal(trainFlopsPerToken(sky, 4096, { causal: false }), 140198694912 + 3 * 52 * 37748736);
  // parameter counts agree with the model's own counter (SPEC: 146.4B total, 22.7B active)
  const p = shapeParams(sky), c = countParams(preset('skywork-moe-146b'));
  assert.equal(p.total, c.total);
  assert.equal(p.active, c.active);
});

/**
 * Reference numbers produced by Megatron-LM's own `num_floating_point_operations` (training.py)
 * and `theoretical_memory_usage.py`, run once by scripts/megatron-reference.py from a checkout of
 * NVIDIA/Megatron-LM (the commit is recorded in the fixture; no Megatron code is committed here).
 */
interface MegatronCase {
  name: string;
  args: Record<string, number | boolean | string | null>;
  batch_size: number;
  num_microbatches: number;
  flops: number;
  flops_breakdown: { per_token_per_layer_training: { mlp: number; attention_projections: number; core_attention: number }; per_token_logits_training: number };
  weight_and_optimizer_bytes: number;
  activation_bytes: number;
}
const megatron = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/fixtures/megatron/reference.json', import.meta.url)), 'utf8')) as { source: { commit: string }; cases: MegatronCase[] };

/** Our shape, first-stage layout and setup for a Megatron case (the vocabulary as Megatron pads it). */
function fromMegatron(c: MegatronCase) {
  const a = c.args as Record<string, never>;
  const E: number = a.num_experts ?? 0;
  const m: ModelShape = {
    name: c.name, vocab: a.padded_vocab_size, hidden: a.hidden_size, layers: a.num_layers, moeLayers: E ? a.num_layers : 0, heads: a.num_attention_heads,
    kvHeads: a.num_query_groups, headDim: a.kv_channels, ffn: a.ffn_hidden_size, expertFfn: a.moe_ffn_hidden_size ?? a.ffn_hidden_size, experts: E,
    topK: E ? a.moe_router_topk : 0, gated: a.swiglu, tied: !a.untie_embeddings_and_output_weights, qkNorm: 'none',
  };
  const pp: number = a.pipeline_model_parallel_size, dp: number = a.data_parallel_size;
  const layout: Layout = {
    tp: a.tensor_model_parallel_size, pp, dp, vp: a.virtual_pipeline_model_parallel_size ?? 1, microBatch: a.micro_batch_size,
    expert: 'etp', ep: E ? a.expert_model_parallel_size : 1, etp: E ? a.expert_tensor_parallel_size : 1, stages: evenStages(m.layers, pp), recompute: Array(pp).fill('selective'),
  };
  const seq: number = a.seq_length;
  const setup = defaultSetup({ seq, globalBatch: c.num_microbatches * dp * a.micro_batch_size, zero: a.use_distributed_optimizer ? 1 : 0 });
  return { m, layout, setup, seq, distributedOptimizer: a.use_distributed_optimizer as boolean };
}

test(`FLOPs equal Megatron-LM's num_floating_point_operations (commit ${megatron.source.commit.slice(0, 10)}): MHA, GQA, dense and MoE`, () => {
  assert.equal(megatron.cases.length, 5);
  for (const c of megatron.cases) {
    const { m, seq } = fromMegatron(c);
    const ours = trainFlopsPerToken(m, seq) * c.batch_size * seq;
    assert.ok(Math.abs(ours / c.flops - 1) < 1e-12, `${c.name}: ${ours} vs ${c.flops}`);
    // term by term (Megatron's own terms, by ablation of its inputs): 3 x our forward terms
    const f = forwardFlops(m, seq);
    const b = c.flops_breakdown.per_token_per_layer_training;
    assert.equal(3 * (m.experts ? f.experts : f.mlp), b.mlp, `${c.name} mlp`);
    assert.equal(3 * f.attnProj, b.attention_projections, `${c.name} attention projections`);
    assert.equal(3 * f.attnCore, b.core_attention, `${c.name} core attention (causal)`);
    assert.equal(3 * f.logits, c.flops_breakdown.per_token_logits_training, `${c.name} logits`);
  }
});

test("first-stage weights + gradients + Adam states equal Megatron-LM's theoretical_memory_usage, up to two named terms", () => {
  for (const c of megatron.cases) {
    const { m, layout, setup, distributedOptimizer } = fromMegatron(c);
    const ours = stageMemory(m, setup, layout, 0, m.layers / layout.pp, 'selective');
    // Megatron puts the final norm in every stage's 1/pp share of the block and gives the router a
    // bias (add_bias_linear defaults to true; Skywork and Mixtral have none); we put the final norm
    // on the last stage and count no router bias. Both are dense, replicated over TP, Adam-sharded
    // over DP: (h/pp + E*L/pp) parameters at 6 + 12/dp bytes (18 without the distributed optimizer).
    const perParam = distributedOptimizer ? 6 + 12 / layout.dp : 18;
    const finalNorm = layout.pp === 1 ? 0 : (m.hidden / layout.pp) * perParam;
    const routerBias = ((m.experts * m.layers) / layout.pp) * perParam;
    const want = c.weight_and_optimizer_bytes - finalNorm - routerBias;
    const got = ours.weights + ours.grads + ours.optimizer;
    assert.ok(Math.abs(got - want) < 1e-9 * want, `${c.name}: ${got} vs Megatron ${c.weight_and_optimizer_bytes} less ${finalNorm + routerBias}`);
  }
});

test("activations against Megatron-LM's formula: dense within what the two formulas' terms give, MoE above it", () => {
  for (const c of megatron.cases) {
    const { m, layout, setup } = fromMegatron(c);
    const ours = stageMemory(m, setup, layout, 0, m.layers / layout.pp, 'selective').activations;
    if (m.experts) {
      // Megatron's activation formula counts one dense FFN of ffn_hidden_size per layer: no top-k
      // copies, no permutation buffers, no router probabilities. Ours carries k = 2 routed copies.
      assert.ok(ours > 1.5 * c.activation_bytes, `${c.name}: ${ours} vs ${c.activation_bytes}`);
      continue;
    }
    if (layout.pp === 1) continue; // Megatron adds the output layer's activations at PP 1; we count logits as buffers
    // Per token per layer under selective recomputation, in bytes: Megatron 18h + 4F (Korthikanti
    // et al.: LayerNorm inputs, dropout masks, a GeLU MLP); ours (flash attention, SwiGLU, no
    // dropout): norm inputs 2h + 2h, q/k/v 2(q + 2kv), attention output 2q, softmax statistics 4H
    // in fp32, gate and up outputs 2 x 2F; times 1.05 for allocator fragmentation.
    const h = m.hidden, q = m.heads * m.headDim, kv = m.kvHeads * m.headDim;
    const expected = (1.05 * (4 * h + 2 * (q + 2 * kv) + 2 * q + 4 * m.heads + 4 * m.ffn)) / (18 * h + 4 * m.ffn);
    const ratio = ours / c.activation_bytes;
    // what remains: the embedding output and token ids of the first stage (under 1%)
    assert.ok(ratio > expected && ratio < expected * 1.01, `${c.name}: ratio ${ratio.toFixed(4)}, the two formulas give ${expected.toFixed(4)}`);
  }
});

test("the report's 24-layer example: [6,6,6,6] on 4 stages vs [5,5,5,5,4] on 5, and the balancer's choice", () => {
  // one layer = 1 time unit; the embedding costs 0.1 of a layer, the output layer + loss about one layer (V/h large)
  const stage = (i: number, p: number): StageModel => ({
    perLayer: { none: 1, selective: 1.05, full: 1.33 },
    extra: (i === 0 ? 0.1 : 0) + (i === p - 1 ? 1 : 0),
    memFixed: { none: 0, selective: 0, full: 0 },
    memPerLayer: { none: 1, selective: 1, full: 1 },
  });
  const models = (p: number) => Array.from({ length: p }, (_, i) => stage(i, p));
  const five = balanceStages(models(5), 24, Infinity)!;
  assert.deepEqual(five.layers, [5, 5, 5, 5, 4]);
  const four = balanceStages(models(4), 24, Infinity)!;
  assert.deepEqual(four.layers, [6, 6, 6, 6]);
  // per-GPU throughput over m = 256 micro-batches, 1F1B: m x slowest + the other stages once.
  // Four stages [6.1, 6, 6, 7]: 256 x 7 + 18.1 = 1810.1; five stages [5.1, 5, 5, 5, 5]: 256 x 5.1 + 20 = 1325.6;
  // gain per GPU = (4 x 1810.1) / (5 x 1325.6) - 1 = 0.0924 (the report: ~10%)
  const m = 256;
  assert.ok(Math.abs(pipelineTime(four.stageTimes, m) - 1810.1) < 1e-9 && Math.abs(pipelineTime(five.stageTimes, m) - 1325.6) < 1e-9);
  const gain = (4 * pipelineTime(four.stageTimes, m)) / (5 * pipelineTime(five.stageTimes, m)) - 1;
  assert.ok(Math.abs(gain - 0.092396) < 1e-5, `gain ${gain}`);
  // memory-bound: the first stage holds the most micro-batches, so it gets fewer layers or recomputation
  const tight = models(4).map((s, i) => ({ ...s, memPerLayer: { none: 4 - i, selective: 3.5 - i * 0.8, full: 1 } }));
  const t = balanceStages(tight, 24, 20)!;
  assert.ok(t.stageMemory.every((b) => b <= 20));
  assert.ok(t.layers[0]! < 6 || t.recompute[0] !== 'none');
  assert.equal(t.layers.reduce((a, b) => a + b, 0), 24);
  assert.equal(balanceStages(models(4), 24, 3), null); // nothing fits
});

test('with the real step model a 24-layer Skywork-like model balances to [5,5,5,5,4] and beats [6,6,6,6] per GPU', () => {
  const m = { ...sky, layers: 24, moeLayers: 24 };
  const s = defaultSetup({ seq: 4096, globalBatch: 4096 });
  const c = cluster('a800-80g', 5 * 4 * 32);
  const l = parseLayout('tp=4,pp=5,dp=32,expert=edp', m, c.gpus);
  const r = balanceReport(m, s, l, c);
  assert.deepEqual(r.balanced.layout.stages, [5, 5, 5, 5, 4]);
  const four = r.nearby.find((u) => u.evaluation.layout.pp === 4)!;
  assert.deepEqual(four.evaluation.layout.stages, [6, 6, 6, 6]);
  assert.ok(r.balanced.tokensPerGpuSecond > four.evaluation.tokensPerGpuSecond);
});

test('non-uniform head split [5,5,5,5,4,4,4,4] for 36 heads on 8 GPUs; FP8 146b on 8 x RTX 4090', () => {
  assert.deepEqual(headSplit(36, 8), [5, 5, 5, 5, 4, 4, 4, 4]);
  assert.deepEqual(headSplit(36, 9), Array(9).fill(4));
  assert.deepEqual(headSplit(36, 5), [8, 7, 7, 7, 7]);
  assert.throws(() => headSplit(36, 40), /no head/);
  const p = planInference(sky, cluster('rtx-4090', 8), { weights: 'fp8', batchSizes: [1, 64, 256] });
  assert.ok(p.totalWeightBytes > 140e9 && p.totalWeightBytes < 155e9, `${p.totalWeightBytes}`); // SPEC: 146 GB
  assert.ok(p.fits && p.weightsPerGpu.total < 24e9);
  assert.equal(p.kvPerToken, 2 * 52 * 36 * 128 * 2);
  assert.ok(p.decode[1]!.tokensPerSecond > p.decode[0]!.tokensPerSecond);
  assert.ok(!planInference(sky, cluster('rtx-4090', 8), { weights: 'bf16' }).fits);
});

test('placements: EDP dispatches locally, EP pays an all-to-all, ETP gathers k x tokens over TP', () => {
  const c = cluster('a800-80g', 1536);
  const g = { tp: 4, pp: 12, dp: 32, vp: 1, microBatch: 1, stages: evenStages(52, 12), recompute: Array(12).fill('none') } as const;
  const edp = moeLayerComm(sky, { ...g, expert: 'edp', ep: 4, etp: 1, recompute: [...g.recompute], stages: [...g.stages] }, c, 4096, 1.2);
  const ep = moeLayerComm(sky, { ...g, expert: 'ep', ep: 16, etp: 1, recompute: [...g.recompute], stages: [...g.stages] }, c, 4096, 1.2);
  const etp = moeLayerComm(sky, { ...g, expert: 'etp', ep: 16, etp: 4, recompute: [...g.recompute], stages: [...g.stages] }, c, 4096, 1.2);
  assert.equal(edp.a2a, 0);
  assert.ok(ep.a2a > 0 && etp.a2a > 0);
  assert.ok(etp.tp > edp.tp, 'ETP gathers k x the tokens a dense MLP gathers');
  const ranks = expertRanks(sky, parseLayout('tp=4,pp=12,expert=edp', sky, 1536), 4);
  assert.equal(ranks[0], 'rank 0 (tp 0, dp 0): experts 0-3');
  assert.equal(ranks[3], 'rank 3 (tp 3, dp 0): experts 12-15');
});

test('layout parsing and checks name the field at fault', () => {
  const s = defaultSetup({ globalBatch: 2048 });
  assert.throws(() => checkLayout(parseLayout('tp=8,pp=12', sky, 1536), sky, 1536, s), /layout\.tp: 8 does not divide the 36 attention heads/);
  assert.throws(() => parseLayout('tp=4,pp=7', sky, 1536), /does not divide 1536 GPUs/);
  assert.throws(() => parseLayout('tp=4,foo=1', sky, 1536), /unknown key 'foo'/);
  assert.throws(() => checkLayout(parseLayout('tp=4,pp=12,stages=5+5', sky, 1536), sky, 1536, s), /2 stage sizes for pp 12/);
  assert.throws(() => checkLayout(parseLayout('tp=4,pp=12,expert=edp,ep=8', sky, 1536), sky, 1536, s), /EDP places experts on the TP group/);
  assert.throws(() => gpuSpec('rtx-9090'), (e: Error) => e instanceof PlanError && /a800-80g, a100-40g.*mi300x/.test(e.message));
  assert.equal(gpuSpec('H100-SXM').key, 'h100-sxm');
  // the model name alone, when one memory size has it (the report's "A800"); ambiguous names are refused naming both
  assert.equal(gpuSpec('A800').key, 'a800-80g');
  assert.throws(() => gpuSpec('A100'), /GPU 'A100' is ambiguous: a100-40g or a100-80g/);
  assert.equal(pipelineLayoutString([5, 5, 4]), 'Et*5|t*5|t*4L');
});

test('the 146b plan on 1536 A800 is found in well under a second and exports Megatron-Core arguments', () => {
  const cfg = preset('skywork-moe-146b');
  const c = cluster('a800-80g', 1536);
  const s = defaultSetup({ seq: 4096, globalBatch: 2048 });
  trainingPlan(cfg, 'warm-up', c, s);
  const t0 = performance.now();
  const r = trainingPlan(cfg, 'skywork-moe-146b', c, s);
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `plan took ${ms.toFixed(0)} ms`);
  assert.ok(r.chosen.fits);
  // MFU is the model FLOPs of the tokens a GPU trains per second over the bf16 peak (140198694912 per token, above).
  assert.ok(Math.abs(r.chosen.mfu - (r.chosen.tokensPerGpuSecond * 140198694912) / 312e12) < 1e-12);
  assert.ok(Math.abs(r.chosen.tokensPerGpuSecond - (2048 * 4096) / r.chosen.time.step / 1536) < 1e-9);
  // By hand, for the layout it chooses (tp 4, pp 6 of 9/8 layers, dp 64, EP 8; 32 micro-batches of 4096 tokens):
  // per layer and micro-batch on one GPU, dense GEMMs 3 x 169.87 MFLOP x 4096 / 4 = 522 GFLOP at 0.72 x 312 x 1152/1216
  // TFLOP/s = 2.45 ms; causal attention 116 GFLOP at 0.6 x 312 = 0.62 ms; experts (2 of 16 local, 4096 x 2 / 4
  // pairs x 1.14 busiest-rank imbalance = 2338 pairs x 3 x 339.7 MFLOP) 2382 GFLOP at ~213 TFLOP/s = 11.2 ms;
  // TP, all-to-all and element-wise ~2 ms: ~16.3 ms a layer, ~147 ms a 9-layer stage; 1F1B: (32 + 5) x 147 ms
  // = 5.43 s; exposed expert-gradient reduce-scatter (12.2 GB fp32) + all-gather (6.1 GB bf16) over EDP 32 at
  // 12.5 GB/s between nodes ~1.4 s: a step of ~6.8 s and MFU = 5461 tokens x 140.2 GFLOP / (312 TFLOP/s x 6.8 s) = 0.36.
  assert.equal(r.chosen.layout.pp, 6);
  assert.ok(Math.abs(r.chosen.mfu / 0.36 - 1) < 0.08, `MFU ${r.chosen.mfu}, by hand 0.36`);
  assert.equal(r.chosen.layout.stages.reduce((a, b) => a + b, 0), 52);
  assert.equal(r.top.length, 3);
  const byKind = Object.fromEntries(r.placements.map((p) => [p.placement, p]));
  assert.match(byKind.ep!.problem!, /<= 16 experts/);
  assert.ok(byKind.edp!.best && byKind.etp!.best);
  const flags = new Map(r.megatron.args);
  assert.equal(flags.get('--num-experts'), '16');
  assert.equal(flags.get('--tensor-model-parallel-size'), String(r.chosen.layout.tp));
  assert.ok(r.megatron.missing.some((x) => /logit normalization/.test(x.feature)));
  assert.ok(r.megatron.missing.some((x) => /adaptive auxiliary-loss/.test(x.feature)));
  // a Skywork-style layout exports the uneven split
  const sk = megatronArgs(sky, s, { ...parseLayout('tp=4,pp=12,expert=edp', sky, 1536), stages: [4, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4] });
  assert.equal(new Map(sk.args).get('--pipeline-model-parallel-layout'), '"Et*4|t*5|t*5|t*5|t*5|t*4|t*4|t*4|t*4|t*4|t*4|t*4L"');
  const fl = new Map(megatronArgs(sky, s, { ...parseLayout('tp=4,pp=12,expert=edp', sky, 1536), stages: [6, ...Array<number>(10).fill(4), 6] }).args);
  assert.equal(fl.get('--decoder-first-pipeline-num-layers'), '6');
  assert.equal(fl.get('--decoder-last-pipeline-num-layers'), '6');
  assert.ok(!fl.has('--pipeline-model-parallel-layout'));
  // top-1: Megatron-Core refuses a top-1 router without pre-softmax, renormalized or not
  const top1 = { ...preset('skywork-moe-146b'), topK: 1 };
  const withTop1 = new Map(megatronArgs(shapeOf(top1), s, parseLayout('tp=4,pp=12,expert=edp', shapeOf(top1), 1536), top1).args);
  assert.ok(withTop1.has('--moe-router-pre-softmax'));
  assert.ok(!new Map(megatronArgs(sky, s, parseLayout('tp=4,pp=12,expert=edp', sky, 1536), preset('skywork-moe-146b')).args).has('--moe-router-pre-softmax'));
});

function capture(f: () => void): string {
  const lines: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(' '));
  try {
    f();
  } finally {
    console.log = orig;
  }
  return lines.join('\n');
}

test('skymoe plan: text, --json, --inference, --validate, and clear errors', () => {
  const text = capture(() => runPlan({ preset: 'skywork-moe-146b', gpus: 1536, gpu: 'a800-80g' }));
  for (const part of ['chosen layout', 'memory per GPU', 'tokens/s per GPU', 'MFU', 'expert placement', 'top 3 layouts', 'pipeline balance', 'Megatron-Core arguments', '--expert-model-parallel-size']) assert.ok(text.includes(part), part);
  const json = JSON.parse(capture(() => runPlan({ preset: 'skywork-moe-146b', gpus: 1536, gpu: 'a800-80g', json: true })));
  assert.ok(json.chosen.tokensPerGpuSecond > 0 && json.megatron.args.length > 10);
  const inf = capture(() => runPlan({ preset: 'skywork-moe-146b', gpus: 8, gpu: 'rtx-4090', inference: true, batchSizes: '1,32' }));
  assert.match(inf, /\[5,5,5,5,4,4,4,4\]/);
  assert.match(capture(() => runPlan({ validate: true })), /Skywork-MoE 146B/);
  const fixed = JSON.parse(capture(() => runPlan({ preset: 'skywork-moe-146b', gpus: 1536, gpu: 'a800-80g', layout: 'tp=4,pp=12,dp=32,expert=edp', json: true })));
  assert.equal(fixed.chosen.layout.pp, 12);
  assert.throws(() => runPlan({ preset: 'skywork-moe-146b', gpus: 1536, gpu: 'v100' }), /unknown GPU 'v100': expected one of a800-80g/);
  assert.throws(() => runPlan({ preset: 'skywork-moe-146b', gpus: 1536, gpu: 'a800-80g', layout: 'tp=8,pp=12' }), /does not divide the 36 attention heads/);
  assert.throws(() => runPlan({ preset: 'skywork-moe-146b', gpus: 8, gpu: 'a100-40g' }), /no layout of 8 x A100 40GB/);
  assert.throws(() => runPlan({ gpus: 8, gpu: 'a100-40g' }), /--preset NAME or --config FILE/);
  assert.throws(() => runPlan({ preset: 'skywork-moe-146b', gpus: 1536, gpu: 'a800-80g', globalBatchTokens: 1000 }), /--global-batch-tokens/);
});

test('search on a small cluster stays fast and every ranked layout fits', () => {
  const m = shapeOf(preset('small'), 'small');
  const s = defaultSetup({ seq: 1024, globalBatch: 64 });
  const r = search(m, s, cluster('l40s', 8));
  assert.ok(r.ranked.length > 0 && r.ranked.every((p) => p.evaluation.fits));
  assert.ok(r.elapsedMs < 1000);
});

test("the planner's shape of the Qwen3-MoE and OLMoE configs: expert width apart from the MLP width, q/k norms, dense layers; parameters as the model counts them", () => {
  const dir = fileURLToPath(new URL('../../../test/fixtures/configs/', import.meta.url));
  const qwen = configFromHF(JSON.parse(readFileSync(`${dir}qwen3-30b-a3b.json`, 'utf8')));
  const m = shapeOf(qwen, 'Qwen3-30B-A3B');
  assert.deepEqual([m.ffn, m.expertFfn, m.headDim, m.moeLayers, m.qkNorm], [6144, 768, 128, 48, 'head']);
  // one dense layer (mlp_only_layers) among 48: 47 MoE layers, one MLP of width 6144
  const mixed = shapeOf({ ...qwen, mlpOnlyLayers: [0] });
  const full = shapeParams(m), part = shapeParams(mixed);
  assert.equal(full.total - part.total, 128 * 3 * 2048 * 768 + 128 * 2048 - 3 * 2048 * 6144);
  for (const cfg of [qwen, { ...qwen, mlpOnlyLayers: [0, 7], moeInterval: 2 }, configFromHF(JSON.parse(readFileSync(`${dir}olmoe-1b-7b-0924.json`, 'utf8')))]) {
    const p = shapeParams(shapeOf(cfg)), c = countParams(cfg);
    assert.deepEqual([p.total, p.active], [c.total, c.active], cfg.layout);
  }
});
