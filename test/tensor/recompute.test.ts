/**
 * Activation recomputation and arenas (what pipeline parallelism's recompute modes and 1F1B
 * schedule stand on): T.checkpoint gives the gradients of the plain graph, runs its function again
 * in the backward and keeps none of its intermediate tensors; an Arena keeps a forward's graph
 * alive across other work until its backward, then frees all of it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsBackend } from '../../src/backend/js/index.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import * as T from '../../src/tensor/index.js';
import type { Tensor } from '../../src/tensor/index.js';

const be = new JsBackend();
T.setBackend(be);

function grads(params: Tensor[]): Float32Array[] {
  return params.map((p) => {
    const g = p.grad!.toFloat32();
    p.grad!.dispose();
    p.grad = null;
    return g;
  });
}

test('checkpoint: the same gradients as the plain graph, fn run again in the backward, its intermediates not kept', () => {
  const rng = new T.Rng(4);
  const x = T.keep(T.parameter(T.randn([6, 8], rng, 1, be), 'x'));
  const w = T.keep(T.parameter(T.randn([5, 8], rng, 0.3, be), 'w'));
  let calls = 0;
  const f = (a: Tensor) => {
    calls++;
    return T.tanh(T.linear(T.silu(a), w)); // w read directly: its gradient comes from the recomputation
  };
  T.tidy(() => T.backward(T.sumAll(T.square(f(x)))));
  const plain = grads([x, w]);
  calls = 0;
  const live0 = be.heap.stats().inUse;
  T.tidy(() => {
    const y = T.checkpoint(f, [x]);
    assert.equal(calls, 1, 'one forward');
    assert.equal(y.node?.op, 'checkpoint');
    assert.equal(y.node?.inputs.length, 1, 'the graph ends at the inputs: nothing of fn is recorded');
    T.backward(T.sumAll(T.square(y)));
    assert.equal(calls, 2, 'fn ran again in the backward');
  });
  const again = grads([x, w]);
  for (let i = 0; i < 2; i++) assert.deepEqual(again[i], plain[i], `gradient ${i} equals the plain graph's`);
  assert.equal(be.heap.stats().inUse, live0, 'nothing leaked');
  // without autograd it is fn
  calls = 0;
  T.noGrad(() => T.tidy(() => T.checkpoint(f, [x])));
  assert.equal(calls, 1);
  x.dispose();
  w.dispose();
});

test('selective recomputation in the model: the core attention checkpointed, the same parameter gradients', () => {
  const m = SkyworkMoE.create(preset('tiny'), { seed: 2, backend: be });
  const ids = T.keep(T.tensor(Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 37) % 512), [2, 16], 'i32', be));
  const run = (recomputeAttention: boolean) => {
    let ops = 0;
    T.tidy(() => {
      const { logits } = m.forward(ids, { recomputeAttention });
      // count checkpoint nodes in the graph
      const seen = new Set<unknown>();
      const stack = [logits.node];
      while (stack.length) {
        const n = stack.pop();
        if (!n || seen.has(n)) continue;
        seen.add(n);
        if (n.op === 'checkpoint') ops++;
        for (const i of n.inputs) stack.push(i.node);
      }
      T.backward(T.meanAll(T.square(logits)));
    });
    return { ops, g: grads(m.parameters()) };
  };
  const plain = run(false), selective = run(true);
  assert.equal(plain.ops, 0);
  assert.equal(selective.ops, m.config.numLayers, 'one checkpointed core attention per layer');
  plain.g.forEach((g, i) => {
    let d = 0, r = 0;
    for (let j = 0; j < g.length; j++) {
      d = Math.max(d, Math.abs(g[j]! - selective.g[i]![j]!));
      r = Math.max(r, Math.abs(g[j]!));
    }
    assert.ok(d <= 1e-6 * Math.max(r, 1e-12), `parameter ${i}: ${d} off`);
  });
  ids.dispose();
  m.dispose();
});

test('an arena keeps a forward graph across other work until its backward, then frees everything', () => {
  const rng = new T.Rng(5);
  const w = T.keep(T.parameter(T.randn([4, 4], rng, 0.5, be), 'w'));
  const live0 = be.heap.stats().inUse;
  const arenas = [new T.Arena(), new T.Arena()];
  const outs = arenas.map((a, i) => a.run(() => T.sumAll(T.square(T.linear(T.tanh(T.full([3, 4], 0.1 * (i + 1), 'f32', be)), w)))));
  // backwards in the order 1F1B would run them, after both forwards
  for (let i = 0; i < 2; i++) arenas[i]!.run(() => T.backward(outs[i]!));
  const g = w.grad!.toFloat32();
  for (const a of arenas) a.dispose();
  w.grad!.dispose();
  w.grad = null;
  // the same sum in one graph
  T.tidy(() => T.backward(T.add(...([1, 2].map((k) => T.sumAll(T.square(T.linear(T.tanh(T.full([3, 4], 0.1 * k, 'f32', be)), w)))) as [Tensor, Tensor]))));
  const ref = w.grad!.toFloat32();
  w.grad!.dispose();
  w.grad = null;
  for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i]! - ref[i]!) <= 1e-6, `element ${i}`);
  assert.equal(be.heap.stats().inUse, live0, 'the arenas freed their tensors');
  assert.throws(() => arenas[0]!.run(() => 0), /disposed/);
  w.dispose();
});
