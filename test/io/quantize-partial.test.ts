/**
 * `quantize` that fails after its weights could have been written (here: a source tokenizer file
 * that cannot be read, as a full disk fails the last copies) leaves nothing of its output in a new
 * directory, and a previous output in the directory byte for byte as it was, not new weights beside
 * an old config (issue 12). campaign/disk-full.ts does the same on a full tmpfs.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { JsBackend } from '../../src/backend/js/index.js';
import { saveModel } from '../../src/io/hf.js';
import { saveTokenizer, trainBpe } from '../../src/io/tokenizer/index.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { quantizeCheckpoint } from '../../src/quant/quantize.js';
import { tempDir } from './fixtures.js';

const { dir, cleanup } = tempDir('skymoe-qpartial-');
after(cleanup);

function files(d: string): Record<string, string> {
  return Object.fromEntries(readdirSync(d).sort().map((f) => [f, readFileSync(join(d, f)).toString('base64')]));
}

test('a quantize that fails late leaves no partial output and the previous output intact', async () => {
  const src = join(dir, 'src');
  const model = SkyworkMoE.create(preset('tiny'), { seed: 2, backend: new JsBackend() });
  saveModel(model, src);
  model.dispose();
  await saveTokenizer(src, trainBpe(['Call me Ishmael. Some years ago, never mind how long precisely.'], { vocabSize: 300 }));
  const broken = join(dir, 'broken');
  cpSync(src, broken, { recursive: true });
  rmSync(join(broken, 'tokenizer_config.json'));
  mkdirSync(join(broken, 'tokenizer_config.json')); // unreadable as a file: fails after the config, before the end

  const fresh = join(dir, 'fresh');
  assert.throws(() => quantizeCheckpoint(broken, fresh, { to: 'fp8' }), /tokenizer_config\.json/);
  assert.equal(existsSync(fresh), false, 'the directory this call made is gone');

  const previous = join(dir, 'previous');
  quantizeCheckpoint(src, previous, { to: 'bf16' });
  const before = files(previous);
  assert.throws(() => quantizeCheckpoint(broken, previous, { to: 'fp8' }), /tokenizer_config\.json/);
  assert.deepEqual(files(previous), before, 'the previous bf16 output, byte for byte, no temp');
});
