/**
 * Hostile file contents the reliability issue found escaping as the wrong error: a safetensors
 * header nested deeper than the stack is a SafetensorsError (not a RangeError); an optimizer
 * state whose adam_step is not plain decimal digits ("", "0x10", "1e3", "-1") is a CheckpointError
 * (Number() would read "" as 0 and "0x10" as 16).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsBackend } from '../../src/backend/js/index.js';
import { openSafetensors, SafetensorsError, writeSafetensors } from '../../src/io/safetensors.js';
import { CheckpointError, loadOptimizer } from '../../src/train/checkpoint.js';
import { AdamW } from '../../src/train/optimizer.js';
import * as T from '../../src/tensor/index.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-hostile-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('a safetensors header nested 100,000 deep is a SafetensorsError naming the file', () => {
  const header = '{"a":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}';
  const buf = Buffer.alloc(8 + header.length);
  buf.writeBigUInt64LE(BigInt(header.length));
  buf.write(header, 8);
  const path = join(work, 'deep.safetensors');
  writeFileSync(path, buf);
  assert.throws(() => openSafetensors(path), (e: Error) => e instanceof SafetensorsError && e.message.includes(path) && /deeply nested/.test(e.message));
});

test("adam_step must be plain decimal digits", () => {
  const be = new JsBackend();
  const p = T.parameter(T.zeros([2, 3], 'f32', be), 'w');
  const zeros = { name: '', dtype: 'F32' as const, shape: [2, 3], data: new Float32Array(6) };
  for (const bad of ['', '0x10', '1e3', '-1', ' 7', '12abc']) {
    const dir = join(work, `opt-${encodeURIComponent(bad) || 'empty'}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeSafetensors(join(dir, 'optimizer.safetensors'), [{ ...zeros, name: 'm.w' }, { ...zeros, name: 'v.w' }], { adam_step: bad, adam_param_steps: '{}' });
    const opt = new AdamW([p]);
    assert.throws(() => loadOptimizer(dir, opt), (e: Error) => e instanceof CheckpointError && e.message.includes(`adam_step`) && e.message.includes(JSON.stringify(bad)), `adam_step ${JSON.stringify(bad)}`);
  }
  const ok = join(work, 'opt-ok');
  mkdirSync(ok, { recursive: true });
  writeSafetensors(join(ok, 'optimizer.safetensors'), [{ ...zeros, name: 'm.w' }, { ...zeros, name: 'v.w' }], { adam_step: '16', adam_param_steps: '{}' });
  const opt = new AdamW([p]);
  loadOptimizer(ok, opt);
  assert.equal(opt.step, 16);
});
