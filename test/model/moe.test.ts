/** The MoE block against a per-token loop in plain float64 JavaScript; capacity and drops on a worked example. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import { createBackend } from '../../src/backend/index.js';
import type { Backend } from '../../src/backend/backend.js';
import * as T from '../../src/tensor/index.js';
import { preset } from '../../src/model/presets.js';
import { moeForward, planDispatch, type MoeOptions } from '../../src/model/moe.js';
import type { ModelConfig } from '../../src/model/config.js';
import { assertClose } from '../helpers.js';

/** Reference: route and combine token by token (SPEC section 1 pseudo-code). */
function perTokenMoe(x: Float32Array, N: number, H: number, F: number, E: number, k: number, wg: Float32Array, w1: Float32Array, w3: Float32Array, w2: Float32Array, lambda: number | null, keep?: (t: number, e: number) => boolean) {
  const y = new Float64Array(N * H);
  for (let t = 0; t < N; t++) {
    const xt = x.subarray(t * H, (t + 1) * H);
    const logits = Array.from({ length: E }, (_, e) => xt.reduce((s, v, i) => s + v * wg[e * H + i]!, 0));
    if (lambda !== null) {
      const m = logits.reduce((a, b) => a + b) / E;
      const sd = Math.sqrt(logits.reduce((s, v) => s + (v - m) ** 2, 0) / (E - 1));
      for (let e = 0; e < E; e++) logits[e] = logits[e]! / (sd / lambda);
    }
    const mx = Math.max(...logits);
    const ex = logits.map((v) => Math.exp(v - mx));
    const z = ex.reduce((a, b) => a + b);
    const p = ex.map((v) => v / z);
    const top = [...p.keys()].sort((a, b) => p[b]! - p[a]! || a - b).slice(0, k);
    const wsum = top.reduce((s, e) => s + p[e]!, 0);
    for (const e of top) {
      if (keep && !keep(t, e)) continue;
      const g = p[e]! / wsum;
      const act = new Float64Array(F);
      for (let f = 0; f < F; f++) {
        let a = 0, b = 0;
        for (let i = 0; i < H; i++) {
          a += w1[(e * F + f) * H + i]! * xt[i]!;
          b += w3[(e * F + f) * H + i]! * xt[i]!;
        }
        act[f] = (a / (1 + Math.exp(-a))) * b;
      }
      for (let i = 0; i < H; i++) {
        let s = 0;
        for (let f = 0; f < F; f++) s += w2[(e * H + i) * F + f]! * act[f]!;
        y[t * H + i]! += g * s;
      }
    }
  }
  return y;
}

function setup(be: Backend, cfg: ModelConfig, N: number, seed: number) {
  const rng = new T.Rng(seed);
  const H = cfg.hiddenSize, F = cfg.intermediateSize, E = cfg.numExperts;
  const x = T.keep(T.randn([N, H], rng, 1, be));
  const w = {
    gate: T.keep(T.randn([E, H], rng, 0.3, be)),
    w1: T.keep(T.randn([E, F, H], rng, 0.1, be)),
    w3: T.keep(T.randn([E, F, H], rng, 0.1, be)),
    w2: T.keep(T.randn([E, H, F], rng, 0.1, be)),
  };
  return { x, w };
}

const dropless: MoeOptions = { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'none', zLoss: false };

for (const make of [async () => new JsBackend() as Backend, () => createBackend({ name: 'wasm', threads: 2 })]) {
  test('grouped MoE path equals a per-token loop (logit norm on and off)', async (t) => {
    const be = await make();
    t.diagnostic(be.describe());
    T.setBackend(be);
    for (const logitsNorm of [true, false]) {
      const cfg = { ...preset('tiny'), logitsNorm, gateNormStd: 2, hiddenSize: 24, intermediateSize: 20, numExperts: 5, topK: 2 };
      const N = 37;
      const { x, w } = setup(be, cfg, N, 3);
      const out = T.noGrad(() => T.tidy(() => moeForward(x, w, cfg, dropless).y.toFloat32()));
      const ref = perTokenMoe(x.toFloat32(), N, 24, 20, 5, 2, w.gate.toFloat32(), w.w1.toFloat32(), w.w3.toFloat32(), w.w2.toFloat32(), logitsNorm ? 2 : null);
      assertClose(out, ref, `moe y (logitsNorm ${logitsNorm})`, 1e-4, 1e-5);
      for (const v of [x, ...Object.values(w)]) v.dispose();
    }
    await be.dispose();
  });
}

test('with capacity, dropped assignments contribute nothing (per-token loop with the same drops)', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const cfg = { ...preset('tiny'), hiddenSize: 16, intermediateSize: 12, numExperts: 4, topK: 2 };
  const N = 40;
  const { x, w } = setup(be, cfg, N, 9);
  const opts: MoeOptions = { capacityFactor: 0.6, dropPolicy: 'position', auxLoss: 'skywork', zLoss: true };
  const r = T.noGrad(() => T.tidy(() => {
    const o = moeForward(x, w, cfg, opts);
    return { y: o.y.toFloat32(), stats: o.stats, aux: o.aux!.item(), z: o.zLoss!.item() };
  }));
  const cap = Math.ceil((0.6 * N * 2) / 4);
  assert.equal(r.stats.capacity, cap);
  assert.ok(r.stats.dropRate > 0, 'this routing overflows some expert');
  // Position policy: an expert keeps its first `cap` tokens in token order.
  const seen = new Map<number, number>();
  const ref = perTokenMoe(x.toFloat32(), N, 16, 12, 4, 2, w.gate.toFloat32(), w.w1.toFloat32(), w.w3.toFloat32(), w.w2.toFloat32(), 1, (_t, e) => {
    const c = seen.get(e) ?? 0;
    seen.set(e, c + 1);
    return c < cap;
  });
  assertClose(r.y, ref, 'moe y with drops', 1e-4, 1e-5);
  const routed = r.stats.routedPerExpert.reduce((a, b) => a + b);
  assert.equal(routed, N * 2);
  assert.equal(r.stats.tokensPerExpert.reduce((a, b) => a + b), routed - Math.round(r.stats.dropRate * N * 2));
  assert.ok(r.stats.tokensPerExpert.every((c) => c <= cap));
  assert.ok(r.aux >= 0 && r.z > 0);
  for (const v of [x, ...Object.values(w)]) v.dispose();
});

test('capacity and drop policies on a worked example', () => {
  // 6 tokens, k=1, 2 experts, capacity factor 1 -> capacity ceil(1*6*1/2) = 3.
  // Expert 0 gets tokens 0,1,2,4,5 (probabilities .9 .6 .8 .7 .95); expert 1 gets token 3.
  const experts = Int32Array.from([0, 0, 0, 1, 0, 0]);
  const probs = Float32Array.from([0.9, 0.6, 0.8, 0.99, 0.7, 0.95]);
  const byProb = planDispatch(experts, probs, 6, 1, 2, { capacityFactor: 1, dropPolicy: 'probability' });
  assert.equal(byProb.capacity, 3);
  assert.deepEqual(Array.from(byProb.order), [0, 2, 5, 3]); // keeps .9 .8 .95, drops .6 (t1) and .7 (t4)
  assert.deepEqual(Array.from(byProb.offsets), [0, 3, 4]);
  assert.equal(byProb.dropped, 2);
  const byPos = planDispatch(experts, probs, 6, 1, 2, { capacityFactor: 1, dropPolicy: 'position' });
  assert.deepEqual(Array.from(byPos.order), [0, 1, 2, 3]); // keeps the first three positions, drops t4, t5
  assert.equal(byPos.dropped, 2);
  const none = planDispatch(experts, probs, 6, 1, 2, { capacityFactor: null, dropPolicy: 'position' });
  assert.deepEqual(Array.from(none.order), [0, 1, 2, 4, 5, 3]);
  assert.equal(none.dropped, 0);
  // k = 2: assignment ids are token*2 + slot; tokenOf maps back to tokens.
  const two = planDispatch(Int32Array.from([1, 0, 0, 1]), Float32Array.from([0.6, 0.4, 0.7, 0.3]), 2, 2, 2, { capacityFactor: null, dropPolicy: 'probability' });
  assert.deepEqual(Array.from(two.order), [1, 2, 0, 3]);
  assert.deepEqual(Array.from(two.tokenOf), [0, 1, 0, 1]);
});

test('aux losses: skywork eq. 4 is zero for a uniform router, switch is 1 for balanced routing', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const cfg = { ...preset('tiny'), hiddenSize: 8, intermediateSize: 4, numExperts: 4, topK: 2, logitsNorm: false };
  const N = 8;
  const x = T.keep(T.randn([N, 8], new T.Rng(1), 1, be));
  const w = { gate: T.keep(T.zeros([4, 8], 'f32', be)), w1: T.keep(T.zeros([4, 4, 8], 'f32', be)), w3: T.keep(T.zeros([4, 4, 8], 'f32', be)), w2: T.keep(T.zeros([4, 8, 4], 'f32', be)) };
  const sky = T.noGrad(() => T.tidy(() => moeForward(x, w, cfg, { ...dropless, auxLoss: 'skywork' }).aux!.item()));
  assert.ok(Math.abs(sky) < 1e-12);
  // Zero gate: p uniform, ties -> experts 0 and 1 for every token: f = [.5, .5, 0, 0], P = .25 each: 4 * (.5*.25*2) = 1.
  const sw = T.noGrad(() => T.tidy(() => moeForward(x, w, cfg, { ...dropless, auxLoss: 'switch' }).aux!.item()));
  assert.ok(Math.abs(sw - 1) < 1e-6, `switch aux ${sw}`);
  for (const v of [x, ...Object.values(w)]) v.dispose();
});
