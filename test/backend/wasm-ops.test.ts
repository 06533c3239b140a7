/**
 * The wasm non-GEMM kernels (1 and 2 threads) against the js reference kernels, kernel by kernel:
 * odd sizes, single rows, sizes off every vector and tile width, sizes large enough for the
 * multi-thread path; attention with Tq != Tk (KV-cache offsets), GQA, T = 1 and T = 300; top-k ties.
 *
 * A third configuration runs every size on both threads, so the work splits are tested at odd sizes.
 * Each case writes the same inputs into a js backend and the wasm backend, runs the kernel on both
 * and compares every buffer afterwards (inputs too, which catches stray writes). Outputs start as
 * zeros on js and NaN on wasm, so an element the wasm kernel fails to write shows up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Backend, BinaryOp, type Kernels, UnaryOp } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { type WasmBackend, createWasmBackend } from '../../src/backend/wasm/index.js';
import { makeOpKernels } from '../../src/backend/wasm/op-kernels.js';
import { assertClose, randomArray } from '../helpers.js';

interface Buf {
  /** Initial contents (same on both backends); omitted for pure outputs. */
  data?: Float32Array | Int32Array;
  /** Length of a pure output. */
  len?: number;
  int?: boolean;
}

interface Tol {
  rtol?: number;
  atol?: number;
}

let seed = 1;
const rand = (n: number, scale = 1) => randomArray(n, seed++, scale);
const randIn = (n: number, lo: number, hi: number) => rand(n).map((v) => lo + ((v + 1) / 2) * (hi - lo));
const ints = (n: number, hi: number) => Int32Array.from(rand(n), (v) => Math.min(hi - 1, Math.floor(((v + 1) / 2) * hi)));

type Run = (k: Kernels, p: Record<string, number>) => number | void;

function runOn(be: Backend, kernels: Kernels, bufs: Record<string, Buf>, run: Run, poison: boolean) {
  const p: Record<string, number> = {};
  for (const [name, b] of Object.entries(bufs)) {
    const len = b.data?.length ?? b.len!;
    p[name] = be.alloc(Math.max(1, len) * 4);
    if (b.data) be.write(p[name]!, b.data);
    else if (b.int) be.write(p[name]!, new Int32Array(len).fill(poison ? 0x7fc00000 : 0));
    else be.write(p[name]!, new Float32Array(len).fill(poison ? NaN : 0));
  }
  const ret = run(kernels, p);
  const out: Record<string, Float32Array | Int32Array> = {};
  for (const [name, b] of Object.entries(bufs)) {
    const len = b.data?.length ?? b.len!;
    out[name] = b.int || b.data instanceof Int32Array ? be.readI32(p[name]!, len) : be.readF32(p[name]!, len);
    be.free(p[name]!);
  }
  return { out, ret };
}

function compare(ref: Backend, be: Backend, kernels: Kernels, what: string, bufs: Record<string, Buf>, run: Run, tol: Tol = {}): void {
  const want = runOn(ref, ref.kernels, bufs, run, false);
  const got = runOn(be, kernels, bufs, run, true);
  for (const name of Object.keys(bufs)) {
    const g = got.out[name]!, w = want.out[name]!;
    if (g instanceof Int32Array) assert.deepEqual(Array.from(g), Array.from(w), `${what}: ${name}`);
    else assertClose(g, w, `${what}: ${name}`, tol.rtol ?? 1e-4, tol.atol ?? 1e-5);
  }
  if (typeof want.ret === 'number') assertClose([got.ret as number], [want.ret], `${what}: result`, 1e-6, 0);
}

const UNARY: [string, UnaryOp, number, number][] = [
  ['exp', UnaryOp.Exp, -10, 10], ['log', UnaryOp.Log, 0.01, 5], ['tanh', UnaryOp.Tanh, -4, 4],
  ['sqrt', UnaryOp.Sqrt, 0.01, 5], ['square', UnaryOp.Square, -3, 3], ['silu', UnaryOp.Silu, -12, 12],
  ['sigmoid', UnaryOp.Sigmoid, -12, 12], ['neg', UnaryOp.Neg, -3, 3], ['rsqrt', UnaryOp.Rsqrt, 0.01, 5],
  ['relu', UnaryOp.Relu, -3, 3],
];

function unaryRef(op: UnaryOp, x: number): number {
  switch (op) {
    case UnaryOp.Exp: return Math.exp(x);
    case UnaryOp.Log: return Math.log(x);
    case UnaryOp.Tanh: return Math.tanh(x);
    case UnaryOp.Sqrt: return Math.sqrt(x);
    case UnaryOp.Square: return x * x;
    case UnaryOp.Silu: return x / (1 + Math.exp(-x));
    case UnaryOp.Sigmoid: return 1 / (1 + Math.exp(-x));
    case UnaryOp.Neg: return -x;
    case UnaryOp.Rsqrt: return 1 / Math.sqrt(x);
    case UnaryOp.Relu: return x > 0 ? x : 0;
  }
}

/** Contiguous strides of a 4-D shape, with 0 where `bshape` broadcasts. */
function stridesOf(bshape: number[]): number[] {
  const s = [0, 0, 0, 0];
  let acc = 1;
  for (let d = 3; d >= 0; d--) {
    s[d] = bshape[d] === 1 ? 0 : acc;
    acc *= bshape[d]!;
  }
  return s;
}

interface AttnCase {
  B: number; Tq: number; Tk: number; H: number; Hkv: number; D: number; qOffset: number; cap?: number;
}

const ATTENTION: AttnCase[] = [
  { B: 1, Tq: 1, Tk: 1, H: 1, Hkv: 1, D: 4, qOffset: 0 },
  { B: 2, Tq: 5, Tk: 5, H: 2, Hkv: 2, D: 3, qOffset: 0 },
  { B: 2, Tq: 3, Tk: 10, H: 4, Hkv: 2, D: 8, qOffset: 7, cap: 16 }, // KV cache, GQA
  { B: 1, Tq: 1, Tk: 77, H: 4, Hkv: 1, D: 16, qOffset: 76, cap: 80 }, // one-token decode, MQA
  { B: 1, Tq: 4, Tk: 6, H: 2, Hkv: 1, D: 5, qOffset: -2 }, // first rows see no key
  { B: 2, Tq: 70, Tk: 130, H: 2, Hkv: 1, D: 64, qOffset: 60 },
  { B: 1, Tq: 300, Tk: 300, H: 4, Hkv: 2, D: 20, qOffset: 0 },
];

// threads, and whether every size takes the multi-thread path (not only the large ones)
const CONFIGS: [number, boolean][] = [[1, false], [2, false], [2, true]];

for (const [threads, allThreaded] of CONFIGS) {
  describe(`wasm ops, ${threads} thread(s)${allThreaded ? ', every size threaded' : ''}, vs js`, () => {
    let be: Backend;
    let kernels: Kernels;
    let ref: Backend;
    before(async () => {
      be = await createWasmBackend({ threads, initialBytes: 16 << 20 });
      kernels = allThreaded ? { ...be.kernels, ...makeOpKernels((be as WasmBackend).runner, { minParallelWork: 1 }) } : be.kernels;
      ref = new JsBackend();
    });
    after(async () => {
      await be.dispose();
    });
    const cmp = (what: string, bufs: Record<string, Buf>, run: Run, tol?: Tol) => compare(ref, be, kernels, what, bufs, run, tol);

    test('fill, copy2d', () => {
      for (const n of [1, 37, 100_003]) {
        cmp(`fill f32 ${n}`, { out: { len: n } }, (k, p) => k.fill(p.out!, n, 1.5, false));
        cmp(`fill i32 ${n}`, { out: { len: n, int: true } }, (k, p) => k.fill(p.out!, n, -100, true));
      }
      for (const [rows, cols, ss, ds] of [[7, 13, 20, 15], [1, 5, 5, 5], [300, 200, 211, 200], [1, 70_000, 70_000, 70_000]]) {
        cmp(`copy2d ${rows}x${cols}`, { src: { data: rand(rows * ss) }, dst: { data: rand(rows * ds) } },
          (k, p) => k.copy2d(p.src!, p.dst!, rows, cols, ss, ds));
      }
      // overlapping moves inside one buffer, both directions
      for (const shift of [5, -5]) {
        cmp(`copy2d overlap ${shift}`, { buf: { data: rand(400) } },
          (k, p) => k.copy2d(p.buf! + 4 * Math.max(0, -shift) + 40, p.buf! + 4 * Math.max(0, shift) + 40, 30, 8, 10, 10));
      }
    });

    test('binary with broadcasting', () => {
      const shapes: [number[], number[], number[]][] = [
        [[2, 3, 5, 7], [2, 3, 5, 7], [1, 3, 1, 7]],
        [[1, 1, 1, 1001], [1, 1, 1, 1001], [1, 1, 1, 1]],
        [[1, 1, 1, 1001], [1, 1, 1, 1], [1, 1, 1, 1001]],
        [[2, 1, 9, 6], [2, 1, 9, 1], [2, 1, 9, 6]],
        [[1, 1, 512, 300], [1, 1, 512, 300], [1, 1, 1, 300]],
        [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]],
      ];
      for (const [shape, as, bs] of shapes) {
        const na = as.reduce((x, y) => x * y), nb = bs.reduce((x, y) => x * y), n = shape.reduce((x, y) => x * y);
        for (const op of [BinaryOp.Add, BinaryOp.Sub, BinaryOp.Mul, BinaryOp.Div]) {
          cmp(`binary ${op} ${shape}`, { a: { data: rand(na) }, b: { data: randIn(nb, 0.5, 2) }, out: { len: n } },
            (k, p) => k.binary(op, p.a!, p.b!, p.out!, shape, stridesOf(as), stridesOf(bs)));
        }
      }
      // a transposed operand: a general (non-unit, non-zero) last stride
      cmp('binary strided', { a: { data: rand(35) }, b: { data: rand(35) }, out: { len: 35 } },
        (k, p) => k.binary(BinaryOp.Mul, p.a!, p.b!, p.out!, [1, 1, 5, 7], [0, 0, 1, 5], [0, 0, 7, 1]));
    });

    test('unary and unaryBackward, every op', () => {
      for (const [name, op, lo, hi] of UNARY) {
        for (const n of [1, 37, 70_001]) {
          const x = randIn(n, lo, hi);
          const y = x.map((v) => unaryRef(op, v));
          cmp(`unary ${name} ${n}`, { x: { data: x }, y: { len: n } }, (k, p) => k.unary(op, p.x!, p.y!, n), { atol: 1e-6 });
          cmp(`unaryBackward ${name} ${n}`, { x: { data: x }, y: { data: y }, dy: { data: rand(n) }, dx: { len: n } },
            (k, p) => k.unaryBackward(op, p.x!, p.y!, p.dy!, p.dx!, n), { atol: 1e-6 });
        }
      }
    });

    test('unary at the edges of the exp range, NaN and infinity', () => {
      const x = new Float32Array([-100, -88, -87.5, -20, 0, 87.9, 88.5, 100, NaN, Infinity, 3, -3]);
      for (const [name, op] of [['exp', UnaryOp.Exp], ['sigmoid', UnaryOp.Sigmoid], ['silu', UnaryOp.Silu], ['relu', UnaryOp.Relu]] as const) {
        cmp(`unary ${name} edges`, { x: { data: x }, y: { len: x.length } }, (k, p) => k.unary(op, p.x!, p.y!, x.length), { atol: 1e-30 });
      }
    });

    test('axpby, swiglu, swigluBackward, adamw, sumSquares', () => {
      for (const n of [1, 37, 70_001]) {
        cmp(`axpby beta=0 ${n}`, { x: { data: rand(n) }, y: { data: new Float32Array(n).fill(NaN) } },
          (k, p) => k.axpby(p.x!, p.y!, n, 0.7, 0));
        cmp(`axpby ${n}`, { x: { data: rand(n) }, y: { data: rand(n) } }, (k, p) => k.axpby(p.x!, p.y!, n, 0.7, -1.3));
        cmp(`axpby aliased ${n}`, { x: { data: rand(n) } }, (k, p) => k.axpby(p.x!, p.x!, n, 0.5, 2));
        const g = randIn(n, -12, 12), u = rand(n);
        cmp(`swiglu ${n}`, { g: { data: g }, u: { data: u }, y: { len: n } }, (k, p) => k.swiglu(p.g!, p.u!, p.y!, n), { atol: 1e-6 });
        cmp(`swigluBackward ${n}`, { g: { data: g }, u: { data: u }, dy: { data: rand(n) }, dg: { len: n }, du: { len: n } },
          (k, p) => k.swigluBackward(p.g!, p.u!, p.dy!, p.dg!, p.du!, n), { atol: 1e-6 });
        cmp(`adamw ${n}`, { p: { data: rand(n) }, g: { data: rand(n) }, m: { data: rand(n, 0.1) }, v: { data: randIn(n, 0, 0.01) } },
          (k, p) => k.adamw(p.p!, p.g!, p.m!, p.v!, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1 - 0.9 ** 3, 1 - 0.95 ** 3),
          { atol: 1e-6 });
        cmp(`sumSquares ${n}`, { x: { data: rand(n) } }, (k, p) => k.sumSquares(p.x!, n));
      }
    });

    test('reduceTo', () => {
      const cases: [number[], number[]][] = [
        [[2, 3, 4, 5], [1, 3, 1, 5]], [[2, 3, 4, 5], [1, 1, 1, 1]], [[2, 3, 4, 5], [2, 1, 4, 1]],
        [[2, 3, 4, 5], [2, 3, 4, 5]], [[1, 1, 4096, 67], [1, 1, 1, 67]], [[1, 1, 7, 10_000], [1, 1, 7, 1]],
        [[3, 1, 1, 1], [1, 1, 1, 1]],
      ];
      for (const [shape, outShape] of cases) {
        const n = shape.reduce((x, y) => x * y), no = outShape.reduce((x, y) => x * y);
        cmp(`reduceTo ${shape} -> ${outShape}`, { g: { data: rand(n) }, out: { len: no } },
          (k, p) => k.reduceTo(p.g!, p.out!, shape, outShape), { atol: 1e-4 });
      }
    });

    test('softmax, crossEntropy, rmsnorm, row statistics', () => {
      for (const [rows, cols] of [[1, 1], [1, 5], [5, 37], [300, 129], [33, 2048]]) {
        const n = rows * cols;
        const x = rand(n, 4);
        cmp(`softmax ${rows}x${cols}`, { x: { data: x }, y: { len: n } }, (k, p) => k.softmax(p.x!, p.y!, rows, cols), { atol: 1e-7 });
        const y = softmaxRef(x, rows, cols);
        cmp(`softmaxBackward ${rows}x${cols}`, { y: { data: y }, dy: { data: rand(n) }, dx: { len: n } },
          (k, p) => k.softmaxBackward(p.y!, p.dy!, p.dx!, rows, cols), { atol: 1e-6 });

        const t = ints(rows, cols);
        if (rows > 2) t[1] = -100;
        cmp(`crossEntropy ${rows}x${cols}`, { x: { data: x }, t: { data: t }, loss: { len: rows }, lse: { len: rows } },
          (k, p) => k.crossEntropy(p.x!, p.t!, p.loss!, p.lse!, rows, cols, -100));
        const lse = crossEntropyLse(x, rows, cols);
        cmp(`crossEntropyBackward ${rows}x${cols}`, { x: { data: x }, t: { data: t }, lse: { data: lse }, dx: { len: n } },
          (k, p) => k.crossEntropyBackward(p.x!, p.t!, p.lse!, p.dx!, rows, cols, -100, 1 / rows), { atol: 1e-7 });

        const w = randIn(cols, 0.5, 1.5);
        cmp(`rmsnorm ${rows}x${cols}`, { x: { data: x }, w: { data: w }, y: { len: n }, rstd: { len: rows } },
          (k, p) => k.rmsnorm(p.x!, p.w!, p.y!, p.rstd!, rows, cols, 1e-6));
        const rstd = Float32Array.from({ length: rows }, (_, r) => {
          let ss = 0;
          for (let c = 0; c < cols; c++) ss += x[r * cols + c]! ** 2;
          return 1 / Math.sqrt(ss / cols + 1e-6);
        });
        cmp(`rmsnormBackward ${rows}x${cols}`,
          { x: { data: x }, w: { data: w }, rstd: { data: rstd }, dy: { data: rand(n) }, dx: { len: n }, dw: { data: rand(cols) } },
          (k, p) => k.rmsnormBackward(p.x!, p.w!, p.rstd!, p.dy!, p.dx!, p.dw!, rows, cols), { atol: 1e-4 });

        const xs = x.slice();
        if (rows > 2) xs.fill(0.25, 2 * cols, 3 * cols); // a constant row: std 0
        cmp(`sumRows ${rows}x${cols}`, { x: { data: xs }, y: { len: rows } }, (k, p) => k.sumRows(p.x!, p.y!, rows, cols), { atol: 1e-4 });
        for (const unbiased of cols > 1 ? [false, true] : [false]) {
          cmp(`stdRows ${rows}x${cols} ${unbiased}`, { x: { data: xs }, y: { len: rows } },
            (k, p) => k.stdRows(p.x!, p.y!, rows, cols, unbiased));
          const std = stdRef(xs, rows, cols, unbiased);
          cmp(`stdRowsBackward ${rows}x${cols} ${unbiased}`, { x: { data: xs }, std: { data: std }, dy: { data: rand(rows) }, dx: { len: n } },
            (k, p) => k.stdRowsBackward(p.x!, p.std!, p.dy!, p.dx!, rows, cols, unbiased), { atol: 1e-6 });
        }
      }
    });

    test('topk (with ties), transpose', () => {
      for (const [rows, cols, k] of [[1, 1, 1], [20, 16, 2], [7, 9, 9], [1000, 64, 4], [3, 100, 10]]) {
        // values from a small set, so ties are common
        const x = Float32Array.from(ints(rows * cols, 5), (v) => v * 0.5);
        cmp(`topk ${rows}x${cols} k=${k}`, { x: { data: x }, v: { len: rows * k }, i: { len: rows * k, int: true } },
          (kk, p) => kk.topk(p.x!, p.v!, p.i!, rows, cols, k));
        const xr = rand(rows * cols);
        cmp(`topk distinct ${rows}x${cols} k=${k}`, { x: { data: xr }, v: { len: rows * k }, i: { len: rows * k, int: true } },
          (kk, p) => kk.topk(p.x!, p.v!, p.i!, rows, cols, k));
      }
      for (const [batch, rows, cols] of [[1, 1, 1], [3, 37, 45], [1, 1, 100], [2, 300, 200]]) {
        const n = batch * rows * cols;
        cmp(`transpose ${batch}x${rows}x${cols}`, { x: { data: rand(n) }, y: { len: n } },
          (k, p) => k.transpose(p.x!, p.y!, batch, rows, cols));
      }
    });

    test('gatherRows, scatterAddRows (repeated ids), rope', () => {
      for (const [n, cols, vocab] of [[1, 1, 1], [50, 37, 10], [600, 70, 20], [4096, 8, 3]]) {
        const ids = ints(n, vocab);
        cmp(`gatherRows ${n}x${cols}`, { table: { data: rand(vocab * cols) }, ids: { data: ids }, out: { len: n * cols } },
          (k, p) => k.gatherRows(p.table!, p.ids!, p.out!, n, cols));
        cmp(`scatterAddRows ${n}x${cols}`, { src: { data: rand(n * cols) }, ids: { data: ids }, table: { data: rand(vocab * cols) } },
          (k, p) => k.scatterAddRows(p.src!, p.ids!, p.table!, n, cols), { atol: 1e-4 });
      }
      for (const [ntok, heads, dim] of [[1, 1, 2], [7, 3, 10], [300, 4, 64]]) {
        const half = dim / 2, maxPos = ntok + 5;
        const cos = new Float32Array(maxPos * half), sin = new Float32Array(maxPos * half);
        for (let p = 0; p < maxPos; p++)
          for (let i = 0; i < half; i++) {
            const a = p * 10000 ** (-2 * i / dim);
            cos[p * half + i] = Math.cos(a);
            sin[p * half + i] = Math.sin(a);
          }
        const pos = ints(ntok, maxPos);
        const n = ntok * heads * dim;
        for (const inverse of [false, true]) {
          cmp(`rope ${ntok}x${heads}x${dim} inverse=${inverse}`,
            { x: { data: rand(n) }, y: { len: n }, cos: { data: cos }, sin: { data: sin }, pos: { data: pos } },
            (k, p) => k.rope(p.x!, p.y!, p.cos!, p.sin!, p.pos!, ntok, heads, dim, inverse), { atol: 1e-6 });
          cmp(`rope in place ${ntok}x${heads}x${dim} inverse=${inverse}`,
            { x: { data: rand(n) }, cos: { data: cos }, sin: { data: sin }, pos: { data: pos } },
            (k, p) => k.rope(p.x!, p.x!, p.cos!, p.sin!, p.pos!, ntok, heads, dim, inverse), { atol: 1e-6 });
        }
      }
    });

    test('attention forward and backward', () => {
      for (const c of ATTENTION) {
        const { B, Tq, Tk, H, Hkv, D, qOffset } = c;
        const cap = c.cap ?? Tk;
        const stride = cap * Hkv * D;
        const nq = B * Tq * H * D, nkv = B * stride;
        const scale = 1 / Math.sqrt(D);
        const q = rand(nq, 2), k = rand(nkv, 2), v = rand(nkv), dout = rand(nq);
        const what = `attention B${B} Tq${Tq} Tk${Tk} H${H}/${Hkv} D${D} off${qOffset}`;
        cmp(what, { q: { data: q }, k: { data: k }, v: { data: v }, o: { len: nq }, lse: { len: B * H * Tq } },
          (kk, p) => kk.attention(p.q!, p.k!, p.v!, p.o!, p.lse!, B, Tq, Tk, H, Hkv, D, stride, qOffset, scale), { atol: 1e-5 });
        // backward from the reference forward's o and lse
        const fwd = runOn(ref, ref.kernels, { q: { data: q }, k: { data: k }, v: { data: v }, o: { len: nq }, lse: { len: B * H * Tq } },
          (kk, p) => kk.attention(p.q!, p.k!, p.v!, p.o!, p.lse!, B, Tq, Tk, H, Hkv, D, stride, qOffset, scale), false).out;
        const ndk = B * Tk * Hkv * D;
        cmp(`${what} backward`,
          { q: { data: q }, k: { data: k }, v: { data: v }, o: { data: fwd.o! }, lse: { data: fwd.lse! }, dout: { data: dout },
            dq: { len: nq }, dk: { len: ndk }, dv: { len: ndk } },
          (kk, p) => kk.attentionBackward(p.q!, p.k!, p.v!, p.o!, p.lse!, p.dout!, p.dq!, p.dk!, p.dv!, B, Tq, Tk, H, Hkv, D,
            stride, qOffset, scale), { atol: 1e-4 });
      }
    });
  });
}

function softmaxRef(x: Float32Array, rows: number, cols: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity, s = 0;
    for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]!);
    for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c]! - m);
    for (let c = 0; c < cols; c++) y[r * cols + c] = Math.exp(x[r * cols + c]! - m) / s;
  }
  return y;
}

function crossEntropyLse(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity, s = 0;
    for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]!);
    for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c]! - m);
    out[r] = m + Math.log(s);
  }
  return out;
}

function stdRef(x: Float32Array, rows: number, cols: number, unbiased: boolean): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let mean = 0, ss = 0;
    for (let c = 0; c < cols; c++) mean += x[r * cols + c]!;
    mean /= cols;
    for (let c = 0; c < cols; c++) ss += (x[r * cols + c]! - mean) ** 2;
    out[r] = Math.sqrt(ss / (unbiased ? cols - 1 : cols));
  }
  return out;
}
