/**
 * The run directory as shared ground: a second live process cannot take it (RUN/.lock names the
 * owner), a killed owner's lock is taken over; a new run in a directory whose earlier run died
 * before its first checkpoint keeps the old metrics aside instead of appending to them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lockRun } from '../../src/train/run.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-rundir-'));
after(() => rmSync(work, { recursive: true, force: true }));
const runModule = fileURLToPath(new URL('../../src/train/run.js', import.meta.url));
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('a run directory held by a live process is refused naming it; a killed holder\'s lock is taken over', async () => {
  const dir = join(work, 'locked');
  // Another process takes the directory and waits.
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `const { lockRun } = await import(${JSON.stringify(runModule)}); lockRun(${JSON.stringify(dir)}); console.log('held'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => holder.once('exit', r));
  try {
    await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
    assert.throws(() => lockRun(dir), new RegExp(`in use by process ${holder.pid} \\(another skymoe train\\)`));
  } finally {
    holder.kill('SIGKILL');
    await exited;
  }
  lockRun(dir); // the dead holder's lock is ours now
  assert.equal(readFileSync(join(dir, '.lock'), 'utf8').trim(), String(process.pid));
  lockRun(dir); // and taking it again in the same process is fine
});

test('a new run next to the metrics of a run killed before its first checkpoint keeps them aside', () => {
  const dir = join(work, 'fresh');
  mkdirSync(dir);
  writeFileSync(join(dir, 'metrics.jsonl'), '{"step": 999, "loss": 1}\n');
  const r = spawnSync(process.execPath, [main, 'train', '--out', dir, '--steps', '2', '--batch', '2', '--seq', '16', '--eval-every', '0', '--save-every', '0'], {
    encoding: 'utf8',
    env: { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '1', SKYMOE_CACHE: join(work, 'cache') },
  });
  assert.equal(r.status, 0, r.stderr);
  const steps = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
  assert.deepEqual(steps, [1, 2], 'the new run\'s metrics only');
  const aside = readdirSync(dir).filter((f) => f.startsWith('metrics.jsonl.before-'));
  assert.equal(aside.length, 1);
  assert.equal(readFileSync(join(dir, aside[0]!), 'utf8'), '{"step": 999, "loss": 1}\n', 'the old metrics are kept');
  assert.ok(!existsSync(join(dir, '.lock')), 'the lock is released at exit');
});
