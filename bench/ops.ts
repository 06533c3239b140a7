/**
 * Non-GEMM kernels at transformer sizes, wasm (1 and 2 threads) against the js reference, one
 * machine-readable line per figure:
 *   op name=attention_fwd backend=wasm threads=2 ms=12.3 speedup_vs_js=8.1
 * Median of several timed runs after a warm-up; the js reference gets fewer runs (it is slow).
 * Run: node dist/bench/ops.js [name-substring...]
 */
import { performance } from 'node:perf_hooks';
import { type Backend, BinaryOp, type Kernels } from '../src/backend/backend.js';
import { createJsBackend } from '../src/backend/js/index.js';
import { createWasmBackend } from '../src/backend/wasm/index.js';

interface OpBench {
  name: string;
  /** Buffers: float length, or an int array (written as is). */
  bufs: Record<string, number | Int32Array>;
  run: (k: Kernels, p: Record<string, number>) => void;
}

function randomFill(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 31 - 1) * scale;
  }
  return a;
}

function idsFill(n: number, hi: number): Int32Array {
  return Int32Array.from(randomFill(n, 7), (v) => Math.min(hi - 1, Math.floor(((v + 1) / 2) * hi)));
}

const R = 4096; // token rows
const C = 512; // model width
const V = 8192; // vocab
const FF = 1408; // expert width
const [AB, AT, AH, AD] = [8, 512, 8, 64];
const ATT = AB * AT * AH * AD;

const OPS: OpBench[] = [
  { name: 'rmsnorm_fwd', bufs: { x: R * C, w: C, y: R * C, rstd: R }, run: (k, p) => k.rmsnorm(p.x!, p.w!, p.y!, p.rstd!, R, C, 1e-6) },
  {
    name: 'rmsnorm_bwd', bufs: { x: R * C, w: C, rstd: R, dy: R * C, dx: R * C, dw: C },
    run: (k, p) => k.rmsnormBackward(p.x!, p.w!, p.rstd!, p.dy!, p.dx!, p.dw!, R, C),
  },
  { name: 'softmax_fwd', bufs: { x: R * V, y: R * V }, run: (k, p) => k.softmax(p.x!, p.y!, R, V) },
  { name: 'softmax_bwd', bufs: { y: R * V, dy: R * V, dx: R * V }, run: (k, p) => k.softmaxBackward(p.y!, p.dy!, p.dx!, R, V) },
  {
    name: 'cross_entropy_fwd', bufs: { x: R * V, t: idsFill(R, V), loss: R, lse: R },
    run: (k, p) => k.crossEntropy(p.x!, p.t!, p.loss!, p.lse!, R, V, -100),
  },
  {
    name: 'cross_entropy_bwd', bufs: { x: R * V, t: idsFill(R, V), lse: R, dx: R * V },
    run: (k, p) => k.crossEntropyBackward(p.x!, p.t!, p.lse!, p.dx!, R, V, -100, 1 / R),
  },
  { name: 'swiglu_fwd', bufs: { g: R * FF, u: R * FF, y: R * FF }, run: (k, p) => k.swiglu(p.g!, p.u!, p.y!, R * FF) },
  {
    name: 'swiglu_bwd', bufs: { g: R * FF, u: R * FF, dy: R * FF, dg: R * FF, du: R * FF },
    run: (k, p) => k.swigluBackward(p.g!, p.u!, p.dy!, p.dg!, p.du!, R * FF),
  },
  {
    name: 'binary_add_bias', bufs: { a: R * C, b: C, out: R * C },
    run: (k, p) => k.binary(BinaryOp.Add, p.a!, p.b!, p.out!, [1, 1, R, C], [0, 0, C, 1], [0, 0, 0, 1]),
  },
  { name: 'reduce_bias_grad', bufs: { g: R * C, out: C }, run: (k, p) => k.reduceTo(p.g!, p.out!, [1, 1, R, C], [1, 1, 1, C]) },
  {
    name: 'rope', bufs: { x: R * AH * AD, cos: R * AD / 2, sin: R * AD / 2, pos: idsFill(R, R) },
    run: (k, p) => k.rope(p.x!, p.x!, p.cos!, p.sin!, p.pos!, R, AH, AD, false),
  },
  { name: 'topk_router', bufs: { x: R * 16, v: R * 2, i: new Int32Array(R * 2) }, run: (k, p) => k.topk(p.x!, p.v!, p.i!, R, 16, 2) },
  { name: 'transpose', bufs: { x: R * C, y: R * C }, run: (k, p) => k.transpose(p.x!, p.y!, 1, R, C) },
  { name: 'gather_rows', bufs: { t: V * C, ids: idsFill(R, V), out: R * C }, run: (k, p) => k.gatherRows(p.t!, p.ids!, p.out!, R, C) },
  {
    name: 'scatter_add_rows', bufs: { src: R * C, ids: idsFill(R, V), t: V * C },
    run: (k, p) => k.scatterAddRows(p.src!, p.ids!, p.t!, R, C),
  },
  { name: 'sum_squares', bufs: { x: 1 << 24 }, run: (k, p) => void k.sumSquares(p.x!, 1 << 24) },
  {
    name: 'adamw', bufs: { p: 1 << 24, g: 1 << 24, m: 1 << 24, v: 1 << 24 },
    run: (k, p) => k.adamw(p.p!, p.g!, p.m!, p.v!, 1 << 24, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.1, 0.05),
  },
  {
    name: 'attention_fwd', bufs: { q: ATT, k: ATT, v: ATT, o: ATT, lse: AB * AH * AT },
    run: (k, p) => k.attention(p.q!, p.k!, p.v!, p.o!, p.lse!, AB, AT, AT, AH, AH, AD, AT * AH * AD, 0, 1 / Math.sqrt(AD)),
  },
  {
    name: 'attention_bwd',
    bufs: { q: ATT, k: ATT, v: ATT, o: ATT, lse: AB * AH * AT, dout: ATT, dq: ATT, dk: ATT, dv: ATT },
    run: (k, p) => k.attentionBackward(p.q!, p.k!, p.v!, p.o!, p.lse!, p.dout!, p.dq!, p.dk!, p.dv!, AB, AT, AT, AH, AH, AD,
      AT * AH * AD, 0, 1 / Math.sqrt(AD)),
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Median ms of `runs` timed calls after one warm-up call. */
function timeOp(be: Backend, op: OpBench, runs: number): number {
  const p: Record<string, number> = {};
  let seed = 1;
  for (const [name, b] of Object.entries(op.bufs)) {
    const n = typeof b === 'number' ? b : b.length;
    p[name] = be.alloc(n * 4);
    if (typeof b === 'number') be.write(p[name]!, randomFill(n, seed++));
    else be.write(p[name]!, b);
  }
  // attention backward needs a consistent lse: take it from a forward pass
  if (op.name === 'attention_bwd') {
    be.kernels.attention(p.q!, p.k!, p.v!, p.o!, p.lse!, AB, AT, AT, AH, AH, AD, AT * AH * AD, 0, 1 / Math.sqrt(AD));
  }
  op.run(be.kernels, p);
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    op.run(be.kernels, p);
    times.push(performance.now() - t0);
  }
  for (const ptr of Object.values(p)) be.free(ptr);
  return median(times);
}

async function main(): Promise<void> {
  const filters = process.argv.slice(2);
  const ops = OPS.filter((o) => filters.length === 0 || filters.some((f) => o.name.includes(f)));
  const jsMs = new Map<string, number>();
  const js = createJsBackend();
  for (const op of ops) {
    const ms = timeOp(js, op, op.name.startsWith('attention') ? 1 : 3);
    jsMs.set(op.name, ms);
    console.log(`op name=${op.name} backend=js threads=1 ms=${ms.toFixed(2)}`);
  }
  await js.dispose();
  for (const threads of [1, 2]) {
    const be = await createWasmBackend({ threads });
    for (const op of ops) {
      const ms = timeOp(be, op, 7);
      console.log(`op name=${op.name} backend=wasm threads=${threads} ms=${ms.toFixed(2)} speedup_vs_js=${(jsMs.get(op.name)! / ms).toFixed(1)}`);
    }
    await be.dispose();
  }
}

await main();
