/**
 * A directory written whole or not at all: built under a temporary name beside the target and
 * renamed into place, an existing one (allowed with `force`) moved aside first and removed after.
 * An error while building removes the temporary directory and leaves the target as it was.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { MegatronKitError } from './kit-config.js';

/** Refuse an --out that is a file, or a non-empty directory without `force`. */
export function checkOutDir(out: string, force: boolean, flag = '--out'): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new MegatronKitError(`${out} exists and is not a directory`, flag);
  if (readdirSync(out).length > 0 && !force) throw new MegatronKitError(`${out} exists and is not empty: give another ${flag}, or --force to replace it`, flag);
}

/** Build `out` with `build(tmpDir)`, then rename it into place; the sorted names it holds. */
export async function writeDirAtomically(out: string, build: (tmp: string) => Promise<void>): Promise<string[]> {
  const target = resolve(out);
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp, { recursive: true });
  try {
    await build(tmp);
    let old: string | null = null;
    if (existsSync(target)) {
      old = `${tmp}.old`;
      renameSync(target, old);
    }
    renameSync(tmp, target);
    if (old) rmSync(old, { recursive: true, force: true });
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return readdirSync(target).sort();
}
