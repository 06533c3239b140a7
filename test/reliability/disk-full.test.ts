/**
 * The fast part of the disk-full campaign (issue 12, campaign/disk-full.ts), each case on a tmpfs
 * in a private mount namespace: `skymoe train` whose second checkpoint does not fit and one whose
 * metrics.jsonl does not; `skymoe quantize --to fp8/bf16` into a fresh directory and over a
 * previous output. Each fails with an error naming the file and "no space left on device", leaves
 * no temp file, no lock and no partial output, keeps the last good checkpoint (a resume once space
 * is back finishes with the uninterrupted run's losses) or the previous output byte for byte.
 * Skipped where no tmpfs can be mounted in a private namespace (not root, no unshare).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskFull, unsharePrefix } from '../../campaign/disk-full.js';

test('disk full: train and quantize fail clearly, leave no temp or partial files, keep the last good state', async (t) => {
  if (!unsharePrefix()) {
    t.skip('cannot mount a tmpfs in a private mount namespace here');
    return;
  }
  const workDir = mkdtempSync(join(tmpdir(), 'skymoe-diskfull-'));
  const log: string[] = [];
  try {
    const lines = await diskFull({ seed: 3, scale: 2 / 24, log: (m) => log.push(m), workDir });
    const why = `${JSON.stringify(lines)}\n${log.join('\n')}`;
    assert.deepEqual(lines.map((l) => l.target), ['train', 'quantize-fp8', 'quantize-bf16'], why);
    const [train, ...quantize] = lines;
    assert.equal(train!.runs, 2, why);
    assert.equal(train!.failed, 2, why);
    assert.equal(train!.clear_error, true, why);
    assert.equal(train!.last_good_intact, true, why);
    assert.equal(train!.temp_left, 0, why);
    assert.equal(train!.lock_left, 0, why);
    assert.equal(train!.first_save_failed, 0, 'both cases fail after the first checkpoint');
    assert.equal(train!.in_metrics, 1, `one case fails appending to metrics.jsonl\n${why}`);
    assert.equal(train!.full_disk_resume_ok, train!.full_disk_resumes, why);
    assert.equal(train!.recovered, 2, why);
    assert.equal(train!.losses_equal, true, why);
    assert.equal(train!.weights_equal, true, why);
    for (const q of quantize) {
      assert.equal(q.runs, 2, why);
      assert.equal(q.failed, 2, why);
      assert.equal(q.overwrite_runs, 1, why);
      assert.equal(q.clear_error, true, why);
      assert.equal(q.files_left, 0, why);
      assert.equal(q.temp_left, 0, why);
      assert.equal(q.last_good_intact, true, why);
    }
    for (const l of lines) assert.equal(l.mounts_left, 0, why);
    assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes(workDir), 'no tmpfs left mounted');
    assert.deepEqual(readdirSync(workDir), [], 'the part leaves its work directory empty');
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
});
