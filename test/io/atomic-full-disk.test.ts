/**
 * Atomic writes on a full disk (issue 12): the error names the file (a write's ENOSPC names none:
 * "ENOSPC: no space left on device, write"), keeps its code, and leaves the old file and no temp.
 * A staged file is in place only once committed. /dev/full fails every write with a real ENOSPC.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { stageFileAtomic, writeFileAtomic, writeFully } from '../../src/io/index.js';
import { tempDir } from './fixtures.js';

const { dir, cleanup } = tempDir();
after(cleanup);

const bytes = new TextEncoder().encode('new contents\n');

test('a write that hits a full disk names the file, keeps ENOSPC, and leaves the old file and no temp', (t) => {
  if (!existsSync('/dev/full')) return t.skip('no /dev/full');
  const path = join(dir, 'latest.json');
  writeFileSync(path, 'old');
  const full = openSync('/dev/full', 'w');
  try {
    assert.throws(
      () => writeFileAtomic(path, () => writeFully(full, bytes)),
      (e: NodeJS.ErrnoException) => e.code === 'ENOSPC' && e.message.startsWith(`${path}: `) && /no space left on device/.test(e.message),
    );
  } finally {
    closeSync(full);
  }
  assert.equal(readFileSync(path, 'utf8'), 'old');
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('latest.json.tmp-')), []);
});

test('a staged file replaces its path on commit only; abort removes it', () => {
  const a = join(dir, 'config.json');
  const b = join(dir, 'tokenizer.json');
  writeFileSync(a, 'old a');
  const sa = stageFileAtomic(a, (fd) => writeFully(fd, bytes));
  const sb = stageFileAtomic(b, (fd) => writeFully(fd, bytes));
  assert.equal(readFileSync(a, 'utf8'), 'old a', 'not in place before commit');
  assert.equal(existsSync(b), false);
  sa.commit();
  sb.abort();
  assert.equal(readFileSync(a, 'utf8'), 'new contents\n');
  assert.equal(existsSync(b), false);
  assert.deepEqual(readdirSync(dir).filter((f) => /\.tmp-/.test(f)), []);
});
