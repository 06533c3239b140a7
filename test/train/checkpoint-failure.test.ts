/**
 * A checkpoint save that fails part way (here: an optimizer moment that cannot be read, as a full
 * disk fails a write) leaves no temp directory, keeps latest.json on the last good checkpoint,
 * and names what failed; a temp directory of a save whose process died (kill -9) is removed by
 * the next save, one of a live process is not.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsBackend } from '../../src/backend/js/index.js';
import { trainBpe } from '../../src/io/tokenizer/index.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { CheckpointError, checkpointRoot, saveCheckpoint, STATE_VERSION, type TrainerState } from '../../src/train/checkpoint.js';
import { AdamW } from '../../src/train/optimizer.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-ckptfail-'));
after(() => rmSync(work, { recursive: true, force: true }));

const state = (step: number): TrainerState => ({ version: STATE_VERSION, step, tokensSeen: 0, adamStep: 0, dataRng: { s: [1, 2, 3, 4], spare: null }, controller: null, warnings: null, optionsHash: 'x' });

test('a failed save leaves no temp directory and the last good checkpoint latest; dead savers\' temps are cleaned', async () => {
  const be = new JsBackend();
  const model = SkyworkMoE.create(preset('tiny'), { seed: 1, backend: be });
  const tok = trainBpe(['Call me Ishmael. Some years ago.'], { vocabSize: 300 });
  const opt = new AdamW(model.parameters());
  const run = join(work, 'run');
  await saveCheckpoint(run, model, tok, opt, state(1), 3);
  const root = checkpointRoot(run);
  const latest = readFileSync(join(root, 'latest.json'), 'utf8');

  // A temp directory of a dead process (a pid that cannot exist) and one of this live process's parent.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  mkdirSync(join(root, `step-000009.tmp-${dead}`));
  mkdirSync(join(root, `step-000009.tmp-${process.ppid}`));

  // Break the save half way: the optimizer's moments are written after the model and tokenizer.
  opt.m.values().next().value!.dispose();
  await assert.rejects(saveCheckpoint(run, model, tok, opt, state(2), 3), (e: Error) => e instanceof CheckpointError && /saving step 2 .* failed, the checkpoint of latest.json is untouched/.test(e.message));
  const left = readdirSync(root).sort();
  assert.deepEqual(left, ['latest.json', 'step-000001', `step-000009.tmp-${process.ppid}`], 'no temp of the failed save, the dead one removed, the live one kept');
  assert.equal(readFileSync(join(root, 'latest.json'), 'utf8'), latest);
  model.dispose();
});
