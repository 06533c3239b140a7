/** Bad input gets an error naming the op and the shapes at fault; misuse is caught, not silent. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';

const be = new JsBackend();
T.setBackend(be);

function throwsNaming(fn: () => unknown, ...parts: string[]) {
  assert.throws(fn, (e: Error) => {
    for (const p of parts) assert.ok(e.message.includes(p), `'${e.message}' should mention '${p}'`);
    return true;
  });
}

test('shape mismatches name the op and both shapes', () => {
  T.tidy(() => {
    const a = T.zeros([2, 3]), b = T.zeros([4, 5]);
    throwsNaming(() => T.matmul(a, b), 'matmul', '[2,3]', '[4,5]');
    throwsNaming(() => T.add(a, T.zeros([4, 3])), 'add', '[2,3]', '[4,3]');
    throwsNaming(() => T.mul(T.zeros([2, 3, 4]), T.zeros([3, 3, 4])), 'mul', '[2,3,4]', '[3,3,4]');
    throwsNaming(() => T.swiglu(a, T.zeros([3, 2])), 'swiglu', '[2,3]', '[3,2]');
    throwsNaming(() => T.rmsnorm(a, T.zeros([4]), 1e-6), 'rmsnorm', '[4]', '[2,3]');
    throwsNaming(() => T.linear(a, T.zeros([5, 4])), 'linear', '[2,3]', '[5,4]');
    throwsNaming(() => T.groupedMatmul(T.zeros([4, 3]), T.zeros([2, 5, 6]), Int32Array.from([0, 2, 4])), 'groupedMatmul', '[4,3]', '[2,5,6]');
    throwsNaming(() => T.attention(T.zeros([1, 2, 3, 4]), T.zeros([1, 2, 2, 8]), T.zeros([1, 2, 2, 8])), 'attention', '[1,2,3,4]', '[1,2,2,8]');
    throwsNaming(() => T.concatRows([a, T.zeros([1, 4])]), 'concatRows', '[2,3]', '[1,4]');
  });
});

test('index and grouping errors name the bad value', () => {
  T.tidy(() => {
    throwsNaming(() => T.embedding(T.zeros([4, 2]), T.tensor(Int32Array.from([1, 4]), [2], 'i32')), 'embedding', 'ids[1] = 4', '[0, 4)');
    // Without a host copy (a view), the check reads the indices back from the backend.
    throwsNaming(() => T.embedding(T.zeros([4, 2]), T.tensor(Int32Array.from([1, 4]), [2], 'i32').view([1, 2])), 'embedding', 'ids[1] = 4');
    const ids = T.tensor(Int32Array.from([0, 1]), [2], 'i32');
    ids.assign(Int32Array.from([2, 5]));
    throwsNaming(() => T.gatherRows(T.zeros([4, 2]), ids), 'gatherRows', 'idx[1] = 5');
    throwsNaming(() => T.crossEntropy(T.zeros([2, 3]), T.tensor(Int32Array.from([0, 7]), [2], 'i32')), 'crossEntropy', 'targets[1] = 7');
    throwsNaming(() => T.groupedMatmul(T.zeros([4, 3]), T.zeros([2, 5, 3]), Int32Array.from([0, 3, 2])), 'groupedMatmul', 'offsets');
    throwsNaming(() => T.topk(T.zeros([2, 3]), 4), 'topk', 'k=4');
    throwsNaming(() => T.crossEntropy(T.zeros([2, 3]), T.zeros([2])), 'crossEntropy', 'targets must be an i32');
  });
});

test('a disposed tensor cannot be used, and says which', () => {
  const t = T.zeros([2]);
  t.name = 'w_gate';
  t.dispose();
  t.dispose(); // twice is harmless
  throwsNaming(() => t.toArray(), 'disposed', 'w_gate');
});

test('backward twice over a released graph is an error, not garbage', () => {
  const w = T.parameter(T.tensor([1, 2], [2]));
  const loss = T.sumAll(T.mul(w, w));
  T.backward(loss);
  throwsNaming(() => T.backward(loss), 'backward');
  assert.deepEqual(Array.from(w.grad!.toArray()), [2, 4]);
  loss.dispose();
  w.dispose();
});

test('gradients accumulate across backward calls until dropped (micro-batches)', () => {
  const w = T.parameter(T.tensor([3], [1]));
  for (let i = 0; i < 3; i++) T.tidy(() => T.backward(T.sumAll(T.scale(w, 2))));
  assert.deepEqual(Array.from(w.grad!.toArray()), [6]);
  w.dispose();
});

test('tidy keeps what it returns and frees the rest', () => {
  const before = be.heap.stats().inUse;
  const kept = T.tidy(() => {
    const a = T.ones([8]);
    T.scale(a, 2);
    return { out: T.add(a, a) };
  });
  assert.deepEqual(Array.from(kept.out.toArray()), Array(8).fill(2));
  kept.out.dispose();
  assert.equal(be.heap.stats().inUse, before);
});

test('grouped matmul equals a per-expert loop of plain matmuls', () => {
  T.tidy(() => {
    const rng = new T.Rng(3);
    const x = T.randn([11, 6], rng), w = T.randn([4, 5, 6], rng);
    const offsets = Int32Array.from([0, 3, 3, 10, 11]);
    const y = T.groupedMatmul(x, w, offsets).toFloat32();
    const wv = w.toFloat32();
    for (let e = 0; e < 4; e++) {
      for (let r = offsets[e]!; r < offsets[e + 1]!; r++) {
        const ye = T.matmul(T.sliceRows(x, r, r + 1), T.tensor(wv.slice(e * 30, e * 30 + 30), [5, 6]), { transB: true }).toFloat32();
        for (let j = 0; j < 5; j++) assert.ok(Math.abs(ye[j]! - y[r * 5 + j]!) < 1e-5, `expert ${e} row ${r} col ${j}`);
      }
    }
  });
});

test('backward leaves the caller gradOut untouched and sums shared gradients correctly', () => {
  const w = T.parameter(T.tensor([1, 1], [2]));
  const g = T.tensor([1, 1], [2]);
  T.tidy(() => {
    const u = T.scale(w, 2), v = T.scale(w, 3);
    T.backward(T.add(T.add(u, v), u), g); // d/dw = 2 + 3 + 2
  });
  assert.deepEqual(Array.from(w.grad!.toArray()), [7, 7]);
  assert.deepEqual(Array.from(g.toArray()), [1, 1]);
  w.dispose();
  g.dispose();
});

test('keep inside nested tidy scopes keeps the graph for a later backward', () => {
  const w = T.parameter(T.tensor([2], [1]));
  let y!: T.Tensor;
  T.tidy(() => {
    T.tidy(() => {
      y = T.keep(T.square(T.scale(w, 3)));
    });
  });
  assert.ok(y.node, 'the graph survived both scopes');
  T.backward(y);
  assert.deepEqual(Array.from(w.grad!.toArray()), [36]); // d(9 w^2)/dw = 18 w
  y.dispose();
  w.dispose();
});

test('the js heap grows by any amount without breaking its typed views', () => {
  const be2 = new JsBackend();
  const blocks: number[] = [];
  for (let i = 0; i < 400; i++) blocks.push(be2.alloc(100_003 + i * 7));
  const p = be2.alloc(4 * 3);
  be2.write(p, Float32Array.of(1, 2, 3));
  assert.deepEqual(Array.from(be2.readF32(p, 3)), [1, 2, 3]);
  assert.ok(be2.heap.stats().capacity > 35e6);
});
