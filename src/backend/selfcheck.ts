/**
 * A quick check of a backend's kernels against the js reference on random inputs: what
 * `skymoe selfcheck` runs after install, so a miscompiled kernel is caught before a training run.
 */
import { type Backend, GroupedMode } from './backend.js';
import { JsBackend } from './js/index.js';

export interface CheckResult {
  name: string;
  maxRelErr: number;
  ok: boolean;
}

type Buf = { ptr: number; n: number };

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

/** Run the same kernel program on `be` and on js; compare the named outputs. */
function compare(name: string, be: Backend, ref: Backend, program: (b: Backend, alloc: (n: number, seed?: number) => Buf) => Buf[], tol: number): CheckResult {
  const run = (b: Backend) => {
    const owned: number[] = [];
    const alloc = (n: number, seed?: number): Buf => {
      const ptr = b.alloc(4 * Math.max(1, n));
      owned.push(ptr);
      b.write(ptr, seed === undefined ? new Float32Array(n) : rand(n, seed));
      return { ptr, n };
    };
    const outs = program(b, alloc).map((o) => b.readF32(o.ptr, o.n));
    for (const p of owned) b.free(p);
    return outs;
  };
  const got = run(be);
  const want = run(ref);
  let maxRelErr = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!, w = want[i]!;
    let scale = 1e-6;
    for (const v of w) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < g.length; j++) maxRelErr = Math.max(maxRelErr, Math.abs(g[j]! - w[j]!) / scale);
    if (g.some(Number.isNaN)) maxRelErr = Infinity;
  }
  return { name, maxRelErr, ok: maxRelErr <= tol };
}

export function selfcheck(be: Backend): CheckResult[] {
  const ref = new JsBackend();
  const results: CheckResult[] = [];
  for (const [m, k, n] of [[67, 129, 95], [1, 300, 257], [128, 64, 33]] as const) {
    for (const ta of [false, true])
      for (const tb of [false, true]) {
        results.push(
          compare(`matmul ${m}x${k}x${n}${ta ? ' tA' : ''}${tb ? ' tB' : ''}`, be, ref, (b, alloc) => {
            const a = alloc(m * k, 1), bb = alloc(k * n, 2), c = alloc(m * n, 3);
            b.kernels.matmul(a.ptr, bb.ptr, c.ptr, m, k, n, ta, tb, 1, 0, 0, 0, 1);
            return [c];
          }, 1e-4),
        );
      }
  }
  const offsets = Int32Array.from([0, 37, 37, 100, 161]);
  results.push(
    compare('groupedMatmul fwd/bwd', be, ref, (b, alloc) => {
      const N = 161, M = 48, K = 40, G = 4;
      const x = alloc(N * K, 4), w = alloc(G * M * K, 5), y = alloc(N * M), dx = alloc(N * K), dw = alloc(G * M * K);
      b.kernels.groupedMatmul(GroupedMode.XWt, x.ptr, w.ptr, y.ptr, offsets, M, K, 0);
      b.kernels.groupedMatmul(GroupedMode.XW, y.ptr, w.ptr, dx.ptr, offsets, M, K, 0);
      b.kernels.groupedMatmul(GroupedMode.AtB, y.ptr, x.ptr, dw.ptr, offsets, M, K, 0);
      return [y, dx, dw];
    }, 1e-4),
  );
  results.push(
    compare('attention fwd/bwd', be, ref, (b, alloc) => {
      const B = 2, T = 77, H = 4, Hkv = 2, D = 16;
      const q = alloc(B * T * H * D, 6), k = alloc(B * T * Hkv * D, 7), v = alloc(B * T * Hkv * D, 8);
      const o = alloc(B * T * H * D), lse = alloc(B * H * T), dout = alloc(B * T * H * D, 9);
      const dq = alloc(B * T * H * D), dk = alloc(B * T * Hkv * D), dv = alloc(B * T * Hkv * D);
      b.kernels.attention(q.ptr, k.ptr, v.ptr, o.ptr, lse.ptr, B, T, T, H, Hkv, D, T * Hkv * D, 0, 0.25);
      b.kernels.attentionBackward(q.ptr, k.ptr, v.ptr, o.ptr, lse.ptr, dout.ptr, dq.ptr, dk.ptr, dv.ptr, B, T, T, H, Hkv, D, T * Hkv * D, 0, 0.25);
      return [o, dq, dk, dv];
    }, 1e-3),
  );
  results.push(
    compare('rmsnorm fwd/bwd', be, ref, (b, alloc) => {
      const R = 33, C = 131;
      const x = alloc(R * C, 10), w = alloc(C, 11), y = alloc(R * C), rs = alloc(R), dy = alloc(R * C, 12), dx = alloc(R * C), dw = alloc(C);
      b.kernels.rmsnorm(x.ptr, w.ptr, y.ptr, rs.ptr, R, C, 1e-6);
      b.kernels.rmsnormBackward(x.ptr, w.ptr, rs.ptr, dy.ptr, dx.ptr, dw.ptr, R, C);
      return [y, dx, dw];
    }, 1e-4),
  );
  results.push(
    compare('softmax + swiglu', be, ref, (b, alloc) => {
      const R = 9, C = 1001;
      const x = alloc(R * C, 13), y = alloc(R * C), u = alloc(R * C, 14), s = alloc(R * C);
      b.kernels.softmax(x.ptr, y.ptr, R, C);
      b.kernels.swiglu(x.ptr, u.ptr, s.ptr, R * C);
      return [y, s];
    }, 1e-4),
  );
  results.push(
    compare('scatterRows + pagedAttention', be, ref, (b, alloc) => {
      // Two sequences in blocks of 4 laid out out of order: a 5-row prefill chunk of one and a
      // decode row of the other, H = 4 over Hkv = 2 heads of 16.
      const H = 4, Hkv = 2, D = 16, bs = 4, blocks = 6, slots = blocks * bs;
      const kc = alloc(slots * Hkv * D, 15), vc = alloc(slots * Hkv * D, 16);
      const n = 6, q = alloc(n * H * D, 17), o = alloc(n * H * D), newK = alloc(n * Hkv * D, 18);
      const ids = b.alloc(4 * n);
      b.write(ids, Int32Array.from([20, 21, 22, 23, 8, 13]));
      b.kernels.scatterRows(newK.ptr, ids, kc.ptr, n, Hkv * D);
      b.free(ids);
      const tables = Int32Array.from([3, 5, 2, 0]);
      b.kernels.pagedAttention(q.ptr, kc.ptr, vc.ptr, o.ptr, n, H, Hkv, D, 0.25, bs, Int32Array.from([0, 0, 0, 0, 0, 1]), Int32Array.from([3, 4, 5, 6, 7, 6]), tables, 2);
      return [kc, o];
    }, 1e-4),
  );
  return results;
}
