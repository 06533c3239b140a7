/**
 * Training on a full disk (issue 12): a metrics line that cannot be appended, and a run-directory
 * lock that cannot be written, fail naming the file (a write's ENOSPC names none); the lock leaves
 * no empty .lock behind. metrics.jsonl is pointed at /dev/full (every write a real ENOSPC); the
 * lock needs a full filesystem: a tmpfs in a private mount namespace (skipped where none mounts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { DEFAULT_TRAIN, startRun } from '../../src/train/run.js';

if (!process.env.SKYMOE_CACHE) {
  const cache = mkdtempSync(join(tmpdir(), 'skymoe-cache-'));
  process.env.SKYMOE_CACHE = cache;
  after(() => rmSync(cache, { recursive: true, force: true }));
}

test('a metrics line that does not fit names metrics.jsonl', async (t) => {
  if (!existsSync('/dev/full')) return t.skip('no /dev/full');
  const be = new JsBackend();
  T.setBackend(be);
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-fullmetrics-'));
  try {
    const h = await startRun(dir, { preset: 'tiny', corpus: [], valFraction: 0.05, modelSeed: 1 }, { ...DEFAULT_TRAIN, steps: 1, batch: 1, seq: 16, saveEvery: 0, evalEvery: 0 }, be, { onWarn: () => {} });
    const metrics = join(dir, 'metrics.jsonl');
    if (existsSync(metrics)) unlinkSync(metrics);
    symlinkSync('/dev/full', metrics);
    await assert.rejects(h.trainer.run(), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC' && e.message.startsWith(`${metrics}: `));
    h.trainer.dispose();
    h.trainer.model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lock that does not fit names .lock and leaves none', (t) => {
  const run = (prefix: string[]) => {
    const script = `
      import { closeSync, existsSync, mkdirSync, openSync, writeSync } from 'node:fs';
      import { lockRun } from ${JSON.stringify(new URL('../../src/train/run.js', import.meta.url).href)};
      const dir = process.env.MNT + '/run';
      mkdirSync(dir);
      const fd = openSync(process.env.MNT + '/filler', 'w');
      try { for (;;) writeSync(fd, Buffer.alloc(4096, 1)); } catch (e) { if (e.code !== 'ENOSPC') throw e; }
      closeSync(fd);
      let message = '';
      try { lockRun(dir); } catch (e) { message = e.message; }
      console.log(JSON.stringify({ message, lock: existsSync(dir + '/.lock') }));
    `;
    return spawnSync(prefix[0]!, [...prefix.slice(1), 'sh', '-c', 'export MNT=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$MNT" && "$0" --input-type=module -e "$1"; s=$?; umount "$MNT"; rmdir "$MNT"; exit $s', process.execPath, script], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  };
  const own = ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child']; // nothing outlives a timeout
  let r = run(['unshare', ...own]);
  if (r.status !== 0) r = run(['unshare', '--user', '--map-root-user', ...own]);
  if (r.status !== 0) return t.skip(`cannot mount a tmpfs in a private mount namespace here: ${r.stderr.slice(-300)}`);
  const { message, lock } = JSON.parse(r.stdout.trim()) as { message: string; lock: boolean };
  assert.match(message, /\/run\/\.lock: ENOSPC: no space left on device/);
  assert.equal(lock, false, 'no empty lock file left behind');
});
