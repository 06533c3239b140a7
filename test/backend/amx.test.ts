/**
 * bf16 compute on Intel AMX (native backend, compute: 'bf16'): the serving engine's row-invariant
 * products with bf16 and float8_e4m3 weights round the activations to bf16 and accumulate the
 * products in fp32 (TDPBF16PS). Checked against an independent float64 reference (the js
 * backend's decoded weights, the activations rounded to bf16 here), for row counts across the
 * 16-row tiles and 64-row blocks, k and n off the tile sizes, per-tensor and per-row scales; and
 * row invariance: every row of an m-row call, of a grouped call with groups of any size, and of a
 * 2-thread backend is bit for bit the row alone. Weights in f32 and f16 keep the fp32 path.
 * On a machine without AMX-BF16, the backend refuses compute=bf16 by name instead.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Backend, WeightDType, WeightTable } from '../../src/backend/backend.js';
import { JsBackend } from '../../src/backend/js/index.js';
import { createNativeBackend, nativeInfo } from '../../src/backend/native/index.js';
import { randomArray } from '../helpers.js';
import { type Case, f32In, linearOn, makeCase, place } from './weight-cases.js';

function amxBackend(threads = 2): Backend | null {
  if (!nativeInfo().available) return null;
  try {
    return createNativeBackend({ threads, compute: 'bf16' });
  } catch {
    return null;
  }
}
const probe = amxBackend(1);
const HAS_AMX = probe !== null;
void probe?.dispose();
const NO_AMX = HAS_AMX ? false : 'this machine has no AMX-BF16 (or no native addon)';

const bf16 = (v: number) => {
  const f = new Float32Array([v]), u = new Uint32Array(f.buffer);
  u[0] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000;
  return f[0]!;
};

/** The weight's real values [n, k] decoded by the js backend. */
function decoded(c: Case, n: number, k: number): Float32Array {
  const js = new JsBackend();
  const w = place(js, c.bytes, c.dtype, c.scale, c.rowScale);
  const out = f32In(js, new Float32Array(n * k));
  js.kernels.dequantize(w.ref, out, n, k);
  return js.readF32(out, n * k);
}

/** |got - ref| within fp32 accumulation of the bf16 products (relative to the sum of |terms|). */
function checkAgainstReference(got: Float32Array, x: Float32Array, w: Float32Array, m: number, k: number, n: number, what: string): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, mag = 0;
      for (let p = 0; p < k; p++) {
        const t = bf16(x[i * k + p]!) * w[j * k + p]!;
        s += t;
        mag += Math.abs(t);
      }
      const g = got[i * n + j]!;
      assert.ok(Math.abs(g - s) <= 2e-6 * mag + 1e-30, `${what}: y[${i}, ${j}] = ${g}, reference ${s} (magnitude ${mag})`);
    }
  }
}

const same = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

test('compute=bf16 on AMX: linearW with bf16 and fp8 weights equals a float64 reference of the bf16-rounded activations', { skip: NO_AMX }, async () => {
  const be = amxBackend()!;
  try {
    let seed = 3;
    for (const dtype of [WeightDType.BF16, WeightDType.F8E4M3]) {
      for (const [m, k, n] of [[1, 64, 32], [3, 40, 20], [16, 96, 48], [17, 1000, 50], [70, 128, 33]] as const) {
        for (const scaling of ['none', 'both'] as const) {
          const c = makeCase(dtype, n, k, scaling);
          const x = randomArray(m * k, seed++, 2);
          const y = linearOn(be, c, x, m, k, n, 0, true);
          checkAgainstReference(y, x, decoded(c, n, k), m, k, n, `${dtype === WeightDType.BF16 ? 'bf16' : 'fp8'} m=${m} k=${k} n=${n} ${scaling}`);
        }
      }
    }
  } finally {
    await be.dispose();
  }
});

test('compute=bf16 is row-invariant: each row of m = 2..70, of grouped calls and of 1 or 2 threads is the row alone, bit for bit', { skip: NO_AMX }, async () => {
  const two = amxBackend(2)!, one = amxBackend(1)!;
  try {
    const k = 200, n = 52;
    for (const dtype of [WeightDType.BF16, WeightDType.F8E4M3]) {
      const c = makeCase(dtype, n, k, 'row');
      const x = randomArray(70 * k, 77, 1);
      const alone = Array.from({ length: 70 }, (_, i) => linearOn(one, c, x.subarray(i * k, (i + 1) * k), 1, k, n, 0, true));
      for (const m of [2, 16, 17, 64, 70]) {
        for (const be of [one, two]) {
          const y = linearOn(be, c, x.subarray(0, m * k), m, k, n, 4, true);
          for (let i = 0; i < m; i++) assert.ok(same(y.subarray(i * n, (i + 1) * n), alone[i]!), `dtype ${dtype} m=${m} threads=${be.threads}: row ${i}`);
        }
      }
      // grouped: 4 experts with rows 0, 5, 17, 3 (the same weight in each, so rows compare with `alone`)
      const sizes = [0, 5, 17, 3], off = Int32Array.from([0, 0, 5, 22, 25]);
      for (const be of [one, two]) {
        const w = place(be, c.bytes, c.dtype, c.scale, c.rowScale);
        const table = new WeightTable(sizes.map(() => w.ref));
        const xp = f32In(be, x.subarray(0, 25 * k)), yp = f32In(be, new Float32Array(25 * n));
        be.kernels.groupedLinearW(xp, table, yp, off, n, k, true);
        const y = be.readF32(yp, 25 * n);
        for (let i = 0; i < 25; i++) assert.ok(same(y.subarray(i * n, (i + 1) * n), alone[i]!), `grouped dtype ${dtype} threads=${be.threads}: row ${i}`);
        be.free(xp), be.free(yp), w.free();
      }
    }
  } finally {
    await two.dispose();
    await one.dispose();
  }
});

test('compute=bf16 leaves f32 and f16 weights on the fp32 path', { skip: NO_AMX }, async () => {
  const amx = amxBackend()!, plain = createNativeBackend({ threads: 2 });
  try {
    assert.equal(amx.describe().includes('compute=bf16'), true);
    assert.equal(plain.describe().includes('compute=bf16'), false);
    for (const dtype of [WeightDType.F32, WeightDType.F16]) {
      const c = makeCase(dtype, 40, 96, 'tensor');
      const x = randomArray(9 * 96, 5, 1);
      assert.ok(same(linearOn(amx, c, x, 9, 96, 40, 0, true), linearOn(plain, c, x, 9, 96, 40, 0, true)), `dtype ${dtype}`);
    }
  } finally {
    await amx.dispose();
    await plain.dispose();
  }
});

test('a compute other than f32 or bf16 is refused naming it; without AMX, bf16 is refused naming AMX', { skip: nativeInfo().available ? false : 'no native addon' }, () => {
  assert.throws(() => createNativeBackend({ compute: 'fp16' as never }), /compute=fp16: expected f32 or bf16/);
  if (!HAS_AMX) assert.throws(() => createNativeBackend({ compute: 'bf16' }), /compute=bf16 needs Intel AMX-BF16/);
});

test('the serving engine with compute=bf16 on a bf16 model: requests together give each request alone\'s tokens and logprobs bit for bit', { skip: NO_AMX, timeout: 60_000 }, async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { saveModel, loadModel } = await import('../../src/io/hf.js');
  const { Engine } = await import('../../src/infer/engine.js');
  const { DEFAULT_PARAMS } = await import('../../src/infer/types.js');
  const { trainBpe } = await import('../../src/io/tokenizer/index.js');
  const { preset } = await import('../../src/model/presets.js');
  const { SkyworkMoE } = await import('../../src/model/skywork-moe.js');
  const T = await import('../../src/tensor/index.js');
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-amx-'));
  const be = amxBackend()!;
  T.setBackend(be);
  try {
    const whole = SkyworkMoE.create({ ...preset('tiny'), initializerRange: 0.1 }, { seed: 4, backend: be });
    saveModel(whole, dir, { dtype: 'BF16' });
    whole.dispose();
    const model = loadModel(dir, be, { dtype: 'auto' });
    const tok = trainBpe(['Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about.'], { vocabSize: 300 });
    const reqs = Array.from({ length: 10 }, (_, i) => ({
      id: `r${i}`,
      prompt: Array.from({ length: 2 + ((i * 5) % 19) }, (_, j) => (i * 17 + j * 29 + 1) % 300),
      params: { ...DEFAULT_PARAMS, temperature: i % 3 === 0 ? 0 : 0.9, seed: 10 + i, maxTokens: 5 + (i % 4), logprobs: true, topLogprobs: 2, ignoreEos: true },
    }));
    const run = (e: InstanceType<typeof Engine>, rs: typeof reqs) => {
      const out = new Map<string, { ids: number[]; lps: number[] }>();
      for (const r of rs) e.add(r);
      while (e.hasWork()) {
        for (const ev of e.step()) {
          if (ev.type === 'error') throw new Error(ev.message);
          if (ev.type !== 'tokens') continue;
          const c = out.get(ev.requestId) ?? { ids: [], lps: [] };
          out.set(ev.requestId, c);
          c.ids.push(...ev.ids);
          c.lps.push(...(ev.logprobs ?? []).map((l) => l.logprob));
        }
      }
      return out;
    };
    const alone = new Map<string, { ids: number[]; lps: number[] }>();
    for (const r of reqs) {
      const e = new Engine(model, tok, { kvCacheBytes: 1 << 22 });
      for (const [k, v] of run(e, [r])) alone.set(k, v);
      e.dispose();
    }
    const e = new Engine(model, tok, { kvCacheBytes: 1 << 22, maxBatchedTokens: 16 });
    const together = run(e, [...reqs].reverse());
    e.dispose();
    for (const [k, a] of alone) {
      const b = together.get(k)!;
      assert.deepEqual(b.ids, a.ids, `${k} ids`);
      assert.ok(b.lps.length === a.lps.length && b.lps.every((v, i) => Object.is(v, a.lps[i])), `${k} logprobs bit for bit`);
    }
    model.dispose();
  } finally {
    await be.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
