/**
 * Batch invariance of the row-wise kernels a decode step runs: each row's result must be bit for
 * bit the one the same kernel gives that row alone, whatever the number of rows (so the work split
 * over threads and the vector/scalar split of a flat range change nothing). A continuous-batching
 * server relies on it: a request's tokens must not depend on which other requests share its step.
 * Rows are compared as 32-bit patterns; the row alone sits at a differently aligned address.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Backend, BinaryOp, type Kernels, UnaryOp, WeightDType } from '../../src/backend/backend.js';
import { allBackends, nativeIsaCases, randomArray, tryCreate } from '../helpers.js';

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
