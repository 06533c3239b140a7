/** Garbage in: the reader fails with SafetensorsError (or succeeds), never anything else, never hangs. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { openSafetensors, SafetensorsError, writeSafetensors } from '../../src/io/index.js';
import { handMade, tempDir } from './fixtures.js';

const { dir, cleanup } = tempDir();
after(cleanup);
const path = join(dir, 'fuzz.safetensors');

/** Open and read every tensor every way; return 'ok' or the SafetensorsError; rethrow anything else. */
function exercise(bytes: Uint8Array): 'ok' | SafetensorsError {
  writeFileSync(path, bytes);
  let r;
  try {
    r = openSafetensors(path);
  } catch (e) {
    if (e instanceof SafetensorsError) return e;
    throw e;
  }
  try {
    for (const name of r.names()) {
      r.info(name);
      r.readRaw(name);
      for (const read of [() => r.readF32(name), () => r.readInt(name), () => r.readI64(name)]) {
        try {
          read();
        } catch (e) {
          if (!(e instanceof SafetensorsError)) throw e;
        }
      }
    }
    return 'ok';
  } finally {
    r.close();
  }
}

function validFile(): Uint8Array {
  const p = join(dir, 'valid.safetensors');
  writeSafetensors(
    p,
    [
      { name: 'a', dtype: 'BF16', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      { name: 'b', dtype: 'I64', shape: [2], data: new Int32Array([7, -8]) },
      { name: 'c', dtype: 'F8_E4M3', shape: [3], data: new Float32Array([0.5, -1, 448]) },
    ],
    { format: 'pt' },
  );
  return new Uint8Array(readFileSync(p));
}

const TIMEOUT = { timeout: 120_000 };

test('random bytes', TIMEOUT, () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      exercise(bytes);
    }),
    { numRuns: 300 },
  );
});

test('random bytes after a plausible length prefix', TIMEOUT, () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.bigInt({ min: 0n, max: 300n }), (body, n) => {
      const bytes = new Uint8Array(8 + body.length);
      new DataView(bytes.buffer).setBigUint64(0, n, true);
      bytes.set(body, 8);
      exercise(bytes);
    }),
    { numRuns: 300 },
  );
});

test('random truncation of a valid file', TIMEOUT, () => {
  const valid = validFile();
  assert.equal(exercise(valid), 'ok');
  for (let n = 0; n < valid.length; n++) {
    const res = exercise(valid.subarray(0, n));
    assert.ok(res instanceof SafetensorsError, `truncation to ${n} bytes was accepted`);
    assert.ok(res.message.includes(path));
  }
});

test('random byte flips in a valid file', TIMEOUT, () => {
  const valid = validFile();
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (flips) => {
      const bytes = valid.slice();
      for (const [i, v] of flips) bytes[i] = v;
      exercise(bytes);
    }),
    { numRuns: 500 },
  );
});

test('random structural header mutations', TIMEOUT, () => {
  const base: Record<string, unknown> = {
    __metadata__: { format: 'pt' },
    a: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 12] },
    b: { dtype: 'I64', shape: [2], data_offsets: [12, 28] },
  };
  const field = fc.constantFrom('dtype', 'shape', 'data_offsets', '__metadata__', 'extra');
  const value = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom('F32', 'BF16', 'I64', 'F8_E5M2', 'BOOL', 'U16'),
    fc.array(fc.integer({ min: -2, max: 40 }), { maxLength: 3 }),
    fc.array(fc.oneof(fc.double(), fc.bigInt({ min: 0n, max: 2n ** 70n }).map(Number)), { maxLength: 3 }),
  );
  fc.assert(
    fc.property(fc.constantFrom('a', 'b', '__metadata__', 'c'), field, value, fc.integer({ min: 0, max: 40 }), (tensor, key, v, dataLen) => {
      const header = structuredClone(base);
      if (key === '__metadata__' || tensor === '__metadata__') header.__metadata__ = v;
      else header[tensor] = { ...(header[tensor] as object), [key]: v };
      exercise(handMade(header, new Uint8Array(dataLen)));
    }),
    { numRuns: 1000 },
  );
});

const DTYPE_SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/**
 * Whole headers that are valid JSON with consistent offsets by default, each field sometimes
 * hostile: unknown or oddly cased dtypes, zero, huge, negative or fractional dimensions, offsets
 * swapped, overlapping, gapped or past the end, names that collide with __metadata__, metadata
 * values that are not strings, a data buffer a few bytes short or long. Most files get past the
 * length and JSON checks, so the per-tensor and tiling checks and the reads are what is fuzzed.
 */
const hostileHeader = fc
  .record({
    tensors: fc.array(
      fc.record({
        name: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('', 'a', 'model.layers.0.mlp.up_proj.weight', 'ü名', 'x'.repeat(300))),
        dtype: fc.oneof(
          { weight: 8, arbitrary: fc.constantFrom(...Object.keys(DTYPE_SIZE)) },
          { weight: 1, arbitrary: fc.constantFrom<unknown>('f32', '', 'F4', 'U16', 'Q8_0', 7, null, ['F32']) },
        ),
        shape: fc.oneof(
          { weight: 8, arbitrary: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }) },
          { weight: 1, arbitrary: fc.array(fc.constantFrom<unknown>(-1, 1.5, 2 ** 31, 2 ** 53, 2 ** 60, '3', null), { minLength: 1, maxLength: 3 }) },
        ),
        offsets: fc.oneof(
          { weight: 8, arbitrary: fc.constant('consistent' as const) },
          { weight: 1, arbitrary: fc.constantFrom('swapped' as const, 'overlap' as const, 'gap' as const, 'past-end' as const, 'negative' as const, 'float' as const, 'huge' as const, 'one' as const) },
        ),
      }),
      { maxLength: 5 },
    ),
    metadata: fc.oneof(
      { weight: 6, arbitrary: fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 'pt', [], { format: 1 }, { a: { b: 'c' } }) },
      { weight: 1, arbitrary: fc.constant(undefined) },
    ),
    slack: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
  })
  .map(({ tensors, metadata, slack }) => {
    const header: Record<string, unknown> = {};
    if (metadata !== undefined) header.__metadata__ = metadata;
    let pos = 0;
    const seen = new Set<string>();
    for (const t of tensors) {
      while (seen.has(t.name) || t.name === '__metadata__') t.name += '#';
      seen.add(t.name);
      const size = typeof t.dtype === 'string' && DTYPE_SIZE[t.dtype] ? DTYPE_SIZE[t.dtype]! : 4;
      const n = (t.shape as unknown[]).reduce<number>((p, d) => p * (typeof d === 'number' && d >= 0 && d < 1e6 ? d : 1), 1) * size;
      let offs: unknown = [pos, pos + n];
      if (t.offsets === 'swapped') offs = [pos + n + 1, pos];
      else if (t.offsets === 'overlap') offs = [Math.max(0, pos - 1), Math.max(0, pos - 1) + n];
      else if (t.offsets === 'gap') offs = [pos + 1, pos + 1 + n];
      else if (t.offsets === 'past-end') offs = [pos, pos + n + 1000];
      else if (t.offsets === 'negative') offs = [-4, pos + n];
      else if (t.offsets === 'float') offs = [pos + 0.5, pos + n + 0.5];
      else if (t.offsets === 'huge') offs = [pos, 2 ** 60];
      else if (t.offsets === 'one') offs = [pos];
      header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: offs };
      // a gap or an overlap shifts the tensors after it too, so it is the file's only fault
      pos = t.offsets === 'gap' || t.offsets === 'overlap' ? (offs as number[])[1]! : pos + n;
    }
    return { header, dataLength: Math.max(0, pos + slack) };
  });

/** The safetensors rules, written out from the format's description: the oracle for the reader's verdict. */
function validBySpec(header: Record<string, unknown>, dataLength: number): boolean {
  const isInt = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
  const spans: [number, number][] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) return false;
      continue;
    }
    const e = v as { dtype: unknown; shape: unknown; data_offsets: unknown };
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_SIZE)) return false;
    if (!Array.isArray(e.shape) || !e.shape.every(isInt)) return false;
    const o = e.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !o.every(isInt) || o[0] > o[1] || o[1] > dataLength) return false;
    if (e.shape.reduce((p: bigint, d: number) => p * BigInt(d), 1n) * BigInt(DTYPE_SIZE[e.dtype]!) !== BigInt(o[1] - o[0])) return false;
    spans.push([o[0], o[1]]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let pos = 0;
  for (const [b, e] of spans) {
    if (b !== pos) return false;
    pos = e;
  }
  return pos === dataLength;
}

test('structure-aware: valid JSON headers with hostile fields reach every check, and what is accepted reads back whole', TIMEOUT, () => {
  let accepted = 0, rejected = 0, total = 0;
  fc.assert(
    fc.property(hostileHeader, ({ header, dataLength }) => {
      total++;
      const data = Uint8Array.from({ length: dataLength }, (_, i) => (i * 37) & 0xff);
      const res = exercise(handMade(header, data));
      assert.equal(res === 'ok', validBySpec(header, dataLength), `verdict ${res === 'ok' ? 'accepted' : res.message} for ${JSON.stringify(header)} with ${dataLength} data bytes`);
      if (res !== 'ok') {
        rejected++;
        assert.ok(res.message.startsWith(path), res.message);
        return;
      }
      accepted++;
      // Accepted: every tensor reads back exactly its declared bytes.
      const r = openSafetensors(path);
      try {
        for (const name of r.names()) {
          const info = r.info(name);
          assert.equal(r.readRaw(name).length, info.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[info.dtype]!, name);
        }
      } finally {
        r.close();
      }
    }),
    { numRuns: 1500, seed: 42 },
  );
  // The generator must get past the cheap checks often, and must also hit the faults.
  assert.ok(accepted > 0.25 * total, `only ${accepted} of ${total} files were accepted`);
  assert.ok(rejected > 0.25 * total, `only ${rejected} of ${total} files were rejected`);
  if (process.env.SKYMOE_FUZZ_REPORT) console.log(`structure-aware fuzz: ${accepted} accepted, ${rejected} rejected of ${total}`);
});
