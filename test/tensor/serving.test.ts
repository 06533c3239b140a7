/**
 * The tensor ops a continuous-batching server needs: scatterRows into a kept cache (validation,
 * in-place write).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { randomArray } from '../helpers.js';

const js = new JsBackend();

function throwsNaming(fn: () => unknown, ...parts: string[]) {
  assert.throws(fn, (e: Error) => {
    for (const p of parts) assert.ok(e.message.includes(p), `'${e.message}' should mention '${p}'`);
    return true;
  });
}

test('scatterRows writes rows of src into a kept tensor at the ids and refuses bad ids and shapes', () => {
  T.setBackend(js);
  const cache = T.keep(T.tensor(randomArray(6 * 2 * 3, 1), [6, 2, 3]));
  const before = cache.toFloat32();
  T.tidy(() => {
    const src = T.tensor(randomArray(2 * 2 * 3, 2), [2, 2, 3]);
    T.scatterRows(cache, src, T.tensor(Int32Array.of(4, 1), [2], 'i32'));
    const want = before.slice();
    want.set(src.toFloat32().subarray(0, 6), 4 * 6);
    want.set(src.toFloat32().subarray(6), 1 * 6);
    assert.deepEqual(cache.toFloat32(), want);
    throwsNaming(() => T.scatterRows(cache, src, T.tensor(Int32Array.of(4, 6), [2], 'i32')), 'scatterRows', 'ids[1] = 6', '[0, 6)');
    throwsNaming(() => T.scatterRows(cache, src, T.tensor(Int32Array.of(3, 3), [2], 'i32')), 'scatterRows', 'ids[1] = 3 repeats');
    throwsNaming(() => T.scatterRows(cache, src, T.tensor(Int32Array.of(3), [1], 'i32')), 'scatterRows', '1 ids', '[2,2,3]');
    throwsNaming(() => T.scatterRows(cache, T.zeros([2, 3, 2]), T.tensor(Int32Array.of(0, 1), [2], 'i32')), 'scatterRows', '[2,3,2]', '[6,2,3]');
    throwsNaming(() => T.scatterRows(cache, src, T.zeros([2])), 'scatterRows', 'ids must be an i32');
  });
  cache.dispose();
});
