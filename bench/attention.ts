/**
 * The kernels of continuous-batching inference, each beside its peer in the same run, one
 * machine-readable line per figure:
 *   bandwidth backend=native threads=2 gbs=...                       (all threads stream-reading 1 GiB)
 *   paged_attention backend=native threads=2 case=decode rows=64 ... ms=... kv_gbs=... bw_pct=...
 *   dense_attention backend=native threads=2 case=decode ... ms=... kv_gbs=...
 *   paged_attention backend=native threads=2 case=prefill rows=256 prior=256 ... ms=... gflops=...
 *   dense_attention backend=native threads=2 case=prefill ... ms=... gflops=... paged_ratio=...
 *   linear_w backend=native threads=2 dtype=bf16 m=32 k=2048 n=2048 mode=row_invariant gflops=... default_gflops=... ratio=...
 * Decode: 64 sequences of ~300 keys (280-320), one query row each, H = Hkv = 16, D = 64, blocks of 16
 * laid out in shuffled order: bound by reading K and V once, so kv_gbs = their bytes / time is set
 * against the streaming bandwidth measured in this run (bw_pct). The dense attention kernel on the
 * same work (64 contiguous sequences of 300, Tq = 1) is the peer. Prefill: a chunk of 256 rows of one
 * sequence after 256 cached tokens (rows see 257..512 keys) against dense attention on the same
 * rows (Tq = 256, Tk = 512, qOffset 256); gflops counts q k^T and p v (4 H D per visible key).
 * paged_ratio = dense time / paged time. linear_w: the row-invariant weight product against the
 * default one at m = 1, 32, 256 for 2048 x 2048 weights; ratio = row-invariant / default GFLOP/s.
 * Medians of 7 timed runs after a warm-up. Run: npm run bench:attention [-- --backends native,wasm] [--threads 2]
 */
import type { Backend } from '../src/backend/backend.js';
import { WeightDType } from '../src/backend/backend.js';
import { createWasmBackend } from '../src/backend/wasm/index.js';
import { type NativeBackend, createNativeBackend, nativeInfo } from '../src/backend/native/index.js';
import { randomBlock, timeCall } from './timing.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const BACKENDS = (arg('backends') ?? 'native,wasm').split(',');
const THREADS = Number(arg('threads') ?? 2);

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

/** A shuffle of [0, n). */
function shuffled(n: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

interface Attn {
  H: number;
  Hkv: number;
  D: number;
}

/** Sequences of these lengths in a cache of blocks of `block`, block ids shuffled: the caches and the block tables. */
function pagedCache(be: Backend, a: Attn, lens: number[], block: number) {
  const maxBlocks = Math.max(...lens.map((l) => Math.ceil(l / block)));
  const total = lens.reduce((s, l) => s + Math.ceil(l / block), 0);
  const ids = shuffled(total);
  const tables = new Int32Array(lens.length * maxBlocks).fill(-1);
  let next = 0;
  lens.forEach((l, s) => {
    for (let b = 0; b < Math.ceil(l / block); b++) tables[s * maxBlocks + b] = ids[next++]!;
  });
  const floats = total * block * a.Hkv * a.D;
  return { k: randomBlock(be, floats), v: randomBlock(be, floats), tables, maxBlocks, free: (p: number[]) => p.forEach((x) => be.free(x)) };
}

function benchDecode(be: Backend, label: string, bw: number | null): void {
  const a: Attn = { H: 16, Hkv: 16, D: 64 }, n = 64, block = 16;
  const lens = Array.from({ length: n }, (_, i) => 280 + ((i * 37) % 41));
  const keys = lens.reduce((s, l) => s + l, 0);
  const cache = pagedCache(be, a, lens, block);
  const q = randomBlock(be, n * a.H * a.D), o = be.alloc(4 * n * a.H * a.D);
  const rowSeq = Int32Array.from({ length: n }, (_, i) => i), rowLen = Int32Array.from(lens);
  const kvBytes = 2 * keys * a.Hkv * a.D * 4, flops = 4 * keys * a.H * a.D;
  const s = timeCall(() => be.kernels.pagedAttention(q, cache.k, cache.v, o, n, a.H, a.Hkv, a.D, 0.125, block, rowSeq, rowLen, cache.tables, cache.maxBlocks), flops, 5e9);
  const gbs = kvBytes / s / 1e9;
  const pct = bw ? ` bw_gbs=${f1(bw)} bw_pct=${f1((100 * gbs) / bw)}` : '';
  console.log(`paged_attention ${label} case=decode rows=${n} H=${a.H} Hkv=${a.Hkv} D=${a.D} keys_per_row=${Math.round(keys / n)} block=${block} ms=${f2(s * 1e3)} kv_gbs=${f1(gbs)}${pct}`);
  cache.free([cache.k, cache.v, q, o]);
  // the dense kernel on 64 contiguous sequences of 300 keys, one query each
  const T = 300, kd = randomBlock(be, n * T * a.Hkv * a.D), vd = randomBlock(be, n * T * a.Hkv * a.D);
  const qd = randomBlock(be, n * a.H * a.D), od = be.alloc(4 * n * a.H * a.D), lse = be.alloc(4 * n * a.H);
  const sd = timeCall(() => be.kernels.attention(qd, kd, vd, od, lse, n, 1, T, a.H, a.Hkv, a.D, T * a.Hkv * a.D, T - 1, 0.125), flops, 5e9);
  const dgbs = (2 * n * T * a.Hkv * a.D * 4) / sd / 1e9;
  console.log(`dense_attention ${label} case=decode batch=${n} H=${a.H} Hkv=${a.Hkv} D=${a.D} keys_per_row=${T} ms=${f2(sd * 1e3)} kv_gbs=${f1(dgbs)}${bw ? ` bw_pct=${f1((100 * dgbs) / bw)}` : ''}`);
  for (const p of [kd, vd, qd, od, lse]) be.free(p);
}

function benchPrefill(be: Backend, label: string): void {
  const a: Attn = { H: 16, Hkv: 16, D: 64 }, rows = 256, prior = 256, block = 16, total = prior + rows;
  const cache = pagedCache(be, a, [total], block);
  const q = randomBlock(be, rows * a.H * a.D), o = be.alloc(4 * rows * a.H * a.D);
  const rowSeq = new Int32Array(rows), rowLen = Int32Array.from({ length: rows }, (_, i) => prior + i + 1);
  const flops = 4 * a.H * a.D * rowLen.reduce((s, l) => s + l, 0);
  const s = timeCall(() => be.kernels.pagedAttention(q, cache.k, cache.v, o, rows, a.H, a.Hkv, a.D, 0.125, block, rowSeq, rowLen, cache.tables, cache.maxBlocks), flops, 20e9);
  const kd = randomBlock(be, total * a.Hkv * a.D), vd = randomBlock(be, total * a.Hkv * a.D), lse = be.alloc(4 * rows * a.H);
  const sd = timeCall(() => be.kernels.attention(q, kd, vd, o, lse, 1, rows, total, a.H, a.Hkv, a.D, total * a.Hkv * a.D, prior, 0.125), flops, 20e9);
  const shape = `rows=${rows} prior=${prior} H=${a.H} Hkv=${a.Hkv} D=${a.D}`;
  console.log(`paged_attention ${label} case=prefill ${shape} block=${block} ms=${f2(s * 1e3)} gflops=${f1(flops / s / 1e9)}`);
  console.log(`dense_attention ${label} case=prefill ${shape} ms=${f2(sd * 1e3)} gflops=${f1(flops / sd / 1e9)} paged_ratio=${f2(sd / s)}`);
  cache.free([cache.k, cache.v, q, o, kd, vd, lse]);
}

/** Random stored weights: bf16 of values ~ +-0.05, or f8_e4m3 codes without the NaN ones. */
function weightBlock(be: Backend, dtype: WeightDType, count: number): number {
  const bytes = new Uint8Array(count * (dtype === WeightDType.BF16 ? 2 : 1));
  if (dtype === WeightDType.BF16) {
    const f = new Float32Array(count).map(() => (Math.random() - 0.5) / 10);
    const u16 = new Uint16Array(f.buffer);
    for (let i = 0; i < count; i++) (bytes[2 * i] = u16[2 * i + 1]! & 0xff), (bytes[2 * i + 1] = u16[2 * i + 1]! >> 8);
  } else for (let i = 0; i < count; i++) bytes[i] = Math.floor(Math.random() * 256) % 0x7f | (Math.random() < 0.5 ? 0x80 : 0);
  const p = be.alloc(bytes.length);
  be.writeBytes(p, bytes);
  return p;
}

function benchLinear(be: Backend, label: string): void {
  const k = 2048, n = 2048;
  for (const [dtype, name] of [[WeightDType.BF16, 'bf16'], [WeightDType.F8E4M3, 'fp8']] as const) {
    const w = { ptr: weightBlock(be, dtype, n * k), dtype, scale: 0.01, rowScale: null };
    for (const m of [1, 32, 256]) {
      const x = randomBlock(be, m * k), y = be.alloc(4 * m * n), flops = 2 * m * k * n;
      const sd = timeCall(() => be.kernels.linearW(x, w, y, m, k, n), flops, 20e9);
      const si = timeCall(() => be.kernels.linearW(x, w, y, m, k, n, true), flops, 20e9);
      console.log(`linear_w ${label} dtype=${name} m=${m} k=${k} n=${n} mode=row_invariant gflops=${f1(flops / si / 1e9)} default_gflops=${f1(flops / sd / 1e9)} ratio=${f2(sd / si)}`);
      be.free(x);
      be.free(y);
    }
    be.free(w.ptr);
  }
}

async function main(): Promise<void> {
  let bw: number | null = null;
  if (nativeInfo().available) {
    const probe: NativeBackend = createNativeBackend({ threads: THREADS });
    bw = probe.measureStreamBandwidth(2 ** 30, 5);
    await probe.dispose();
    console.log(`bandwidth backend=native threads=${THREADS} gbs=${f1(bw)} buffer_gb=1.1`);
  }
  for (const name of BACKENDS) {
    if (name === 'native' && !nativeInfo().available) {
      console.log(`native skipped: ${nativeInfo().reason}`);
      continue;
    }
    const be = name === 'native' ? createNativeBackend({ threads: THREADS }) : await createWasmBackend({ threads: THREADS, initialBytes: 2 ** 29 });
    const label = `backend=${name} threads=${THREADS}`;
    try {
      benchDecode(be, label, bw);
      benchPrefill(be, label);
      benchLinear(be, label);
    } finally {
      await be.dispose();
    }
  }
}

await main();
