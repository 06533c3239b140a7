/** Atomic replacement: a failed or killed write leaves the previous file intact. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openSafetensors, removeStaleTemps, writeSafetensors } from '../../src/io/index.js';
import { tempDir } from './fixtures.js';

const { dir, cleanup } = tempDir();
after(cleanup);

const IO_MODULE = new URL('../../src/io/index.js', import.meta.url).href;

function temps(base: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(`${base}.tmp-`));
}

function writeOriginal(path: string): Buffer {
  writeSafetensors(path, [{ name: 'old', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
  return readFileSync(path);
}

test('an error thrown mid-write (progress hook) leaves the original and removes the temp', () => {
  const path = join(dir, 'hook.safetensors');
  const original = writeOriginal(path);
  const big = new Float32Array(3_000_000).fill(3);
  let calls = 0;
  assert.throws(
    () =>
      writeSafetensors(path, [{ name: 'new', dtype: 'F32', shape: [big.length], data: big }], undefined, {
        onProgress: () => {
          if (++calls === 2) throw new Error('injected failure');
        },
      }),
    /injected failure/,
  );
  assert.equal(calls, 2, 'failed after the first data chunk was written');
  assert.deepEqual(readFileSync(path), original);
  assert.deepEqual(temps('hook.safetensors'), []);
});

test('an error from a lazy tensor source also leaves the original', () => {
  const path = join(dir, 'lazy.safetensors');
  const original = writeOriginal(path);
  assert.throws(
    () =>
      writeSafetensors(path, [
        { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array([9]) },
        {
          name: 'b',
          dtype: 'F32',
          shape: [1],
          data: () => {
            throw new Error('source gone');
          },
        },
      ]),
    /source gone/,
  );
  assert.deepEqual(readFileSync(path), original);
  assert.deepEqual(temps('lazy.safetensors'), []);
});

test('a process killed mid-write leaves the original; the next write removes its temp', () => {
  const path = join(dir, 'killed.safetensors');
  const original = writeOriginal(path);
  const child = `
    import { writeSafetensors } from ${JSON.stringify(IO_MODULE)};
    const big = new Float32Array(3_000_000).fill(5);
    let calls = 0;
    writeSafetensors(${JSON.stringify(path)}, [{ name: 'new', dtype: 'F32', shape: [big.length], data: big }], undefined, {
      onProgress: () => { if (++calls === 2) process.kill(process.pid, 'SIGKILL'); },
    });
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', `child did not die as planned: ${r.stderr}`);
  assert.deepEqual(readFileSync(path), original, 'the original survived the crash');
  const left = temps('killed.safetensors');
  assert.equal(left.length, 1, 'the dead writer left its temp file');
  assert.match(left[0]!, /^killed\.safetensors\.tmp-\d+-[0-9a-f]{12}$/);

  const reader = openSafetensors(path);
  assert.deepEqual(reader.readF32('old'), new Float32Array([1, 2]));
  reader.close();

  writeSafetensors(path, [{ name: 'next', dtype: 'F16', shape: [1], data: new Float32Array([4]) }]);
  assert.deepEqual(temps('killed.safetensors'), [], 'the next write cleaned up');
  const again = openSafetensors(path);
  assert.deepEqual(again.names(), ['next']);
  again.close();
});

test('removeStaleTemps keeps temps of live processes and unrelated files', () => {
  const path = join(dir, 'stale.safetensors');
  const live = `${path}.tmp-${process.pid}-abcdef012345`;
  const unrelated = `${path}.tmp-notapid`;
  writeFileSync(live, 'x');
  writeFileSync(unrelated, 'x');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  const stale = `${path}.tmp-${dead}-0123456789ab`;
  writeFileSync(stale, 'x');
  assert.deepEqual(removeStaleTemps(path), [stale]);
  assert.ok(existsSync(live) && existsSync(unrelated) && !existsSync(stale));
});
