/**
 * Saving a model into a directory keeps the files it did not make: an old index naming
 * keep.safetensors (the reproduction: `skymoe init --out D` deleted it) leaves it in
 * place; the old checkpoint's own shards (model-NNNNN-of-NNNNN.safetensors) are replaced.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const work = mkdtempSync(join(tmpdir(), 'skymoe-keep-'));
after(() => rmSync(work, { recursive: true, force: true }));
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test("a save over a directory deletes only the files skymoe's writer names, never a file an old index points at", () => {
  const dir = join(work, 'D');
  mkdirSync(dir);
  writeFileSync(join(dir, 'keep.safetensors'), 'x\n');
  writeFileSync(join(dir, 'model-00001-of-00002.safetensors'), 'old shard\n');
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: { a: 'keep.safetensors', b: 'model-00001-of-00002.safetensors' } }));
  const r = spawnSync(process.execPath, [main, 'init', '--preset', 'tiny', '--out', dir], { encoding: 'utf8', env: { ...process.env, SKYMOE_BACKEND: 'js' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(join(dir, 'keep.safetensors'), 'utf8'), 'x\n', 'keep.safetensors is untouched');
  assert.ok(!existsSync(join(dir, 'model-00001-of-00002.safetensors')), 'the old checkpoint shard is replaced');
  assert.ok(!existsSync(join(dir, 'model.safetensors.index.json')), 'the old index is gone (the tiny model is one file)');
  assert.ok(existsSync(join(dir, 'model.safetensors')));
});
