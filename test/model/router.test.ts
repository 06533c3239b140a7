/**
 * The router inside `moeForward` against a float64 per-token reference written from the report and
 * SPEC section 1: gate logits (one linear, or the 2-layer gate), gating logit normalization, softmax,
 * top-k on the probabilities (plus the aux-loss-free bias, for selection only), renormalized
 * weights, capacity with the 'probability' drop policy (the default), the aux losses (report eq. 4,
 * Switch Transformer), the z-loss, and the router statistics (Max1/Max2, Max2/Max3, entropy).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { preset } from '../../src/model/presets.js';
import { moeForward, type MoeOptions, type MoeWeights } from '../../src/model/moe.js';
import type { ModelConfig } from '../../src/model/config.js';
import { assertClose } from '../helpers.js';

const be = new JsBackend();
T.setBackend(be);

interface Ref {
  y: Float64Array;
  p: number[][];
  /** The logits that enter the softmax (after normalization, when on). */
  softmaxInput: number[][];
  selected: number[][];
  kept: boolean[][];
}

const dot = (a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, n: number) => {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i]! * b[bo + i]!;
  return s;
};

/** Float64 reference of one MoE layer, token by token, then capacity per expert. */
function reference(x: Float32Array, N: number, cfg: ModelConfig, w: Record<string, Float32Array>, o: { bias?: Float32Array; capacityFactor: number | null }): Ref {
  const H = cfg.hiddenSize, F = cfg.intermediateSize, E = cfg.numExperts, k = cfg.topK;
  const softmaxInput: number[][] = [], p: number[][] = [], selected: number[][] = [], weights: number[][] = [];
  for (let t = 0; t < N; t++) {
    let z: number[];
    if (w.gate2) {
      const hidden = Array.from({ length: 8 * E }, (_, j) => Math.tanh(dot(x, t * H, w.gate!, j * H, H)));
      z = Array.from({ length: E }, (_, e) => hidden.reduce((s, v, j) => s + v * w.gate2![e * 8 * E + j]!, 0));
    } else z = Array.from({ length: E }, (_, e) => dot(x, t * H, w.gate!, e * H, H));
    let zn = z;
    if (cfg.logitsNorm) {
      const m = z.reduce((a, b) => a + b, 0) / E;
      const sd = Math.sqrt(z.reduce((s, v) => s + (v - m) ** 2, 0) / (E - 1));
      zn = z.map((v) => (cfg.gateNormStd * v) / sd);
    }
    softmaxInput.push(zn);
    const mx = Math.max(...zn);
    const ex = zn.map((v) => Math.exp(v - mx));
    const sum = ex.reduce((a, b) => a + b, 0);
    const pt = ex.map((v) => v / sum);
    p.push(pt);
    const score = pt.map((v, e) => v + (o.bias?.[e] ?? 0));
    const top = [...score.keys()].sort((a, b) => score[b]! - score[a]! || a - b).slice(0, k);
    selected.push(top);
    const ws = top.reduce((s, e) => s + pt[e]!, 0);
    weights.push(top.map((e) => pt[e]! / ws));
  }
  // Capacity: an over-full expert keeps its highest-probability assignments (ties: earlier first).
  const kept = selected.map((s) => s.map(() => true));
  if (o.capacityFactor !== null) {
    const cap = Math.ceil((o.capacityFactor * N * k) / E);
    for (let e = 0; e < E; e++) {
      const mine: [number, number][] = [];
      selected.forEach((s, t) => s.forEach((se, j) => se === e && mine.push([t, j])));
      mine.sort((a, b) => p[b[0]]![e]! - p[a[0]]![e]! || a[0] * k + a[1] - (b[0] * k + b[1]));
      for (const [t, j] of mine.slice(cap)) kept[t]![j] = false;
    }
  }
  const y = new Float64Array(N * H);
  for (let t = 0; t < N; t++)
    selected[t]!.forEach((e, j) => {
      if (!kept[t]![j]) return;
      const act = Array.from({ length: F }, (_, f) => {
        const a = dot(x, t * H, w.w1!, (e * F + f) * H, H), b = dot(x, t * H, w.w3!, (e * F + f) * H, H);
        return (a / (1 + Math.exp(-a))) * b;
      });
      for (let i = 0; i < H; i++) y[t * H + i]! += weights[t]![j]! * act.reduce((s, v, f) => s + v * w.w2![(e * H + i) * F + f]!, 0);
    });
  return { y, p, softmaxInput, selected, kept };
}

function setup(cfg: ModelConfig, N: number, seed: number, gateStd: number) {
  const rng = new T.Rng(seed);
  const H = cfg.hiddenSize, F = cfg.intermediateSize, E = cfg.numExperts;
  const x = T.keep(T.randn([N, H], rng, 1));
  const w: MoeWeights = cfg.twoLayerGate
    ? { gate: T.keep(T.randn([8 * E, H], rng, gateStd)), gate2: T.keep(T.randn([E, 8 * E], rng, gateStd)), w1: T.keep(T.randn([E, F, H], rng, 0.2)), w3: T.keep(T.randn([E, F, H], rng, 0.2)), w2: T.keep(T.randn([E, H, F], rng, 0.2)) }
    : { gate: T.keep(T.randn([E, H], rng, gateStd)), w1: T.keep(T.randn([E, F, H], rng, 0.2)), w3: T.keep(T.randn([E, F, H], rng, 0.2)), w2: T.keep(T.randn([E, H, F], rng, 0.2)) };
  const host = Object.fromEntries(Object.entries(w).map(([n, t]) => [n, (t as T.Tensor).toFloat32()]));
  const dispose = () => [x, ...Object.values(w)].forEach((t) => (t as T.Tensor).dispose());
  return { x, w, host, dispose };
}

const cfgOf = (o: Partial<ModelConfig>): ModelConfig => ({ ...preset('tiny'), hiddenSize: 12, intermediateSize: 10, numExperts: 6, topK: 2, logitsNorm: false, gateNormStd: 1, ...o });

function run(x: T.Tensor, w: MoeWeights, cfg: ModelConfig, opts: MoeOptions) {
  return T.noGrad(() =>
    T.tidy(() => {
      const o = moeForward(x, w, cfg, opts);
      return { y: o.y.toFloat32(), aux: o.aux?.item() ?? null, z: o.zLoss?.item() ?? null, stats: o.stats };
    }),
  );
}

test('aux losses on a non-trivial router: report eq. 4, Switch and the z-loss against float64', () => {
  for (const logitsNorm of [false, true]) {
    const cfg = cfgOf({ logitsNorm, gateNormStd: 1.7 });
    const N = 23, E = cfg.numExperts, k = cfg.topK;
    const s = setup(cfg, N, 5, 0.8);
    const ref = reference(s.x.toFloat32(), N, cfg, s.host, { capacityFactor: null });
    const meanP = Array.from({ length: E }, (_, e) => ref.p.reduce((a, pt) => a + pt[e]!, 0) / N);
    assert.ok(Math.max(...meanP) - Math.min(...meanP) > 0.02, 'the router is far from uniform, so eq. 4 is far from 0');
    const skywork = meanP.reduce((a, m) => a + (1 / E - m) ** 2, 0);
    const routed = Array.from({ length: E }, (_, e) => ref.selected.flat().filter((x) => x === e).length / (N * k));
    const sw = E * routed.reduce((a, f, e) => a + f * meanP[e]!, 0);
    // z-loss (ST-MoE) on the logits that enter the softmax: mean_i logsumexp(z_i)^2.
    const z = ref.softmaxInput.reduce((a, zt) => {
      const mx = Math.max(...zt);
      return a + (mx + Math.log(zt.reduce((q, v) => q + Math.exp(v - mx), 0))) ** 2;
    }, 0) / N;
    const sky = run(s.x, s.w, cfg, { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'skywork', zLoss: true });
    const swr = run(s.x, s.w, cfg, { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'switch', zLoss: false });
    assertClose([sky.aux!], [skywork], `skywork aux (logit norm ${logitsNorm})`, 1e-5, 1e-9);
    assertClose([swr.aux!], [sw], `switch aux (logit norm ${logitsNorm})`, 1e-5, 1e-9);
    assertClose([sky.z!], [z], `z-loss (logit norm ${logitsNorm})`, 1e-5, 1e-9);
    assertClose(sky.y, ref.y, `y (logit norm ${logitsNorm})`, 1e-4, 1e-6);
    s.dispose();
  }
});

test('router statistics: Max1/Max2, Max2/Max3 and entropy of the full gate distribution', () => {
  const cfg = cfgOf({ logitsNorm: true, gateNormStd: 2 });
  const N = 17;
  const s = setup(cfg, N, 8, 1);
  const ref = reference(s.x.toFloat32(), N, cfg, s.host, { capacityFactor: null });
  let r12 = 0, r23 = 0, ent = 0;
  for (const pt of ref.p) {
    const sorted = [...pt].sort((a, b) => b - a);
    r12 += sorted[0]! / sorted[1]!;
    r23 += sorted[1]! / sorted[2]!;
    ent -= pt.reduce((a, v) => a + v * Math.log(v), 0);
  }
  const st = run(s.x, s.w, cfg, { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'none', zLoss: false }).stats;
  assertClose([st.max1OverMax2, st.max2OverMax3, st.entropy], [r12 / N, r23 / N, ent / N], 'max1/max2, max2/max3, entropy', 1e-5, 0);
  assert.ok(st.max1OverMax2 > 1.05 && st.max2OverMax3 > 1.05, 'ratios away from 1: a swapped or constant ratio shows');
  s.dispose();
});

test('aux-loss-free bias selects experts inside moeForward; the weights stay the unbiased probabilities', () => {
  const cfg = cfgOf({ logitsNorm: true });
  const N = 19, E = cfg.numExperts;
  const s = setup(cfg, N, 11, 1);
  // A bias large enough to change the selection of most tokens: experts 4 and 5 favoured.
  const bias = Float32Array.from({ length: E }, (_, e) => (e >= 4 ? 0.6 : -0.1 * e));
  const ref = reference(s.x.toFloat32(), N, cfg, s.host, { bias, capacityFactor: null });
  const plain = reference(s.x.toFloat32(), N, cfg, s.host, { capacityFactor: null });
  const changed = ref.selected.filter((sel, t) => sel.join() !== plain.selected[t]!.join()).length;
  assert.ok(changed > N / 2, `the bias changes the selection of ${changed} of ${N} tokens`);
  const out = run(s.x, s.w, cfg, { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'switch', zLoss: false, expertBias: bias });
  const routed = Array.from({ length: E }, (_, e) => ref.selected.flat().filter((x) => x === e).length);
  assert.deepEqual(out.stats.routedPerExpert, routed);
  assertClose(out.y, ref.y, 'y with expert bias', 1e-4, 1e-6);
  s.dispose();
});

test('the 2-layer gate: Linear(H, 8E) -> tanh -> Linear(8E, E)', () => {
  const cfg = cfgOf({ twoLayerGate: true, logitsNorm: true, gateNormStd: 1.3 });
  const N = 13;
  const s = setup(cfg, N, 13, 0.5);
  const ref = reference(s.x.toFloat32(), N, cfg, s.host, { capacityFactor: null });
  const out = run(s.x, s.w, cfg, { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'skywork', zLoss: true });
  assertClose(out.y, ref.y, 'y with the 2-layer gate', 1e-4, 1e-6);
  const E = cfg.numExperts;
  const meanP = Array.from({ length: E }, (_, e) => ref.p.reduce((a, pt) => a + pt[e]!, 0) / N);
  assertClose([out.aux!], [meanP.reduce((a, m) => a + (1 / E - m) ** 2, 0)], 'skywork aux with the 2-layer gate', 1e-5, 1e-9);
  s.dispose();
});

test("the default 'probability' drop policy through moeForward: over-full experts keep their most probable assignments", () => {
  const cfg = cfgOf({ logitsNorm: true, numExperts: 4 });
  const N = 30;
  const s = setup(cfg, N, 17, 1.2);
  const ref = reference(s.x.toFloat32(), N, cfg, s.host, { capacityFactor: 0.75 });
  const dropped = ref.kept.flat().filter((x) => !x).length;
  assert.ok(dropped >= 5, `this routing overflows (${dropped} dropped assignments)`);
  const out = run(s.x, s.w, cfg, { capacityFactor: 0.75, dropPolicy: 'probability', auxLoss: 'none', zLoss: false });
  assert.equal(out.stats.capacity, Math.ceil((0.75 * N * 2) / 4));
  assert.equal(out.stats.dropRate, dropped / (N * 2));
  assertClose(out.y, ref.y, 'y with probability drops', 1e-4, 1e-6);
  // The position policy drops other assignments here, so the two policies are told apart.
  const pos = run(s.x, s.w, cfg, { capacityFactor: 0.75, dropPolicy: 'position', auxLoss: 'none', zLoss: false });
  let diff = 0;
  for (let i = 0; i < pos.y.length; i++) diff = Math.max(diff, Math.abs(pos.y[i]! - out.y[i]!));
  assert.ok(diff > 1e-3, 'position and probability policies drop different assignments on this routing');
  s.dispose();
});
