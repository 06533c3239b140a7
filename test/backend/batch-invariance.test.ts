/**
 * Batch invariance of the row-wise kernels a decode step runs: each row's result must be bit for
 * bit the one the same kernel gives that row alone, whatever the number of rows (so the work split
 * over threads and the vector/scalar split of a flat range change nothing). A continuous-batching
 * server relies on it: a request's tokens must not depend on which other requests share its step.
 * Rows are compared as 32-bit patterns; the row alone sits at a differently aligned address.
 *
 * The weight products promise it only when asked (linearW / groupedLinearW with rowInvariant):
 * m = 1 calls against the rows of m = 2 ... 100 calls, groups of every size including empty ones,
 * k off every vector step (67: one 64-block of FP8 plus a tail; 200), every dtype and scaling;
 * and thread counts against each other. The results also match the js reference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Backend, BinaryOp, type Kernels, UnaryOp, WeightDType, WeightTable } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { allBackends, assertCloseToScale, nativeIsaCases, randomArray, tryCreate } from '../helpers.js';
import { type Case, DTYPES, NAME, f32In, linearOn, makeCase, place } from './weight-cases.js';

type Data = Float32Array | Int32Array;

interface RowBuf {
  /** Elements per row. */
  per: number;
  /** The rows' values (all N rows); absent for pure outputs. */
  data?: Data;
  /** Compared after the call (outputs, and inputs written in place). */
  out?: boolean;
  int?: boolean;
}

interface RowKernel {
  name: string;
  rows: Record<string, RowBuf>;
  /** The same for the batch and for each row alone (weights, tables). */
  shared?: Record<string, Data | Uint8Array>;
  call: (k: Kernels, p: Record<string, number>, n: number) => void;
}

// 1100 rows of 67: over every backend's threshold for splitting rows or elements over threads; 67
// is off every vector width, so flat ranges put a row's elements on different sides of a vector tail.
const N = 1100, C = 67, HEADS = 3, DIM = 22, MAXPOS = 50;
let seed = 100;
const rand = (n: number, scale = 1) => randomArray(n, seed++, scale);
const ints = (n: number, hi: number) => Int32Array.from(rand(n), (v) => Math.min(hi - 1, Math.floor(((v + 1) / 2) * hi)));
const bytes = (n: number) => Uint8Array.from(rand(n), (v) => (Math.floor((v + 1) * 128) & 0xff) % 0x7e); // no f8 NaN codes

const KERNELS: RowKernel[] = [
  {
    name: 'rmsnorm',
    rows: { x: { per: C, data: rand(N * C) }, y: { per: C, out: true }, rstd: { per: 1, out: true } },
    shared: { w: rand(C) },
    call: (k, p, n) => k.rmsnorm(p.x!, p.w!, p.y!, p.rstd!, n, C, 1e-6),
  },
  { name: 'softmax', rows: { x: { per: C, data: rand(N * C, 8) }, y: { per: C, out: true } }, call: (k, p, n) => k.softmax(p.x!, p.y!, n, C) },
  { name: 'stdRows', rows: { x: { per: C, data: rand(N * C) }, y: { per: 1, out: true } }, call: (k, p, n) => k.stdRows(p.x!, p.y!, n, C, true) },
  {
    name: 'topk',
    rows: { x: { per: C, data: Float32Array.from(ints(N * C, 9)) }, v: { per: 4, out: true }, i: { per: 4, out: true, int: true } },
    call: (k, p, n) => k.topk(p.x!, p.v!, p.i!, n, C, 4),
  },
  {
    name: 'gatherRows',
    rows: { ids: { per: 1, data: ints(N, 40) }, out: { per: C, out: true } },
    shared: { table: rand(40 * C) },
    call: (k, p, n) => k.gatherRows(p.table!, p.ids!, p.out!, n, C),
  },
  ...([WeightDType.BF16, WeightDType.F16, WeightDType.F8E4M3] as const).map((dtype): RowKernel => ({
    name: `gatherRowsW dtype=${dtype}`,
    rows: { ids: { per: 1, data: ints(N, 40) }, out: { per: C, out: true } },
    shared: { w: bytes(40 * C * (dtype === WeightDType.F8E4M3 ? 1 : 2)), rs: rand(40).map((v) => 1 + v / 2) },
    call: (k, p, n) => k.gatherRowsW({ ptr: p.w!, dtype, scale: 0.7, rowScale: p.rs! }, 40, p.ids!, p.out!, n, C),
  })),
  {
    // distinct ids (row i into table row i), so each table row gets exactly one addition
    name: 'scatterAddRows',
    rows: { src: { per: C, data: rand(N * C) }, table: { per: C, data: rand(N * C), out: true } },
    call: (k, p, n) => k.scatterAddRows(p.src!, p.rowIds!, p.table!, n, C),
  },
  {
    name: 'rope',
    rows: { x: { per: HEADS * DIM, data: rand(N * HEADS * DIM) }, pos: { per: 1, data: ints(N, MAXPOS) }, y: { per: HEADS * DIM, out: true } },
    shared: { cos: rand(MAXPOS * DIM / 2), sin: rand(MAXPOS * DIM / 2) },
    call: (k, p, n) => k.rope(p.x!, p.y!, p.cos!, p.sin!, p.pos!, n, HEADS, DIM, false),
  },
  {
    name: 'swiglu',
    rows: { g: { per: C, data: rand(N * C, 6) }, u: { per: C, data: rand(N * C) }, y: { per: C, out: true } },
    call: (k, p, n) => k.swiglu(p.g!, p.u!, p.y!, n * C),
  },
  ...([[UnaryOp.Exp, 'exp'], [UnaryOp.Silu, 'silu'], [UnaryOp.Sigmoid, 'sigmoid'], [UnaryOp.Tanh, 'tanh']] as const).map(([op, name]): RowKernel => ({
    name: `unary ${name}`,
    // a few lanes above 88, where the vector exp hands over to the scalar one
    rows: { x: { per: C, data: rand(N * C, 12).map((v, i) => (i % 97 === 5 ? 88.5 : v)) }, y: { per: C, out: true } },
    call: (k, p, n) => k.unary(op, p.x!, p.y!, n * C),
  })),
  ...([[BinaryOp.Add, 'add'], [BinaryOp.Mul, 'mul']] as const).flatMap(([op, name]): RowKernel[] => [
    {
      name: `${name} [N, C] by a row [C]`,
      rows: { a: { per: C, data: rand(N * C) }, out: { per: C, out: true } },
      shared: { b: rand(C) },
      call: (k, p, n) => k.binary(op, p.a!, p.b!, p.out!, [1, 1, n, C], [0, 0, C, 1], [0, 0, 0, 1]),
    },
    {
      name: `${name} [N, C] by a column [N, 1]`,
      rows: { a: { per: C, data: rand(N * C) }, b: { per: 1, data: rand(N) }, out: { per: C, out: true } },
      call: (k, p, n) => k.binary(op, p.a!, p.b!, p.out!, [1, 1, n, C], [0, 0, C, 1], [0, 0, 1, 0]),
    },
  ]),
];

/** Run `kc` on rows [r0, r0 + n) placed `shift` floats into fresh blocks; every row's compared outputs as bit patterns. */
function runRows(be: Backend, kc: RowKernel, r0: number, n: number, shift: number): Map<string, Uint32Array> {
  const p: Record<string, number> = {};
  const owned: number[] = [];
  const put = (data: Data | Uint8Array, len: number, at = 0) => {
    const block = be.alloc(4 * (len + shift) + 64);
    owned.push(block);
    if (data instanceof Uint8Array) be.writeBytes(block + 4 * at, data);
    else be.write(block + 4 * at, data);
    return block + 4 * at;
  };
  for (const [name, d] of Object.entries(kc.shared ?? {})) p[name] = put(d, d.length);
  for (const [name, b] of Object.entries(kc.rows)) {
    const len = b.per * n;
    const init = b.data ? b.data.subarray(r0 * b.per, (r0 + n) * b.per) : b.int ? new Int32Array(len).fill(-7) : new Float32Array(len).fill(NaN);
    p[name] = put(init, len, shift);
  }
  p.rowIds = put(Int32Array.from({ length: n }, (_, i) => i), n);
  kc.call(be.kernels, p, n);
  const out = new Map<string, Uint32Array>();
  for (const [name, b] of Object.entries(kc.rows)) if (b.out) out.set(name, new Uint32Array(be.readI32(p[name]!, b.per * n).buffer));
  for (const block of owned) be.free(block);
  return out;
}

/** Rows at thread-split edges (the middle), both ends, and a few others. */
const SAMPLE = [0, 1, 2, 3, 5, N / 2 - 2, N / 2 - 1, N / 2, N / 2 + 1, 733, N - 4, N - 3, N - 2, N - 1];

for (const c of [...allBackends(), ...nativeIsaCases()])
  test(`row-wise kernels on ${c.label}: each row of ${N} equals that row alone, bit for bit`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    try {
      for (const kc of KERNELS) {
        const all = runRows(be, kc, 0, N, 0);
        for (const r of SAMPLE) {
          const alone = runRows(be, kc, r, 1, 1 + (r % 3));
          for (const [name, bits] of alone) {
            const per = kc.rows[name]!.per;
            assert.deepEqual(bits, all.get(name)!.subarray(r * per, (r + 1) * per), `${kc.name}: row ${r} of ${N}, ${name}`);
          }
        }
      }
    } finally {
      await be.dispose();
    }
  });

const ROWS = [2, 3, 5, 16, 17, 37, 100];
const GROUPS = [0, 3, 1, 0, 17, 5, 40, 2, 0]; // rows per group (experts)
const WN = 37; // weight rows: off every quad and pair
const ref = new JsBackend();

function groupedOn(be: Backend, cases: Case[], x: Float32Array, sizes: number[], k: number): Float32Array {
  const offsets = Int32Array.from([0, ...sizes.map((_, g) => sizes.slice(0, g + 1).reduce((a, b) => a + b, 0))]);
  const N = offsets[sizes.length]!;
  const ws = cases.map((c) => place(be, c.bytes, c.dtype, c.scale, c.rowScale, 1));
  const xp = f32In(be, x), yp = f32In(be, randomArray(N * WN, 9));
  be.kernels.groupedLinearW(xp, new WeightTable(ws.map((w) => w.ref)), yp, offsets, WN, k, true);
  const y = be.readF32(yp, N * WN);
  be.free(xp), be.free(yp), ws.forEach((w) => w.free());
  return y;
}

const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.slice().buffer);
/** m = 1 results of the first backend of each family (wasm/1, native avx2/1 ...), for its other thread counts. */
const firstOfFamily = new Map<string, Map<string, Uint32Array>>();

for (const c of [...allBackends(), ...nativeIsaCases()])
  test(`linearW and groupedLinearW rowInvariant on ${c.label}: rows of m = 2 ... 100 equal m = 1 calls, bit for bit`, async (t) => {
    const be = await tryCreate(c);
    if (!be) return t.skip(`${c.label} not available`);
    const family = c.label.split('/')[0]!;
    const mine = new Map<string, Uint32Array>();
    try {
      for (const dtype of DTYPES)
        for (const k of [67, 200])
          for (const scaling of ['tensor', 'both'] as const) {
            const what = `${NAME[dtype]} k=${k} scale=${scaling}`;
            const wc = makeCase(dtype, WN, k, scaling, 1000 * dtype + k);
            const x = randomArray(100 * k, k + dtype);
            const single: Uint32Array[] = Array.from({ length: 100 }, (_, i): Uint32Array => bitsOf(linearOn(be, wc, x.subarray(i * k, (i + 1) * k), 1, k, WN, 0, true)));
            for (const m of ROWS) {
              const y = linearOn(be, wc, x.subarray(0, m * k), m, k, WN, 3, true);
              for (let i = 0; i < m; i++) assert.deepEqual(bitsOf(y.subarray(i * WN, (i + 1) * WN)), single[i], `linearW ${what}: row ${i} of m=${m}`);
              if (m === 100) {
                const want = linearOn(ref, wc, x, m, k, WN);
                for (let i = 0; i < m; i += 9) assertCloseToScale(y.subarray(i * WN, (i + 1) * WN), want.subarray(i * WN, (i + 1) * WN), `linearW ${what} row ${i} vs js`, 2e-5);
              }
            }
            // groups: every expert its own weight; each row against the m = 1 product with its group's weight
            const cases = GROUPS.map((_, g) => (g % 3 === 0 ? wc : makeCase(dtype, WN, k, scaling, 1000 * dtype + k + g)));
            const y = groupedOn(be, cases, x.subarray(0, 68 * k), GROUPS, k);
            let r = 0;
            GROUPS.forEach((rows, g) => {
              for (let i = 0; i < rows; i++, r++) {
                const alone = bitsOf(linearOn(be, cases[g]!, x.subarray(r * k, (r + 1) * k), 1, k, WN, 0, true));
                assert.deepEqual(bitsOf(y.subarray(r * WN, (r + 1) * WN)), alone, `groupedLinearW ${what}: row ${r} (group ${g} of ${rows} rows)`);
              }
            });
            mine.set(what, Uint32Array.from(single.flatMap((b: Uint32Array) => Array.from(b))));
          }
      const first = firstOfFamily.get(family);
      if (!first) firstOfFamily.set(family, mine);
      else for (const [what, bits] of mine) assert.deepEqual(bits, first.get(what), `${what}: ${c.label} against the first thread count of ${family}`);
    } finally {
      await be.dispose();
    }
  });
