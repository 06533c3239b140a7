/** The adaptive coefficient follows eqs. 7-9 exactly; bias balancing evens out a skewed router. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuxController, DEFAULT_CONTROLLER } from '../../src/train/aux-controller.js';
import type { RouterStats } from '../../src/model/moe.js';

const stats = (dropRate: number, routed: number[] = [1, 1]): RouterStats => ({
  dropRate, routedPerExpert: routed, tokensPerExpert: routed, max1OverMax2: 1, max2OverMax3: 1, entropy: 0, capacity: null,
});

test('skywork adaptive alpha follows eqs. 7-9 on a scripted sequence of drop rates', () => {
  const o = { ...DEFAULT_CONTROLLER, kind: 'skywork' as const, alpha: 0.002 };
  const c = new AuxController(o, 2, 2);
  const drops = [0, 0.01, 0.03, 0.05, 0.2, 0.5, 0.04, 0];
  let a0 = 0.002, a1 = 0.002;
  for (const d of drops) {
    c.update([stats(d), stats(d / 2)]);
    // by hand: xi = 0.2, alpha_max = 0.01 -> threshold d <= 0.05
    const t0 = d <= 0.05 ? 0.2 * d : 0.01;
    const t1 = d / 2 <= 0.05 ? 0.2 * (d / 2) : 0.01;
    a0 = 0.99 * a0 + 0.01 * t0;
    a1 = 0.99 * a1 + 0.01 * t1;
    assert.ok(Math.abs(c.alpha(0) - a0) < 1e-15, `layer 0 after d=${d}: ${c.alpha(0)} vs ${a0}`);
    assert.ok(Math.abs(c.alpha(1) - a1) < 1e-15);
  }
});

test('skywork adaptive alpha saturates at alpha_max under a persistently high drop rate', () => {
  const c = new AuxController({ ...DEFAULT_CONTROLLER, alpha: 0 }, 1, 2);
  for (let i = 0; i < 3000; i++) c.update([stats(0.4)]);
  assert.ok(Math.abs(c.alpha(0) - 0.01) < 1e-9, `alpha ${c.alpha(0)}`);
  for (let i = 0; i < 3000; i++) c.update([stats(0.9)]);
  assert.ok(c.alpha(0) <= 0.01 + 1e-15, 'never above alpha_max');
  // At the threshold d = alpha_max / xi = 0.05 the target is continuous: xi * d = alpha_max.
  assert.equal(AuxController.adaptiveStep(0.01, 0.05, DEFAULT_CONTROLLER), 0.01);
});

test('fixed coefficient never moves', () => {
  const c = new AuxController({ ...DEFAULT_CONTROLLER, kind: 'fixed', alpha: 0.02 }, 1, 2);
  c.update([stats(0.7)]);
  assert.equal(c.alpha(0), 0.02);
});

test('bias balancing reduces load imbalance on a skewed synthetic router', () => {
  // Scores: expert 0 always looks best; top-1 of (score + bias) decides the load.
  const E = 4, N = 400;
  const c = new AuxController({ ...DEFAULT_CONTROLLER, kind: 'bias', biasRate: 0.01 }, 1, E);
  let seed = 7;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const scores = Array.from({ length: N }, () => [0.5 + 0.2 * rnd(), 0.3 * rnd(), 0.3 * rnd(), 0.25 * rnd()]);
  const route = () => {
    const b = c.bias(0)!;
    const load = Array(E).fill(0);
    for (const s of scores) {
      let best = 0;
      for (let e = 1; e < E; e++) if (s[e]! + b[e]! > s[best]! + b[best]!) best = e;
      load[best]++;
    }
    return load;
  };
  const imbalance = (l: number[]) => Math.max(...l) / (N / E);
  const before = imbalance(route());
  for (let i = 0; i < 200; i++) c.update([stats(0, route())]);
  const after = imbalance(route());
  assert.ok(before > 3, `skewed at the start (max/mean ${before})`);
  assert.ok(after < 1.3, `balanced after updates (max/mean ${after})`);
  assert.equal(c.alpha(0), 0, 'no aux loss with bias balancing');
});
