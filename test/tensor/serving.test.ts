/**
 * The tensor ops a continuous-batching server needs: scatterRows into a kept cache (validation,
 * in-place write), pagedAttention over a cache filled by scatterRows against dense attention over
 * the same keys (and its validation), and T.rowInvariant: inside it linear and groupedMatmul give each row of a batch
 * the bits that row gets alone, for weights in a storage dtype and for f32 tensors (the router),
 * on every backend; outside it, and where a gradient is needed, the usual GEMM path.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { allBackends, assertCloseToScale, randomArray, tryCreate } from '../helpers.js';
import { weightBytes } from '../backend/weight-cases.js';

const js = new JsBackend();

function throwsNaming(fn: () => unknown, ...parts: string[]) {
  assert.throws(fn, (e: Error) => {
    for (const p of parts) assert.ok(e.message.includes(p), `'${e.message}' should mention '${p}'`);
    return true;
  });
}

test('scatterRows writes rows of src into a kept tensor at the ids and refuses bad ids and shapes', () => {
  T.setBackend(js);
  const cache = T.keep(T.tensor(randomArray(6 * 2 * 3, 1), [6, 2, 3]));
  const before = cache.toFloat32();
  T.tidy(() => {
    const src = T.tensor(randomArray(2 * 2 * 3, 2), [2, 2, 3]);
    T.scatterRows(cache, src, T.tensor(Int32Array.of(4, 1), [2], 'i32'));
    const want = before.slice();
    want.set(src.toFloat32().subarray(0, 6), 4 * 6);
    want.set(src.toFloat32().subarray(6), 1 * 6);
    assert.deepEqual(cache.toFloat32(), want);
    throwsNaming(() => T.scatterRows(cache, src, T.tensor(Int32Array.of(4, 6), [2], 'i32')), 'scatterRows', 'ids[1] = 6', '[0, 6)');
    throwsNaming(() => T.scatterRows(cache, src, T.tensor(Int32Array.of(3, 3), [2], 'i32')), 'scatterRows', 'ids[1] = 3 repeats');
    throwsNaming(() => T.scatterRows(cache, src, T.tensor(Int32Array.of(3), [1], 'i32')), 'scatterRows', '1 ids', '[2,2,3]');
    throwsNaming(() => T.scatterRows(cache, T.zeros([2, 3, 2]), T.tensor(Int32Array.of(0, 1), [2], 'i32')), 'scatterRows', '[2,3,2]', '[6,2,3]');
    throwsNaming(() => T.scatterRows(cache, src, T.zeros([2])), 'scatterRows', 'ids must be an i32');
  });
  cache.dispose();
});

const bits = (t: T.Tensor): Uint32Array => new Uint32Array(t.toFloat32().buffer);
const K = 67, M = 45, ROWS = 37;
const SIZES = [0, 5, 1, 0, 31]; // rows per expert

/** linear and groupedMatmul of ROWS rows, and of each row alone (all inside T.rowInvariant), for every kind of weight. */
function products(be: Backend, x: T.Tensor) {
  const bf16 = T.Weight.fromBytes(weightBytes(T.WeightDType.BF16, M * K, 5), T.WeightDType.BF16, [M, K], {}, be);
  const f8 = T.Weight.fromBytes(weightBytes(T.WeightDType.F8E4M3, M * K, 6), T.WeightDType.F8E4M3, [M, K], { scale: 0.02, rowScale: randomArray(M, 7).map((v) => 1 + v / 2) }, be);
  const f32 = T.tensor(randomArray(M * K, 8), [M, K], 'f32', be);
  const experts = new T.ExpertWeights(SIZES.map((_, g) => T.Weight.fromBytes(weightBytes(T.WeightDType.F16, M * K, 10 + g), T.WeightDType.F16, [M, K], {}, be)));
  const stacked = T.tensor(randomArray(SIZES.length * M * K, 9), [SIZES.length, M, K], 'f32', be);
  const offsets = Int32Array.from([0, ...SIZES.map((_, g) => SIZES.slice(0, g + 1).reduce((a, b) => a + b, 0))]);
  const groupOf = (r: number) => SIZES.findIndex((_, g) => r < offsets[g + 1]!);
  const alone = (r: number) => Int32Array.from(offsets, (_, g) => (g > groupOf(r) ? 1 : 0)); // row r as the one row of its group
  const run = (fn: (xs: T.Tensor, offs: Int32Array) => T.Tensor) => {
    const batch = fn(x, offsets);
    const rows = Array.from({ length: ROWS }, (_, r) => bits(fn(x.rowsView(r, r + 1), alone(r))));
    return { batch, rows };
  };
  const out = {
    'linear bf16': run((xs) => T.linear(xs, bf16)),
    'linear f8 row scales': run((xs) => T.linear(xs, f8)),
    'linear f32 tensor': run((xs) => T.linear(xs, f32)),
    'groupedMatmul experts': run((xs, o) => T.groupedMatmul(xs, experts, o)),
    'groupedMatmul stacked f32': run((xs, o) => T.groupedMatmul(xs, stacked, o)),
  };
  const plain = {
    'linear bf16': T.linear(x, bf16), 'linear f8 row scales': T.linear(x, f8), 'linear f32 tensor': T.linear(x, f32),
    'groupedMatmul experts': T.groupedMatmul(x, experts, offsets), 'groupedMatmul stacked f32': T.groupedMatmul(x, stacked, offsets),
  };
  bf16.dispose(), f8.dispose(), experts.dispose();
  return { out, plain };
}

for (const c of allBackends())
  test(`T.rowInvariant on ${c.label}: each row of linear and groupedMatmul equals that row alone, bit for bit`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    T.setBackend(be);
    try {
      T.tidy(() => T.noGrad(() => {
        const x = T.tensor(randomArray(ROWS * K, 3), [ROWS, K], 'f32', be);
        const { out } = T.rowInvariant(() => products(be, x));
        const { plain } = products(be, x); // outside the scope: the usual kernels, the same values to rounding
        for (const [what, { batch, rows }] of Object.entries(out)) {
          rows.forEach((r, i) => assert.deepEqual(bits(batch.rowsView(i, i + 1)), r, `${what}: row ${i} of ${ROWS}`));
          assertCloseToScale(batch.toFloat32(), plain[what as keyof typeof plain].toFloat32(), `${what} against the default path`, 1e-5);
        }
        assert.equal(T.isRowInvariant(), false);
      }));
    } finally {
      await be.dispose();
    }
  });

test('T.rowInvariant keeps autograd where a gradient is needed (f32 weights through the GEMM)', () => {
  T.setBackend(js);
  T.tidy(() => {
    const w = T.tensor(randomArray(6 * 4, 1), [6, 4]);
    w.requiresGrad = true;
    const x = T.tensor(randomArray(3 * 4, 2), [3, 4]);
    const y = T.rowInvariant(() => T.linear(x, w));
    assert.ok(y.node, 'the product is recorded');
    T.backward(T.sumAll(y));
    // d sum(x w^T) / dw[j, p] = sum_i x[i, p]
    const xs = x.toFloat32(), colSums = [0, 1, 2, 3].map((p) => xs[p]! + xs[4 + p]! + xs[8 + p]!);
    assertCloseToScale(w.grad!.toFloat32(), Float32Array.from({ length: 24 }, (_, i) => colSums[i % 4]!), 'dw', 1e-6);
  });
});

/** Slot of position p in a sequence's block list. */
const slotOf = (blocks: number[], bs: number, p: number) => blocks[Math.floor(p / bs)]! * bs + (p % bs);

for (const c of allBackends())
  test(`T.pagedAttention on ${c.label}: a cache filled by scatterRows gives what T.attention gives on the same keys`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    T.setBackend(be);
    try {
      T.tidy(() => T.noGrad(() => {
        const [H, Hkv, D, bs] = [4, 2, 24, 4];
        const seqs = [{ len: 11, blocks: [5, 2, 7] }, { len: 5, blocks: [0, 3] }];
        const kCache = T.zeros([8 * bs, Hkv, D]), vCache = T.zeros([8 * bs, Hkv, D]);
        const keys = seqs.map((s, i) => {
          const k = T.tensor(randomArray(s.len * Hkv * D, 10 + i), [s.len, Hkv, D]), v = T.tensor(randomArray(s.len * Hkv * D, 20 + i), [s.len, Hkv, D]);
          const slots = T.tensor(Int32Array.from({ length: s.len }, (_, p) => slotOf(s.blocks, bs, p)), [s.len], 'i32');
          T.scatterRows(kCache, k, slots);
          T.scatterRows(vCache, v, slots);
          return { k, v };
        });
        // a prefill chunk of sequence 0 (positions 6..10) and a decode row of sequence 1 (position 4)
        const qA = T.tensor(randomArray(5 * H * D, 30), [5, H, D]), qB = T.tensor(randomArray(H * D, 31), [1, H, D]);
        const o = T.pagedAttention(T.concatRows([qA, qB]), kCache, vCache, {
          blockSize: bs, maxBlocks: 3, blockTables: Int32Array.of(5, 2, 7, 0, 3, -1),
          rowSeq: Int32Array.of(0, 0, 0, 0, 0, 1), rowLen: Int32Array.of(7, 8, 9, 10, 11, 5),
        });
        const dense = (q: T.Tensor, i: number) =>
          T.attention(q.view([1, q.shape[0]!, H, D]), keys[i]!.k.view([1, seqs[i]!.len, Hkv, D]), keys[i]!.v.view([1, seqs[i]!.len, Hkv, D])).toFloat32();
        const want = new Float32Array([...dense(qA, 0), ...dense(qB, 1)]);
        assertCloseToScale(o.toFloat32(), want, 'paged against dense', 1e-5);
      }));
    } finally {
      await be.dispose();
    }
  });

test('T.pagedAttention refuses bad shapes, tables, lengths and gradients, naming the field', () => {
  T.setBackend(js);
  T.tidy(() => {
    const q = T.zeros([2, 4, 8]), kc = T.zeros([12, 2, 8]), vc = T.zeros([12, 2, 8]);
    const meta = { blockSize: 4, maxBlocks: 2, blockTables: Int32Array.of(0, 1, 2, -1), rowSeq: Int32Array.of(0, 1), rowLen: Int32Array.of(8, 3) };
    assert.equal(T.pagedAttention(q, kc, vc, meta).shape.join(), '2,4,8');
    throwsNaming(() => T.pagedAttention(q, T.zeros([12, 3, 8]), T.zeros([12, 3, 8]), meta), 'pagedAttention', '[2,4,8]', '[12,3,8]');
    throwsNaming(() => T.pagedAttention(q, kc, T.zeros([12, 2, 4]), meta), 'vCache [12,2,4]');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, rowSeq: Int32Array.of(0) }), 'rowSeq (1)', 'one entry per query row');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, rowSeq: Int32Array.of(0, 2) }), 'rowSeq[1] = 2 has no block table (2 sequences)');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, rowLen: Int32Array.of(9, 3) }), 'rowLen[0] = 9 is outside [1, 8]');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, rowLen: Int32Array.of(8, 0) }), 'rowLen[1] = 0');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, rowLen: Int32Array.of(8, 5) }), 'sequence 1 block 1 is -1');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, blockTables: Int32Array.of(0, 3, 2, -1) }), 'sequence 0 block 1 is 3', 'outside the 3 blocks');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, blockTables: Int32Array.of(0, 1, 2) }), 'blockTables has 3 entries');
    throwsNaming(() => T.pagedAttention(q, kc, vc, { ...meta, blockSize: 0 }), 'blockSize 0');
    const qg = T.zeros([2, 4, 8]);
    qg.requiresGrad = true;
    throwsNaming(() => T.pagedAttention(qg, kc, vc, meta), 'pagedAttention: inference only');
    T.noGrad(() => T.pagedAttention(qg, kc, vc, meta)); // fine without grad mode
  });
});
