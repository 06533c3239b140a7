/**
 * Running the real CLI from a test: a throwaway work directory (removed after the file's tests),
 * the wasm backend on 2 threads and a private token cache, `skymoe(...)` for a run and `fails(...)`
 * for a refusal (non-zero exit, the message on stderr, nothing on stdout).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

export function cliHarness(prefix: string) {
  const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const work = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(work, { recursive: true, force: true }));
  const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '2', SKYMOE_CACHE: join(work, 'cache') };
  function skymoe(...args: string[]) {
    const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env });
    return { code: r.status, out: r.stdout, err: r.stderr };
  }
  function fails(args: string[], re: RegExp) {
    const r = skymoe(...args);
    assert.notEqual(r.code, 0, `skymoe ${args.join(' ')} should fail`);
    assert.match(r.err, re, `skymoe ${args.join(' ')}`);
    assert.equal(r.out, '', `skymoe ${args.join(' ')} printed to stdout before failing`);
  }
  return { main, work, env, skymoe, fails };
}
