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

test('resume is tied to its data and model: from another directory it finds its corpus; an edited corpus or config is refused, named', () => {
  const base = join(work, 'tied');
  mkdirSync(join(base, 'data'), { recursive: true });
  const text = 'Call me Ishmael. Some years ago - never mind how long precisely - having little or no money in my purse. '.repeat(40);
  writeFileSync(join(base, 'data', 'book.txt'), text);
  const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '1', SKYMOE_CACHE: join(work, 'cache') };
  const train = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [main, 'train', ...args], { cwd, encoding: 'utf8', env });
  // Started with a relative corpus path from base/.
  let r = train(base, '--out', 'run', '--corpus', 'data/book.txt', '--steps', '2', '--batch', '2', '--seq', '16', '--eval-every', '0', '--warmup', '1');
  assert.equal(r.status, 0, r.stderr);
  const run = join(base, 'run');
  // Resumed from elsewhere: the recorded path is absolute.
  r = train(work, '--resume', run, '--steps', '3');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /done at step 3/);
  // The corpus edited in between: refused.
  writeFileSync(join(base, 'data', 'book.txt'), text + 'And a new chapter.');
  r = train(work, '--resume', run, '--steps', '4');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /run\.json: the corpus .* changed since the run started/);
  writeFileSync(join(base, 'data', 'book.txt'), text);
  // The checkpoint's config edited: refused, naming the field.
  const latest = JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8'));
  const cfgPath = join(run, 'checkpoints', latest.dir, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, rope_theta: cfg.rope_theta * 2 }));
  r = train(work, '--resume', run, '--steps', '4');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /config\.json: differs from the config the run started with .*rope_theta \d+ -> \d+/);
});
