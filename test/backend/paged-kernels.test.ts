/**
 * The kernels of a paged KV cache on every backend: scatterRows (new keys and values into their
 * slots) against the js reference, bit for bit (it is a copy); pagedAttention against the js
 * reference and against the dense attention kernel on the same keys gathered contiguously, for
 * decode rows (one per sequence, lengths on and off block edges) and a prefill chunk (40 rows of one
 * sequence), GQA, D = 64, 40 and 17, blocks of 16, 5 and 1; and batch invariance, bit for bit: each
 * row alone, in another batch order with the sequences numbered otherwise, in other block layouts,
 * and with 1 and 2 threads, gives the same output.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Backend } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { allBackends, assertClose, nativeIsaCases, randomArray, tryCreate } from '../helpers.js';

const cases = allBackends();

function f32In(be: Backend, data: Float32Array | Int32Array): number {
  const p = be.alloc(Math.max(4, data.byteLength));
  be.write(p, data);
  return p;
}

/** A permutation of [0, n) by a seeded shuffle. */
function permutation(n: number, seed: number): Int32Array {
  const r = randomArray(n, seed);
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(((r[i]! + 1) / 2) * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

for (const c of cases)
  test(`scatterRows on ${c.label}: rows land in their slots, every other slot keeps its bytes`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    try {
      // 300 x 257 floats: above every backend's threshold for splitting over threads
      for (const [slots, n, cols] of [[7, 1, 1], [40, 13, 5], [600, 300, 257]] as const) {
        const ids = permutation(slots, slots).subarray(0, n);
        const src = randomArray(n * cols, 3), before = randomArray(slots * cols, 4);
        const s = f32In(be, src), d = f32In(be, before), ip = f32In(be, ids);
        be.kernels.scatterRows(s, ip, d, n, cols);
        const got: Uint32Array = new Uint32Array(be.readF32(d, slots * cols).buffer);
        const want = new Uint32Array(before.slice().buffer);
        ids.forEach((slot, i) => want.set(new Uint32Array(src.buffer, 4 * i * cols, cols), slot * cols));
        assert.deepEqual(got, want, `slots=${slots} n=${n} cols=${cols}`);
        be.free(s), be.free(d), be.free(ip);
      }
    } finally {
      await be.dispose();
    }
  });

// ------------------------------------------------------------------ pagedAttention

interface Shape {
  H: number;
  Hkv: number;
  D: number;
  block: number;
}

/** A sequence's tokens: keys/values and queries of position p are functions of (seed, p), wherever they are placed. */
interface Sequence {
  seed: number;
  len: number;
}

/** A query row: position `pos` of sequence `seq` (sees keys 0..pos). */
interface Row {
  seq: number;
  pos: number;
}

const tokenData = (s: Sequence, p: number, what: number, n: number) => randomArray(n, s.seed * 100003 + p * 7 + what);

/**
 * The sequences laid out in a paged cache of `blocks` blocks, block ids dealt from a shuffle
 * (layoutSeed): caches [blocks * block, Hkv, D] with unused slots NaN (a kernel that reads one shows
 * it), tables [sequences, maxBlocks] with unused entries -1.
 */
function pagedCache(sh: Shape, seqs: Sequence[], blocks: number, layoutSeed: number) {
  const maxBlocks = Math.max(...seqs.map((s) => Math.ceil(s.len / sh.block)));
  const row = sh.Hkv * sh.D, slots = blocks * sh.block;
  const k = new Float32Array(slots * row).fill(NaN), v = new Float32Array(slots * row).fill(NaN);
  const tables = new Int32Array(seqs.length * maxBlocks).fill(-1);
  const free = permutation(blocks, layoutSeed);
  let next = 0;
  seqs.forEach((s, si) => {
    for (let b = 0; b < Math.ceil(s.len / sh.block); b++) tables[si * maxBlocks + b] = free[next++]!;
    for (let p = 0; p < s.len; p++) {
      const slot = tables[si * maxBlocks + Math.floor(p / sh.block)]! * sh.block + (p % sh.block);
      k.set(tokenData(s, p, 1, row), slot * row);
      v.set(tokenData(s, p, 2, row), slot * row);
    }
  });
  return { k, v, tables, maxBlocks };
}

/** pagedAttention of `rows` (indices into seqs by Row.seq) on `be`; the outputs [rows, H, D]. */
function paged(be: Backend, sh: Shape, seqs: Sequence[], rows: Row[], blocks: number, layoutSeed: number): Float32Array {
  const { k, v, tables, maxBlocks } = pagedCache(sh, seqs, blocks, layoutSeed);
  const q = new Float32Array(rows.length * sh.H * sh.D);
  rows.forEach((r, i) => q.set(tokenData(seqs[r.seq]!, r.pos, 3, sh.H * sh.D), i * sh.H * sh.D));
  const qp = f32In(be, q), kp = f32In(be, k), vp = f32In(be, v), op = f32In(be, new Float32Array(q.length).fill(NaN));
  be.kernels.pagedAttention(qp, kp, vp, op, rows.length, sh.H, sh.Hkv, sh.D, 1 / Math.sqrt(sh.D), sh.block,
    Int32Array.from(rows, (r) => r.seq), Int32Array.from(rows, (r) => r.pos + 1), tables, maxBlocks);
  const o = be.readF32(op, q.length);
  be.free(qp), be.free(kp), be.free(vp), be.free(op);
  return o;
}

/** The same rows through the dense attention kernel: each sequence's keys gathered contiguously, its rows at consecutive positions (qOffset). */
function dense(be: Backend, sh: Shape, s: Sequence, first: number, count: number): Float32Array {
  const row = sh.Hkv * sh.D, Tk = first + count;
  const k = new Float32Array(Tk * row), v = new Float32Array(Tk * row), q = new Float32Array(count * sh.H * sh.D);
  for (let p = 0; p < Tk; p++) k.set(tokenData(s, p, 1, row), p * row), v.set(tokenData(s, p, 2, row), p * row);
  for (let i = 0; i < count; i++) q.set(tokenData(s, first + i, 3, sh.H * sh.D), i * sh.H * sh.D);
  const qp = f32In(be, q), kp = f32In(be, k), vp = f32In(be, v), op = f32In(be, new Float32Array(q.length)), lp = be.alloc(4 * sh.H * count);
  be.kernels.attention(qp, kp, vp, op, lp, 1, count, Tk, sh.H, sh.Hkv, sh.D, Tk * row, first, 1 / Math.sqrt(sh.D));
  const o = be.readF32(op, q.length);
  be.free(qp), be.free(kp), be.free(vp), be.free(op), be.free(lp);
  return o;
}

const SHAPES: Shape[] = [
  { H: 8, Hkv: 2, D: 64, block: 16 },
  { H: 8, Hkv: 2, D: 40, block: 1 },
  { H: 4, Hkv: 4, D: 40, block: 16 },
  { H: 3, Hkv: 1, D: 17, block: 5 },
];
// lengths off and on block edges: 1, 15, 16, 17, 33, and a prompt of 70 whose last 40 positions form a prefill chunk
const SEQS: Sequence[] = [1, 15, 16, 17, 33, 70].map((len, i) => ({ seed: 10 + i, len }));
const DECODE: Row[] = SEQS.slice(0, 5).map((s, i) => ({ seq: i, pos: s.len - 1 }));
const PREFILL: Row[] = Array.from({ length: 40 }, (_, i) => ({ seq: 5, pos: 30 + i }));
/** Decode and prefill rows in order (the chunk's rows consecutive: kernels may take them together), and mixed. */
const ORDERED: Row[] = [...DECODE, ...PREFILL];
const SHUFFLE = permutation(ORDERED.length, 77);
const MIXED: Row[] = ORDERED.map((_, i) => ORDERED[SHUFFLE[i]!]!);

const refBackend = new JsBackend();
const rowBits = (o: Float32Array, i: number, sh: Shape): Uint32Array => new Uint32Array(o.slice(i * sh.H * sh.D, (i + 1) * sh.H * sh.D).buffer);
/** Outputs of the first backend of each family (wasm/1, native avx2/1, ...), for the other thread counts. */
const familyFirst = new Map<string, Float32Array[]>();

for (const c of [...cases, ...nativeIsaCases()])
  test(`pagedAttention on ${c.label}: matches js and dense attention; each row's bits are the same in any batch and layout`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    const family = c.label.split('/')[0]!;
    const mine: Float32Array[] = [];
    try {
      for (const sh of SHAPES) {
        const what = `H=${sh.H}/${sh.Hkv} D=${sh.D} block=${sh.block}`;
        const blocks = SEQS.reduce((n, s) => n + Math.ceil(s.len / sh.block), 0) + 7;
        const mixed = paged(be, sh, SEQS, MIXED, blocks, 1);
        mine.push(mixed);
        // the js reference, float64 throughout
        assertClose(mixed, paged(refBackend, sh, SEQS, MIXED, blocks, 1), `${what}: against js`, 2e-5, 2e-6);
        // dense attention on contiguous keys: decode rows one by one, the prefill chunk at once (qOffset 30)
        const pre = dense(be, sh, SEQS[5]!, 30, 40);
        MIXED.forEach((r, i) => {
          const want = r.seq === 5 ? pre.subarray((r.pos - 30) * sh.H * sh.D, (r.pos - 29) * sh.H * sh.D) : dense(be, sh, SEQS[r.seq]!, r.pos, 1);
          assertClose(mixed.subarray(i * sh.H * sh.D, (i + 1) * sh.H * sh.D), want, `${what}: row ${i} against dense attention`, 2e-5, 2e-6);
        });
        // batch invariance: each row alone, in another order with the sequences listed otherwise, in other block layouts
        const reversed = [...SEQS].reverse();
        const reorder = (r: Row): Row => ({ seq: SEQS.length - 1 - r.seq, pos: r.pos });
        const other = paged(be, sh, reversed, [...MIXED].reverse().map(reorder), blocks + 40, 2);
        const ordered = paged(be, sh, SEQS, ORDERED, blocks, 4);
        MIXED.forEach((r, i) => {
          const want = rowBits(mixed, i, sh);
          assert.deepEqual(rowBits(paged(be, sh, SEQS, [r], blocks, 3 + i), 0, sh), want, `${what}: row ${i} alone`);
          assert.deepEqual(rowBits(other, MIXED.length - 1 - i, sh), want, `${what}: row ${i} in another batch and layout`);
          assert.deepEqual(rowBits(ordered, SHUFFLE[i]!, sh), want, `${what}: row ${i} with the chunk's rows in order`);
        });
      }
      const first = familyFirst.get(family);
      if (!first) familyFirst.set(family, mine);
      else mine.forEach((o, s) => assert.deepEqual(new Uint32Array(o.buffer), new Uint32Array(first[s]!.buffer), `shape ${s}: ${c.label} against the first thread count of ${family}`));
    } finally {
      await be.dispose();
    }
  });

const nativeCase = cases.find((c) => c.label.startsWith('native'));
test('native pagedAttention checks the host arrays, so a bad table cannot read outside the heap', async (t) => {
  const be = nativeCase && (await tryCreate(nativeCase));
  if (!be) return t.skip('native backend not available');
  try {
    const q = be.alloc(4 * 2 * 4), kv = be.alloc(4 * 8 * 4), o = be.alloc(4 * 2 * 4);
    const call = (seq: number[], len: number[], tables: number[], maxBlocks = 2, kPtr = kv) =>
      be.kernels.pagedAttention(q, kPtr, kv, o, seq.length, 1, 1, 4, 0.5, 4, Int32Array.from(seq), Int32Array.from(len), Int32Array.from(tables), maxBlocks);
    call([0, 1], [3, 8], [0, -1, 1, 0]); // well formed: sequence 1 uses blocks 1 and 0
    assert.throws(() => call([2], [3], [0, -1, 1, 0]), /rowSeq\[0\] = 2 has no block table \(2 sequences\)/);
    assert.throws(() => call([0], [9], [0, 1, 1, 0]), /rowLen\[0\] = 9 is outside \[1, 8\]/);
    assert.throws(() => call([0], [0], [0, 1]), /rowLen\[0\] = 0/);
    assert.throws(() => call([0], [5], [0, -1]), /sequence 0 block 1 is -1/);
    assert.throws(() => call([0], [1], [2 ** 28, 0]), /outside the heap/);
    assert.throws(() => call([0], [1], [0, 0, 0]), /Int32Arrays/); // 3 entries are not sequences x 2
  } finally {
    await be.dispose();
  }
});
