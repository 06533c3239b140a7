/**
 * The native kernels against the js reference, kernel by kernel: GEMM on every shape that crosses a
 * micro-tile or block edge (m, n, k in {1, 7, 12, 13, 31, 32, 33, 100}, all transposes), batches with
 * broadcast strides and beta = 1, grouped matmul in all modes with empty groups, attention (T = 300,
 * GQA, a query offset, a padded KV batch stride) forward and backward, and the row kernels on odd
 * sizes. Every ISA this CPU has (forced through the `isa` option) runs with 1 and 2 threads, so the
 * AVX-512, AVX2 and portable paths are all exercised. Skipped when the addon is not built.
 */
import { describe, test } from 'node:test';
import { type Backend, BackendError, GroupedMode, type Kernels } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { type NativeIsa, createNativeBackend, nativeInfo } from '../../src/backend/native/index.js';
import { assertClose, randomArray } from '../helpers.js';

type Buf = Float32Array | Int32Array;

/**
 * Run `call` on the reference and on `be` with the same inputs; compare the outputs. Outputs start
 * as `init` (for accumulating kernels) or NaN-free garbage (for overwriting ones).
 */
function compare(be: Backend, ref: Backend, what: string, inputs: Record<string, Buf>, outputs: Record<string, Buf>,
  call: (k: Kernels, p: Record<string, number>) => void, rtol = 1e-4, atol = 1e-5): void {
  const results: Record<string, Buf>[] = [];
  for (const b of [ref, be]) {
    const p: Record<string, number> = {};
    for (const [name, data] of [...Object.entries(inputs), ...Object.entries(outputs)]) {
      p[name] = b.alloc(Math.max(4, data.byteLength));
      b.write(p[name]!, data);
    }
    call(b.kernels, p);
    const out: Record<string, Buf> = {};
    for (const [name, init] of Object.entries(outputs)) {
      out[name] = init instanceof Int32Array ? b.readI32(p[name]!, init.length) : b.readF32(p[name]!, init.length);
    }
    for (const ptr of Object.values(p)) b.free(ptr);
    results.push(out);
  }
  for (const name of Object.keys(outputs)) assertClose(results[1]![name]!, results[0]![name]!, `${what}: ${name}`, rtol, atol);
}

const EDGE = [1, 7, 12, 13, 31, 32, 33, 100];
let seed = 1;
const rand = (n: number, scale = 1) => randomArray(Math.max(1, n), seed++, scale);

function gemmChecks(be: Backend, ref: Backend): void {
  for (const m of EDGE)
    for (const n of EDGE)
      for (const k of EDGE)
        for (const [ta, tb] of [[false, false], [false, true], [true, false], [true, true]] as const) {
          compare(be, ref, `matmul m=${m} n=${n} k=${k} tA=${ta} tB=${tb}`, { a: rand(m * k), b: rand(k * n) }, { c: rand(m * n) },
            (K, p) => K.matmul(p.a!, p.b!, p.c!, m, k, n, ta, tb, 1, 0, 0, 0, 0));
        }
  // Batches: a broadcast (stride 0) operand on either side, beta = 1, and shapes over the cache blocks.
  for (const [m, k, n, batch] of [[13, 33, 31, 3], [100, 300, 70, 2], [7, 520, 1, 4], [1, 100, 33, 3], [200, 40, 600, 2]] as const)
    for (const [ta, tb] of [[false, false], [true, true], [false, true]] as const)
      for (const [sa, sb] of [[m * k, k * n], [0, k * n], [m * k, 0]])
        for (const beta of [0, 1] as const) {
          compare(be, ref, `matmul batch=${batch} m=${m} n=${n} k=${k} tA=${ta} tB=${tb} sA=${sa} sB=${sb} beta=${beta}`,
            { a: rand(Math.max(m * k, sa * batch)), b: rand(Math.max(k * n, sb * batch)) }, { c: rand(m * n * batch) },
            (K, p) => K.matmul(p.a!, p.b!, p.c!, m, k, n, ta, tb, batch, sa, sb, m * n, beta));
        }
}

function groupedChecks(be: Backend, ref: Backend): void {
  const M = 33, K = 20;
  for (const offs of [[0, 5, 5, 17, 40], [0, 0, 0, 3], [0, 100, 100, 113]]) {
    const offsets = Int32Array.from(offs), G = offs.length - 1, N = offs[G]!;
    compare(be, ref, `groupedMatmul XWt ${offs}`, { a: rand(N * K), w: rand(G * M * K) }, { c: rand(N * M) },
      (k, p) => k.groupedMatmul(GroupedMode.XWt, p.a!, p.w!, p.c!, offsets, M, K, 0));
    compare(be, ref, `groupedMatmul XW ${offs}`, { a: rand(N * M), w: rand(G * M * K) }, { c: rand(N * K) },
      (k, p) => k.groupedMatmul(GroupedMode.XW, p.a!, p.w!, p.c!, offsets, M, K, 0));
    for (const beta of [0, 1] as const)
      compare(be, ref, `groupedMatmul AtB beta=${beta} ${offs}`, { a: rand(N * M), b: rand(N * K) }, { c: rand(G * M * K) },
        (k, p) => k.groupedMatmul(GroupedMode.AtB, p.a!, p.b!, p.c!, offsets, M, K, beta));
  }
}

function attentionChecks(be: Backend, ref: Backend): void {
  const cases = [
    { B: 2, Tq: 300, Tk: 300, H: 4, Hkv: 2, D: 16, pad: 0, qOffset: 0 },
    { B: 1, Tq: 37, Tk: 300, H: 4, Hkv: 1, D: 8, pad: 5, qOffset: 263 },
    { B: 2, Tq: 70, Tk: 70, H: 2, Hkv: 2, D: 64, pad: 3, qOffset: 0 },
    { B: 1, Tq: 5, Tk: 1, H: 3, Hkv: 3, D: 4, pad: 0, qOffset: -2 },
  ];
  for (const { B, Tq, Tk, H, Hkv, D, pad, qOffset } of cases) {
    const kvbs = (Tk + pad) * Hkv * D, scale = 1 / Math.sqrt(D);
    const what = `attention B=${B} Tq=${Tq} Tk=${Tk} H=${H} Hkv=${Hkv} D=${D} kvBatchStride=${kvbs} qOffset=${qOffset}`;
    const q = rand(B * Tq * H * D), k = rand(B * kvbs), v = rand(B * kvbs);
    compare(be, ref, what, { q, k, v }, { o: rand(B * Tq * H * D), lse: rand(B * H * Tq) },
      (K, p) => K.attention(p.q!, p.k!, p.v!, p.o!, p.lse!, B, Tq, Tk, H, Hkv, D, kvbs, qOffset, scale));
    // Backward from the reference's own forward outputs.
    const o = ref.alloc(q.byteLength), lse = ref.alloc(B * H * Tq * 4), pq = ref.alloc(q.byteLength), pk = ref.alloc(k.byteLength), pv = ref.alloc(v.byteLength);
    ref.write(pq, q); ref.write(pk, k); ref.write(pv, v);
    ref.kernels.attention(pq, pk, pv, o, lse, B, Tq, Tk, H, Hkv, D, kvbs, qOffset, scale);
    const O = ref.readF32(o, q.length), L = ref.readF32(lse, B * H * Tq);
    for (const ptr of [o, lse, pq, pk, pv]) ref.free(ptr);
    const n = B * Tk * Hkv * D;
    compare(be, ref, `${what} backward`, { q, k, v, O, L, dout: rand(q.length) }, { dq: rand(q.length), dk: rand(n), dv: rand(n) },
      (K, p) => K.attentionBackward(p.q!, p.k!, p.v!, p.O!, p.L!, p.dout!, p.dq!, p.dk!, p.dv!, B, Tq, Tk, H, Hkv, D, kvbs, qOffset, scale),
      1e-3, 1e-4);
  }
}

function rowChecks(be: Backend, ref: Backend): void {
  for (const [rows, cols] of [[1, 1], [3, 7], [13, 33], [37, 1001], [300, 130]] as const) {
    const what = `rows=${rows} cols=${cols}`;
    const x = rand(rows * cols, 3), w = rand(cols), dy = rand(rows * cols);
    compare(be, ref, `rmsnorm ${what}`, { x, w }, { y: rand(rows * cols), rstd: rand(rows) },
      (k, p) => k.rmsnorm(p.x!, p.w!, p.y!, p.rstd!, rows, cols, 1e-5));
    const rstd = Float32Array.from({ length: rows }, (_, r) => 1 / Math.sqrt(x.subarray(r * cols, (r + 1) * cols).reduce((s, v) => s + v * v, 0) / cols + 1e-5));
    compare(be, ref, `rmsnormBackward ${what}`, { x, w, rstd, dy }, { dx: rand(rows * cols), dw: rand(cols) },
      (k, p) => k.rmsnormBackward(p.x!, p.w!, p.rstd!, p.dy!, p.dx!, p.dw!, rows, cols), 1e-4, 1e-4);
    compare(be, ref, `softmax ${what}`, { x }, { y: rand(rows * cols) }, (k, p) => k.softmax(p.x!, p.y!, rows, cols));
    const y = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * cols, (r + 1) * cols), mx = Math.max(...row);
      let s = 0;
      for (const v of row) s += Math.exp(v - mx);
      for (let c = 0; c < cols; c++) y[r * cols + c] = Math.exp(row[c]! - mx) / s;
    }
    compare(be, ref, `softmaxBackward ${what}`, { y, dy }, { dx: rand(rows * cols) }, (k, p) => k.softmaxBackward(p.y!, p.dy!, p.dx!, rows, cols));
    const t = Int32Array.from({ length: rows }, (_, r) => (r % 5 === 4 ? -100 : (r * 7919) % cols));
    compare(be, ref, `crossEntropy ${what}`, { x, t }, { loss: rand(rows), lse: rand(rows) },
      (k, p) => k.crossEntropy(p.x!, p.t!, p.loss!, p.lse!, rows, cols, -100));
    const lse = Float32Array.from({ length: rows }, (_, r) => {
      const row = x.subarray(r * cols, (r + 1) * cols), mx = Math.max(...row);
      return mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
    });
    compare(be, ref, `crossEntropyBackward ${what}`, { x, t, lse }, { dx: rand(rows * cols) },
      (k, p) => k.crossEntropyBackward(p.x!, p.t!, p.lse!, p.dx!, rows, cols, -100, 1 / rows));
    compare(be, ref, `swiglu ${what}`, { g: x, u: dy }, { y: rand(rows * cols) },
      (k, p) => k.swiglu(p.g!, p.u!, p.y!, rows * cols));
    compare(be, ref, `swigluBackward ${what}`, { g: x, u: dy, dy: rand(rows * cols) }, { dg: rand(rows * cols), du: rand(rows * cols) },
      (k, p) => k.swigluBackward(p.g!, p.u!, p.dy!, p.dg!, p.du!, rows * cols));
    const k = Math.min(cols, 3);
    compare(be, ref, `topk ${what}`, { x }, { v: rand(rows * k), i: new Int32Array(rows * k) }, (K, p) => K.topk(p.x!, p.v!, p.i!, rows, cols, k));
    const ids = Int32Array.from({ length: 2 * rows }, (_, i) => (i * 31) % rows);
    compare(be, ref, `scatterAddRows ${what}`, { src: rand(2 * rows * cols), ids }, { table: rand(rows * cols) },
      (K, p) => K.scatterAddRows(p.src!, p.ids!, p.table!, 2 * rows, cols));
    compare(be, ref, `gatherRows ${what}`, { table: x, ids }, { out: rand(2 * rows * cols) }, (K, p) => K.gatherRows(p.table!, p.ids!, p.out!, 2 * rows, cols));
  }
}

const ref = new JsBackend();
const info = nativeInfo();
const ISAS: NativeIsa[] = ['avx512', 'avx2', 'generic'];

describe('native kernels match the js reference', { skip: info.available ? false : `native backend: ${info.reason}` }, () => {
  for (const isa of ISAS)
    for (const threads of [1, 2]) {
      test(`isa=${isa} threads=${threads}`, async (t) => {
        let be: Backend;
        try {
          be = createNativeBackend({ isa, threads });
        } catch (e) {
          if (e instanceof BackendError && /not available/.test(e.message)) return t.skip(e.message);
          throw e;
        }
        try {
          gemmChecks(be, ref);
          groupedChecks(be, ref);
          attentionChecks(be, ref);
          rowChecks(be, ref);
        } finally {
          await be.dispose();
        }
      });
    }
});
