/** LR schedules at their defining points. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learningRate } from '../../src/train/schedule.js';

const near = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

test('warmup + cosine to a floor', () => {
  const s = { kind: 'cosine' as const, lr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  near(learningRate(s, 0), 1e-4);
  near(learningRate(s, 9), 1e-3);
  near(learningRate(s, 10), 1e-3);
  near(learningRate(s, 60), 1e-4 + 0.5 * 9e-4); // halfway through the cosine
  near(learningRate(s, 110), 1e-4);
  near(learningRate(s, 500), 1e-4);
});

test('constant after warmup; warmup-stable-decay', () => {
  near(learningRate({ kind: 'constant', lr: 3e-4, minLr: 0, warmupSteps: 4, totalSteps: 100 }, 50), 3e-4);
  const w = { kind: 'wsd' as const, lr: 1e-3, minLr: 0, warmupSteps: 0, totalSteps: 100, decayFraction: 0.2 };
  near(learningRate(w, 79), 1e-3);
  near(learningRate(w, 90), 5e-4);
  near(learningRate(w, 100), 0);
});
