/**
 * Memory ownership is enforced: 100 training steps of a tiny MoE transformer (every op a real
 * step uses, with AdamW updates) leave the heap exactly where the first steps left it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { createBackend } from '../../src/backend/index.js';
import * as T from '../../src/tensor/index.js';
import type { Tensor } from '../../src/tensor/index.js';

const V = 32, C = 16, H = 2, D = 8, E = 4, K = 2, F = 24, B = 2, S = 12;

function tinyModel(be: Backend) {
  const rng = new T.Rng(1);
  const p = (shape: number[], name: string, std = 0.2) => T.parameter(T.randn(shape, rng, std, be), name);
  const ones = (n: number, name: string) => T.parameter(T.ones([n], be), name);
  return {
    embed: p([V, C], 'embed'),
    norm1: ones(C, 'norm1'),
    wq: p([C, C], 'wq'),
    wk: p([C, C], 'wk'),
    wv: p([C, C], 'wv'),
    wo: p([C, C], 'wo'),
    norm2: ones(C, 'norm2'),
    gate: p([E, C], 'gate'),
    w1: p([E, F, C], 'w1'),
    w3: p([E, F, C], 'w3'),
    w2: p([E, C, F], 'w2'),
    normf: ones(C, 'normf'),
    head: p([V, C], 'head'),
  };
}

/** Sort token-slot assignments by expert: the permutation and group offsets, on the host. */
function dispatchPlan(indices: Int32Array, tokens: number) {
  const order = Array.from(indices.keys()).sort((a, b) => indices[a]! - indices[b]! || a - b);
  const offsets = new Int32Array(E + 1);
  for (const e of indices) offsets[e + 1]!++;
  for (let e = 0; e < E; e++) offsets[e + 1]! += offsets[e]!;
  const tokenOf = Int32Array.from(order, (a) => Math.floor(a / K));
  return { order: Int32Array.from(order), tokenOf, offsets, tokens };
}

function step(m: ReturnType<typeof tinyModel>, be: Backend, tables: { cos: Tensor; sin: Tensor }, ids: Int32Array, targets: Int32Array) {
  return T.tidy(() => {
    const x = T.embedding(m.embed, T.tensor(ids, [B, S], 'i32', be)); // (B, S, C)
    const h1 = T.rmsnorm(x, m.norm1, 1e-6);
    const pos = T.tensor(Int32Array.from({ length: B * S }, (_, i) => i % S), [B * S], 'i32', be);
    const q = T.rope(T.reshape(T.linear(h1, m.wq), [B, S, H, D]), tables, pos);
    const k = T.rope(T.reshape(T.linear(h1, m.wk), [B, S, H, D]), tables, pos);
    const v = T.reshape(T.linear(h1, m.wv), [B, S, H, D]);
    const a = T.linear(T.reshape(T.attention(q, k, v), [B, S, C]), m.wo);
    const h = T.add(x, a);
    const xn = T.reshape(T.rmsnorm(h, m.norm2, 1e-6), [B * S, C]); // (N, C)
    const probs = T.softmax(T.linear(xn, m.gate)); // (N, E)
    const top = T.topk(probs, K);
    const w = T.div(top.values, T.reshape(T.sum(top.values), [B * S, 1])); // (N, K)
    const plan = dispatchPlan(top.indices.toArray() as Int32Array, B * S);
    const xs = T.gatherRows(xn, T.tensor(plan.tokenOf, [plan.tokenOf.length], 'i32', be)); // (N*K, C)
    const act = T.swiglu(T.groupedMatmul(xs, m.w1, plan.offsets), T.groupedMatmul(xs, m.w3, plan.offsets));
    const y = T.groupedMatmul(act, m.w2, plan.offsets); // (N*K, C)
    const wSorted = T.gatherRows(T.reshape(w, [B * S * K, 1]), T.tensor(plan.order, [plan.order.length], 'i32', be));
    const moe = T.scatterAddRows(T.mul(y, wSorted), T.tensor(plan.tokenOf, [plan.tokenOf.length], 'i32', be), B * S);
    const out = T.add(T.reshape(h, [B * S, C]), moe);
    const logits = T.linear(T.rmsnorm(out, m.normf, 1e-6), m.head);
    const loss = T.crossEntropy(logits, T.tensor(targets, [B * S], 'i32', be));
    T.backward(loss);
    return loss.item();
  });
}

function adamw(params: Tensor[], state: Map<Tensor, [Tensor, Tensor]>, t: number, be: Backend) {
  for (const p of params) {
    let s = state.get(p);
    if (!s) {
      s = [T.zeros(p.shape, 'f32', be), T.zeros(p.shape, 'f32', be)];
      state.set(p, s);
    }
    be.kernels.adamw(p.ptr, p.grad!.ptr, s[0].ptr, s[1].ptr, p.size, 1e-2, 0.9, 0.95, 1e-8, 0.01, 1 - 0.9 ** t, 1 - 0.95 ** t);
    p.grad!.dispose();
    p.grad = null;
  }
}

async function train(be: Backend) {
  T.setBackend(be);
  const baseline = be.heap.stats().inUse; // the backend's own scratch buffers
  const m = tinyModel(be);
  const params = Object.values(m);
  const tables = T.ropeTables(S, D, 10000, be);
  const state = new Map<Tensor, [Tensor, Tensor]>();
  const rng = new T.Rng(5);
  const losses: number[] = [];
  let afterWarmup = { inUse: 0, capacity: 0, blocks: 0 };
  for (let t = 1; t <= 100; t++) {
    // A repeating pattern the model can learn: next token = (token + 1) mod V.
    const ids = Int32Array.from({ length: B * S }, () => rng.int(V));
    const targets = ids.map((x) => (x + 1) % V);
    losses.push(step(m, be, tables, ids, targets));
    adamw(params, state, t, be);
    if (t === 3) afterWarmup = be.heap.stats();
  }
  const end = be.heap.stats();
  for (const x of [...params, tables.cos, tables.sin, ...[...state.values()].flat()]) x.dispose();
  return { losses, afterWarmup, end, baseline, afterFree: be.heap.stats() };
}

for (const make of [() => Promise.resolve(new JsBackend() as Backend), () => createBackend({ name: 'wasm', threads: 2 })]) {
  test('100 training steps of a tiny MoE model do not grow memory', async (t) => {
    const be = await make();
    t.diagnostic(be.describe());
    try {
      const r = await train(be);
      assert.equal(r.end.inUse, r.afterWarmup.inUse, 'bytes in use after step 100 vs step 3');
      assert.equal(r.end.blocks, r.afterWarmup.blocks, 'live blocks after step 100 vs step 3');
      assert.equal(r.end.capacity, r.afterWarmup.capacity, 'heap capacity after step 100 vs step 3');
      // Only the backend's own scratch (e.g. wasm's group-offset buffer, allocated on first use) may remain.
      assert.ok(r.afterFree.inUse - r.baseline <= 65536, `everything freed at the end (${r.afterFree.inUse - r.baseline} bytes left)`);
      const first = r.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
      const last = r.losses.slice(-5).reduce((a, b) => a + b) / 5;
      assert.ok(last < first * 0.7, `the tiny model learns (loss ${first.toFixed(3)} -> ${last.toFixed(3)})`);
    } finally {
      await be.dispose();
    }
  });
}
