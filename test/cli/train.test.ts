/** `skymoe train` from the command line: progress, metrics, checkpoints, SIGINT saves, --resume continues. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '2', SKYMOE_CACHE: mkdtempSync(join(tmpdir(), 'skymoe-cache-')) };

test('train shows progress, writes metrics and checkpoints; SIGINT saves; --resume continues', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'skymoe-train-cli-')), 'run');
  const child = spawn(process.execPath, [main, 'train', '--out', dir, '--steps', '100000', '--batch', '2', '--seq', '32', '--eval-every', '0', '--save-every', '0'], { env });
  let err = '';
  const stopped = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (/step \d+\/100000/.test(err) && !child.killed) child.kill('SIGINT');
  });
  const code = await stopped;
  assert.equal(code, 0, err);
  assert.match(err, /step \d+\/100000 \| loss [\d.]+ \| ce [\d.]+ \| drop [\d.]+% \| \d+ tok\/s \| lr [\d.e+-]+ \| ETA/);
  assert.match(err, /interrupt: finishing this step, saving a checkpoint/);
  assert.match(err, /stopped at step (\d+)/);
  const stoppedAt = Number(/stopped at step (\d+)/.exec(err)![1]);
  const latest = JSON.parse(readFileSync(join(dir, 'checkpoints', 'latest.json'), 'utf8'));
  assert.equal(latest.step, stoppedAt);
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(metrics.length, stoppedAt);
  for (const k of ['loss', 'ce', 'aux', 'alpha', 'dropRate', 'tokensPerExpert', 'max1OverMax2', 'max2OverMax3', 'entropy', 'gradNorm', 'lr', 'tokensPerSec']) assert.ok(k in metrics[0], `metrics carry ${k}`);
  const r = spawnSync(process.execPath, [main, 'train', '--resume', dir, '--steps', String(stoppedAt + 3)], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`resuming from .*step-0*${stoppedAt} at step ${stoppedAt}`));
  assert.match(r.stderr, new RegExp(`done at step ${stoppedAt + 3}`));
  assert.ok(existsSync(join(dir, 'checkpoints', `step-${String(stoppedAt + 3).padStart(6, '0')}`)));
  const bad = spawnSync(process.execPath, [main, 'train', '--resume', join(dir, 'nope')], { env, encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /nope\/run\.json: not found/);
  rmSync(dir, { recursive: true });
});
