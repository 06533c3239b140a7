/**
 * AdamW and global-norm clipping against PyTorch: torch.optim.AdamW and
 * torch.nn.utils.clip_grad_norm_ on the same gradients, recorded in float64 by
 * test/fixtures/adamw/make_adamw.py (six steps, a decayed and a non-decayed group, steps that are
 * clipped and steps that are not, one step in which a parameter has no gradient).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { AdamW, isDecayed } from '../../src/train/optimizer.js';
import { assertClose } from '../helpers.js';

type Nested = number | Nested[];
interface Fixture {
  hyperparameters: { betas: [number, number]; eps: number; max_norm: number; groups: { name: string; weight_decay: number; params: string[] }[] };
  initial_params: Record<string, Nested>;
  steps: { step: number; lr: number; raw_grads: Record<string, Nested | null>; total_norm: number; clipped_grads: Record<string, Nested | null>; params_after: Record<string, Nested> }[];
}

const fx = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/fixtures/adamw/adamw.json', import.meta.url)), 'utf8')) as Fixture;

const shapeOf = (v: Nested): number[] => (Array.isArray(v) ? [v.length, ...shapeOf(v[0]!)] : []);
const flat = (v: Nested): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v]);

test('AdamW and clipping follow torch.optim.AdamW and clip_grad_norm_ step by step', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const h = fx.hyperparameters;
  const params = Object.entries(fx.initial_params).map(([name, v]) => T.keep(T.parameter(T.tensor(flat(v), shapeOf(v)), name)));
  // Our decay rule (matrices decayed, vectors not) must give the fixture's groups.
  for (const g of h.groups) for (const n of g.params) assert.equal(isDecayed(params.find((p) => p.name === n)!), g.weight_decay > 0, n);
  const weightDecay = h.groups.find((g) => g.weight_decay > 0)!.weight_decay;
  const opt = new AdamW(params, { beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay });
  let skipped = 0;
  for (const s of fx.steps) {
    for (const p of params) {
      const g = s.raw_grads[p.name!];
      if (g === null || g === undefined) skipped++;
      else p.grad = T.keep(T.tensor(flat(g), p.shape));
    }
    const norm = opt.clipGradNorm(h.max_norm);
    assertClose([norm], [s.total_norm], `step ${s.step}: pre-clip norm`, 1e-6, 0);
    for (const p of params) {
      const want = s.clipped_grads[p.name!];
      if (want) assertClose(p.grad!.toFloat32(), flat(want), `step ${s.step}: clipped grad of ${p.name}`, 1e-6, 1e-8);
    }
    opt.update(s.lr);
    // float32 parameters against float64 torch: a few ulps of values ~1; an update is ~lr = 1e-3..1e-2
    for (const p of params) assertClose(p.toFloat32(), flat(s.params_after[p.name!]!), `step ${s.step}: ${p.name} after the update`, 1e-6, 1e-7);
  }
  assert.equal(skipped, 1, 'the fixture has one step where a parameter has no gradient');
  assert.equal(opt.steps.get('w_embed'), fx.steps.length - 1);
  opt.dispose();
  for (const p of params) p.dispose();
});
