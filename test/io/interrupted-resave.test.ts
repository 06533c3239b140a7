/**
 * An interrupted re-save over a checkpoint another tool wrote (a Hugging Face index carries no
 * skymoe save id): the new shards that reached the disk before the index did are detected on
 * load instead of mixing silently with the old ones.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsError, writeSafetensors } from '../../src/io/safetensors.js';
import { openCheckpoint, SAVE_ID_KEY } from '../../src/io/sharded.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-resave-'));
after(() => rmSync(work, { recursive: true, force: true }));

const t = (name: string, v: number) => ({ name, dtype: 'F32' as const, shape: [2], data: Float32Array.of(v, v) });

test('a skymoe shard under a Hugging Face index (no save id) is refused naming the shard', () => {
  const dir = join(work, 'hf');
  mkdirSync(dir);
  // As Hugging Face writes it: shards and an index, none with a save id.
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [t('a', 1)], { format: 'pt' });
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [t('b', 2)], { format: 'pt' });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 16 }, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
  const ok = openCheckpoint(dir);
  assert.deepEqual(Array.from(ok.readF32('b')), [2, 2], 'the untouched checkpoint loads');
  ok.close();
  // A skymoe save over it wrote its first shard, then died before the index.
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [t('a', 9)], { format: 'pt', [SAVE_ID_KEY]: 'abcd1234abcd1234' });
  const ck = openCheckpoint(dir);
  try {
    assert.throws(() => ck.readF32('a'), (e: Error) => e instanceof SafetensorsError && /model-00001-of-00002\.safetensors/.test(e.message) && /skymoe save abcd1234abcd1234 .* has no save id/.test(e.message));
  } finally {
    ck.close();
  }
});
