/** The cluster planner: FLOP counts, Megatron's memory formula, the pipeline balancer, placements, head split, search speed, the CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preset } from '../../src/model/presets.js';
import { countParams } from '../../src/model/params.js';
import { forwardFlops, megatronArgsOf, megatronFlops, shapeOf, shapeParams, trainFlopsPerToken, type ModelShape } from '../../src/parallel/planner/flops.js';
import { cluster, gpuSpec, PlanError } from '../../src/parallel/planner/gpus.js';
import { megatronTheoreticalMemory, stageMemory } from '../../src/parallel/planner/memory.js';
import { balanceStages, pipelineTime, type StageModel } from '../../src/parallel/planner/pipeline.js';
import { headSplit, planInference } from '../../src/parallel/planner/inference.js';
import { expertRanks, moeLayerComm } from '../../src/parallel/planner/placement.js';
import { balanceReport, search } from '../../src/parallel/planner/search.js';
import { checkLayout, defaultSetup, evenStages, parseLayout, type Layout } from '../../src/parallel/planner/setup.js';
import { megatronArgs, pipelineLayoutString } from '../../src/parallel/planner/megatron.js';
import { runPlan, trainingPlan } from '../../src/cli/plan.js';

const sky = shapeOf(preset('skywork-moe-146b'), 'skywork');

test('FLOPs per token match hand-computed values and Megatron-Core’s formula', () => {
  const f = forwardFlops(sky, 4096);
  assert.equal(f.attnProj, 2 * 4 * 4608 * 4608); // q, k, v, o: 4 h^2 weights, 2 FLOPs each
  assert.equal(f.attnCore, 4 * 4096 * 4608 * 0.5); // QK^T and AV, causal half
  assert.equal(f.experts, 2 * 2 * 3 * 4608 * 12288); // top-2 x 3 SwiGLU matrices
  assert.equal(f.router, 2 * 4608 * 16);
  assert.equal(f.logits, 2 * 4608 * 65532);
  // 3 x (52 x (169869312 + 37748736 + 679477248) + 603942912)
  assert.equal(trainFlopsPerToken(sky, 4096), 140198694912);
  assert.equal(trainFlopsPerToken(sky, 4096, { causal: false }), 140198694912 + 3 * 52 * 37748736);
  for (const m of [sky, shapeOf(preset('skywork-moe-146b-dense'), 'dense')]) {
    const a = { ...megatronArgsOf(m, 4096), paddedVocabSize: m.vocab };
    const ours = trainFlopsPerToken(m, 4096) * 8 * 4096;
    assert.ok(Math.abs(megatronFlops(a, 8) / ours - 1) < 1e-12, m.name);
  }
  // parameter counts agree with the model's own counter (SPEC: 146.4B total, 22.7B active)
  const p = shapeParams(sky), c = countParams(preset('skywork-moe-146b'));
  assert.equal(p.total, c.total);
  assert.equal(p.active, c.active);
});

function megatronCase(m: ModelShape, tp: number, pp: number, dp: number, seq: number) {
  return megatronTheoreticalMemory({
    numLayers: m.layers, hiddenSize: m.hidden, ffnHiddenSize: m.experts ? m.expertFfn : m.ffn, numAttentionHeads: m.heads, numQueryGroups: m.kvHeads,
    kvChannels: m.headDim, paddedVocabSize: m.vocab, seqLength: seq, microBatchSize: 1, swiglu: m.gated, numExperts: m.experts || null,
    untieEmbeddings: !m.tied, tp, pp, dp, vp: null, useDistributedOptimizer: true, numMicrobatches: 64,
  });
}

const llama7b: ModelShape = { name: 'llama-2-7b', vocab: 32000, hidden: 4096, layers: 32, moeLayers: 0, heads: 32, kvHeads: 32, headDim: 128, ffn: 11008, expertFfn: 11008, experts: 0, topK: 0, gated: true, tied: false };
const mixtral: ModelShape = { name: 'mixtral-8x7b', vocab: 32000, hidden: 4096, layers: 32, moeLayers: 32, heads: 32, kvHeads: 8, headDim: 128, ffn: 14336, expertFfn: 14336, experts: 8, topK: 2, gated: true, tied: false };

test("Megatron's theoretical memory formula, reproduced, against our model (dense and MoE)", () => {
  const s = defaultSetup({ seq: 4096, globalBatch: 512, zero: 1 });
  const layout = (m: ModelShape, ep: number, etp: number): Layout => ({ tp: 2, pp: 2, dp: 8, vp: 1, microBatch: 1, expert: ep > 1 ? 'ep' : 'etp', ep, etp, stages: evenStages(m.layers, 2), recompute: ['selective', 'selective'] });
  // dense: weights + gradients + optimizer agree within 0.1% (only the final norm differs); activations within 25%
  // (Megatron's 18 + 4F/h counts dropout masks and a GeLU-MLP layout; ours is SwiGLU with flash attention, no dropout)
  const meg = megatronCase(llama7b, 2, 2, 8, 4096);
  const ours = stageMemory(llama7b, s, layout(llama7b, 1, 1), 0, 16, 'selective');
  const wo = ours.weights + ours.grads + ours.optimizer;
  assert.ok(Math.abs(wo / meg.weightAndOptimizer - 1) < 1e-3, `dense weights+optimizer ${wo} vs ${meg.weightAndOptimizer}`);
  const actErr = ours.activations / meg.activation - 1;
  assert.ok(Math.abs(actErr) < 0.25, `dense activations off by ${actErr}`);
  // MoE with experts split over TP only (EP 1) is what Megatron's formula assumes: weights agree
  const megM = megatronCase(mixtral, 2, 2, 8, 4096);
  const oursTp = stageMemory(mixtral, s, layout(mixtral, 1, 2), 0, 16, 'selective');
  const woM = oursTp.weights + oursTp.grads + oursTp.optimizer;
  assert.ok(Math.abs(woM / megM.weightAndOptimizer - 1) < 1e-3, `MoE weights+optimizer ${woM} vs ${megM.weightAndOptimizer}`);
  // with EP 8 each rank holds one whole expert instead of half of all eight: Megatron's formula cannot see it;
  // ours keeps a quarter of the expert weights (their Adam states now shard over EDP 2 instead of DP 8)
  const oursEp = stageMemory(mixtral, s, layout(mixtral, 8, 1), 0, 16, 'selective');
  assert.ok(oursEp.weights < 0.3 * oursTp.weights, `EP 8 weights ${oursEp.weights} vs EP 1 ${oursTp.weights}`);
  assert.ok(oursEp.weights + oursEp.grads + oursEp.optimizer < 0.5 * megM.weightAndOptimizer);
  // activations: Megatron counts one dense FFN per layer, ours k = 2 routed copies plus permutation buffers
  const ratioDense = actErr + 1, ratioMoe = oursTp.activations / megM.activation;
  assert.ok(ratioMoe > 1.5 * ratioDense, `MoE activations ${ratioMoe.toFixed(2)}x Megatron's vs dense ${ratioDense.toFixed(2)}x`);
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
  // per-GPU throughput over many micro-batches: 4 x 7 / (5 x 5.1) - 1 ~ +10% (the report: ~10%)
  const m = 256;
  const gain = (4 * pipelineTime(four.stageTimes, m)) / (5 * pipelineTime(five.stageTimes, m)) - 1;
  assert.ok(gain > 0.07 && gain < 0.13, `gain ${gain}`);
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
  assert.ok(r.chosen.fits && r.chosen.mfu > 0.2 && r.chosen.mfu < 0.6);
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
