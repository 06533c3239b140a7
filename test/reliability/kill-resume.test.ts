/**
 * The fast part of the kill -9 campaign (issue 12, campaign/kill.ts): `skymoe train` killed a few
 * times, at least half of the kills verified in the middle of a checkpoint write (the save's temp
 * directory still there after the kill), each followed by `--resume` (or a new run when no
 * checkpoint was complete): every resume succeeds and the finished run's losses, metrics and last
 * checkpoint equal an uninterrupted run's bit for bit. A kill that misses its checkpoint write is
 * not a failure: the next process is aimed at a write again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { killResume, killTarget } from '../../campaign/kill.js';

test('kill -9 during training and checkpoint writes, then --resume: the same losses as an uninterrupted run', async () => {
  const workDir = mkdtempSync(join(tmpdir(), 'skymoe-kill-'));
  const scale = 0.06;
  const log: string[] = [];
  try {
    const [line] = await killResume({ seed: 12, scale, log: (m) => log.push(m), workDir });
    const why = `${JSON.stringify(line)}\n${log.join('\n')}`;
    assert.ok(line, why);
    assert.ok(Number(line.kills) >= killTarget(scale), why);
    assert.ok(Number(line.mid_write_kills) >= Math.ceil(killTarget(scale) / 2) && Number(line.mid_write_kills) >= 1, why);
    assert.equal(line.failures, 0, why);
    assert.equal(line.resumes_ok, line.resumes, why);
    assert.equal(line.resume_refused_ok, line.resume_refused, why);
    assert.equal(line.losses_equal, true, why);
    assert.equal(line.metrics_equal, true, why);
    assert.equal(line.weights_equal, true, why);
    assert.equal(line.temp_left, 0, why);
    assert.equal(line.lock_left, 0, why);
    assert.deepEqual(readdirSync(workDir), [], 'the part leaves its work directory empty');
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
});
