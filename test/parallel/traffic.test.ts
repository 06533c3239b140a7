/**
 * The planner's bytes model (planner/traffic.ts) against bytes computed by hand for the tiny
 * preset (vocabulary 512, hidden 64, 2 MoE layers of 4 experts of width 128, top-2, 4 heads:
 * 295,744 parameters), and the step model's times built from it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preset } from '../../src/model/presets.js';
import { shapeOf } from '../../src/parallel/planner/flops.js';
import { cluster } from '../../src/parallel/planner/gpus.js';
import { stageParams } from '../../src/parallel/planner/memory.js';
import { moeLayerComm } from '../../src/parallel/planner/placement.js';
import { defaultSetup, evenStages, parseLayout, type Layout } from '../../src/parallel/planner/setup.js';
import { dataParallelTime, stageExtra } from '../../src/parallel/planner/step.js';
import { dataParallelTraffic, layerTraffic, MEGATRON_TRAFFIC, sentBytes, sentFraction, stageTraffic, stepTraffic, transferTime, type TrafficOptions, type TrafficTotal, type Transfer } from '../../src/parallel/planner/traffic.js';
import { groupKind, predictTraffic, RUNTIME_TRAFFIC } from '../../src/parallel/traffic-check.js';

const tiny = shapeOf(preset('tiny'), 'tiny');
const T = 2 * 32; // tokens of a micro-batch: 2 sequences of 32
const setup = (zero: 0 | 1, accum = 1) => defaultSetup({ seq: 32, globalBatch: 2 * accum, zero });
const lay = (text: string, o: Partial<Layout> = {}): Layout => {
  const l = parseLayout(text, tiny, [...text.matchAll(/(tp|pp|dp)=(\d+)/g)].reduce((a, m) => a * Number(m[2]), 1));
  return { ...l, microBatch: 2, ...o };
};
const bytesOf = (rows: TrafficTotal[], kind: string, group: string) => rows.find((r) => r.kind === kind && r.group === group)?.bytes ?? 0;
// sequence parallelism as the runtime runs it (every TP rank routes all tokens; stages take and give whole rows), and as Megatron does, in fp32
const spRuntime: TrafficOptions = { ...RUNTIME_TRAFFIC, sequenceParallel: true };
const spMegatron: TrafficOptions = { ...MEGATRON_TRAFFIC, elements: RUNTIME_TRAFFIC.elements };
const byKind = (ts: Transfer[]) => ts.reduce((a, t) => ({ ...a, [t.kind]: (a[t.kind] ?? 0) + sentBytes(t) }), {} as Record<string, number>);

test('what one rank sends: ring all-reduce 2(p-1)/p, gather / scatter / all-to-all / broadcast (p-1)/p, p2p all of it, nothing alone', () => {
  assert.equal(sentFraction('all-reduce', 4), 1.5);
  assert.equal(sentFraction('all-gather', 4), 0.75);
  assert.equal(sentFraction('reduce-scatter', 3), 2 / 3);
  assert.equal(sentFraction('all-to-all', 8), 7 / 8);
  assert.equal(sentFraction('broadcast', 2), 0.5);
  assert.equal(sentFraction('p2p', 2), 1);
  assert.equal(sentFraction('all-reduce', 1), 0);
});

test('tp=2 on the tiny model, fp32, no sequence parallelism: all-reduces of the seams and the gate weights', () => {
  // per layer: attention and experts each an all-reduce of T x 64 fp32 forward and one backward
  // (each sends half of 16384 B twice = 16384 B), the gate weights' gradient T x 2 fp32 (512 B sent)
  const per = 4 * 16384 + 512;
  const rows = stepTraffic(tiny, setup(1), lay('tp=2,expert=edp'), RUNTIME_TRAFFIC);
  assert.deepEqual(rows, [{ kind: 'all-reduce', group: 'tp', bytes: 2 * per }]);
  // Megatron's sequence parallelism: a layer's same bytes as all-gathers and reduce-scatters, half each
  assert.deepEqual(byKind(layerTraffic(tiny, setup(1), lay('tp=2,expert=edp'), spMegatron)), { 'all-gather': per / 2, 'reduce-scatter': per / 2 });
  // the runtime's: the experts' input gradient all-reduced (every rank routed all tokens), the
  // stage's whole rows cut on the way in and gathered on the way out, the norms' gradients summed
  const s = stepTraffic(tiny, setup(1), lay('tp=2,expert=edp'), spRuntime);
  assert.equal(bytesOf(s, 'all-gather', 'tp'), 10 * 8192); // per layer 4 (attention 2, experts 2), plus the stage's 2
  assert.equal(bytesOf(s, 'reduce-scatter', 'tp'), 6 * 8192); // per layer 3 (attention 2, experts 1)
  assert.equal(bytesOf(s, 'all-reduce', 'tp'), 2 * (16384 + 512) + 2 * 2 * 64 * 4);
  // three ranks: 2/3 of each all-reduce's buffer sent twice over
  const three = stepTraffic(tiny, setup(1), lay('tp=3,expert=etp', { ep: 1 }), RUNTIME_TRAFFIC);
  assert.ok(Math.abs(bytesOf(three, 'all-reduce', 'tp') - 2 * (4 * 16384 + 512) * (4 / 3)) < 1e-6);
});

test('data parallelism: the whole fp32 gradient all-reduced, or reduce-scattered and the weights all-gathered (ZeRO-1)', () => {
  const B = 295744 * 4;
  assert.deepEqual(stepTraffic(tiny, setup(0, 2), lay('dp=2'), RUNTIME_TRAFFIC), [{ kind: 'all-reduce', group: 'dp', bytes: B }]);
  assert.deepEqual(stepTraffic(tiny, setup(1, 2), lay('dp=2'), RUNTIME_TRAFFIC), [
    { kind: 'reduce-scatter', group: 'dp', bytes: B / 2 },
    { kind: 'all-gather', group: 'dp', bytes: B / 2 },
  ]);
  // Megatron's distributed optimizer gathers bf16 weights
  assert.equal(bytesOf(stepTraffic(tiny, setup(1, 2), lay('dp=2'), MEGATRON_TRAFFIC), 'all-gather', 'dp'), (295744 * 2) / 2);
  // tp=2 x dp=2 (EDP): each rank's dense share (attention halved; norms, router, embedding, lm_head whole in the runtime) and its 2 experts
  const dense = 2 * (16384 / 2 + 128 + 256) + 2 * 32768 + 64, experts = 2 * 2 * 24576;
  const rows = stepTraffic(tiny, setup(1, 2), lay('tp=2,dp=2,expert=edp'), RUNTIME_TRAFFIC);
  assert.equal(bytesOf(rows, 'reduce-scatter', 'dp'), ((dense + experts) * 4) / 2);
  // Megatron splits the embedding and output layer over TP
  const sp1 = stageParams(tiny, lay('tp=2,dp=2,expert=edp'), true, true, true);
  assert.equal(sp1.denseFixed, 32768 + 64);
});

test('pipeline: one activation forward and one gradient back per micro-batch and boundary; interleaving adds 2 per virtual stage, less one at each end', () => {
  const act = T * 64 * 4;
  const two = stepTraffic(tiny, setup(1, 4), lay('pp=2'), RUNTIME_TRAFFIC);
  assert.equal(bytesOf(two, 'p2p', 'pp'), 4 * act); // 4 micro-batches, one send per rank each
  const m = { ...tiny, layers: 8, moeLayers: 8 };
  const l: Layout = { ...parseLayout('pp=4,vp=2', m, 4), microBatch: 2 };
  const sends = [0, 1, 2, 3].map((i) => stageTraffic(m, setup(1), l, i, RUNTIME_TRAFFIC).reduce((a, t) => a + t.calls, 0));
  assert.deepEqual(sends, [3, 4, 4, 3]);
  // with Megatron's sequence parallelism each TP rank sends its shard; the runtime's stages exchange whole rows
  assert.equal(stageTraffic(tiny, setup(1), lay('tp=2,pp=2'), 0, spMegatron).find((t) => t.group === 'pp')!.bytes, act / 2);
  assert.equal(stageTraffic(tiny, setup(1), lay('tp=2,pp=2'), 0, spRuntime).find((t) => t.group === 'pp')!.bytes, act);
});

test('expert all-to-all (EP): dispatch and combine forward and backward, (ep-1)/ep of the sequence shard\'s routed copies', () => {
  const l = lay('tp=2,dp=2,expert=ep');
  const moe = layerTraffic(tiny, setup(1, 2), l, RUNTIME_TRAFFIC).filter((t) => t.kind === 'all-to-all');
  const rows = moe.filter((t) => t.what === 'experts: dispatch and combine');
  assert.equal(rows.reduce((a, t) => a + sentBytes(t), 0), 4 * (T / 2) * 2 * 64 * 4 * (3 / 4));
  // the busiest rank's buffer prices the time, not the bytes
  assert.ok(rows.every((t) => t.busiest > 1 && t.group === 'ep' && t.size === 4));
  // and how many rows go to each expert: one int32 per expert, 3/4 of them to the other ranks
  assert.deepEqual(moe.filter((t) => !rows.includes(t)).map((t) => sentBytes(t)), [4 * 4 * (3 / 4)]);
  // without sequence parallelism each TP rank dispatched half the rows all of them hold: the partial outputs are summed over TP
  const seam = layerTraffic(tiny, setup(1, 2), l, RUNTIME_TRAFFIC).filter((t) => t.what.startsWith('experts') && t.group === 'tp');
  assert.equal(seam.reduce((a, t) => a + sentBytes(t), 0), 2 * (T * 64 * 4) + T * 2 * 4); // over 2 ranks an all-reduce sends its buffer once
  // Megatron routes the sequence shard it holds: no TP seam around the experts
  assert.deepEqual(layerTraffic(tiny, setup(1, 2), l, spMegatron).filter((t) => t.what.startsWith('experts') && t.group === 'tp'), []);
});

test('Megatron: the vocabulary-parallel embedding and output layer have TP seams; tied embeddings over a pipeline are all-reduced between the ends', () => {
  const l = lay('tp=2,pp=2');
  const first = stageTraffic(tiny, setup(1), l, 0, MEGATRON_TRAFFIC), last = stageTraffic(tiny, setup(1), l, 1, MEGATRON_TRAFFIC);
  assert.deepEqual(first.filter((t) => t.group === 'tp').map((t) => `${t.what} ${t.kind} ${t.pass}`), ['embedding reduce-scatter forward', 'embedding all-gather backward']);
  assert.deepEqual(last.filter((t) => t.group === 'tp').map((t) => `${t.what} ${t.kind} ${t.calls}`), ['output layer all-gather 1', 'output layer reduce-scatter 1', 'cross-entropy all-reduce 3']);
  const tied = { ...tiny, tied: true };
  const ends = [0, 1].map((i) => dataParallelTraffic(tied, setup(1), l, i, 1, MEGATRON_TRAFFIC).filter((t) => t.group === 'embedding'));
  assert.deepEqual(ends.map((e) => e.map((t) => t.bytes)), [[(512 * 64 * 4) / 2], [(512 * 64 * 4) / 2]]);
  // the last stage holds the tied embedding's copy as its output layer
  assert.equal(stageParams(tied, l, false, true).denseFixed, (512 * 64) / 2 + 64);
});

test('the step model prices exactly these transfers', () => {
  const sky = shapeOf(preset('skywork-moe-146b'), 'skywork');
  const c = cluster('a800-80g', 1536);
  const s = defaultSetup({ seq: 4096, globalBatch: 2048 });
  const l: Layout = { tp: 4, pp: 12, dp: 32, vp: 1, microBatch: 1, expert: 'edp', ep: 4, etp: 1, stages: evenStages(52, 12), recompute: Array(12).fill('none') };
  const dp = dataParallelTime(sky, s, l, c, 3, 4);
  const ts = dataParallelTraffic(sky, s, l, 3, 4, MEGATRON_TRAFFIC);
  assert.equal(dp.grads, ts.filter((t) => t.pass === 'reduce').reduce((a, t) => a + transferTime(c, t), 0));
  assert.equal(dp.params, ts.filter((t) => t.pass === 'gather').reduce((a, t) => a + transferTime(c, t), 0));
  assert.equal(stageExtra(sky, s, l, c, 5).p2p, stageTraffic(sky, s, l, 5, MEGATRON_TRAFFIC).reduce((a, t) => a + transferTime(c, t), 0));
  // EP's all-to-all buffer: the routed copies of a TP rank's sequence shard, at the busiest rank's load
  const ep = moeLayerComm(sky, { ...l, expert: 'ep', ep: 16 }, c, 4096, 1.2);
  assert.ok(Math.abs(ep.bytesPerA2a - (4096 / 4) * 2 * 2 * 4608 * (1 + 0.2 / 1)) < 1e-6);
});

test('--measure notation: the runtime group names, sp=1, etp as the runtime runs it, and what is not run yet', () => {
  assert.deepEqual(['dp0', 'tp12', 'ep0', 'pp3', 'p2p', 'embedding1', 'world', 'pp0-checkpoint'].map(groupKind), ['dp', 'tp', 'ep', 'pp', 'pp', 'embedding', 'world', 'pp']);
  const cfg = preset('tiny');
  const etp = predictTraffic(cfg, 'tiny', { layout: 'tp=2,dp=2,expert=etp', steps: 1, batch: 2, seq: 32 });
  assert.equal(etp.layout.ep, 1); // every DP replica holds every expert's slice: no all-to-all
  assert.ok(etp.train && etp.notRun === null);
  const seqPar = predictTraffic(cfg, 'tiny', { layout: 'tp=2,sp=1', steps: 1, batch: 2, seq: 32 });
  assert.equal(seqPar.traffic.sequenceParallel, true);
  const vp = predictTraffic(preset('demo'), 'demo', { layout: 'pp=2,vp=2', steps: 1, batch: 2, seq: 32 });
  assert.match(vp.notRun ?? '', /vp=2/);
  assert.throws(() => predictTraffic(cfg, 'tiny', { layout: 'tp=2,mb=2', steps: 1, batch: 2, seq: 32 }), /--layout: mb=2: the micro-batch of a measured run is --batch/);
  assert.throws(() => predictTraffic(cfg, 'tiny', { layout: 'tp=2,sp=yes', steps: 1, batch: 2, seq: 32 }), /--layout: sp must be 1 or 0/);
});
