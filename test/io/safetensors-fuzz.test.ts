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
