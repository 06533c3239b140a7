/**
 * Crash-safe file replacement: write to `<path>.tmp-<pid>-<random>`, fsync, rename over the
 * target, fsync the directory. A crash at any point leaves either the old file or the new one
 * under `path`, never a torn mix; a crashed writer's temp file is removed by the next write to
 * the same path once its process is gone.
 */
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * The temp name a write to `path` uses; cleanup recognises it by this shape.
 * @example tempPathFor('/ckpt/model.safetensors') // '/ckpt/model.safetensors.tmp-4242-a1b2c3d4e5f6'
 */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** True when a process with this pid runs (or exists but is not ours to signal). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove temp files left next to `path` by writers that died mid-write (their pid no longer runs).
 * Returns the removed paths.
 * @example removeStaleTemps('/ckpt/model.safetensors') // ['/ckpt/model.safetensors.tmp-4242-a1b2c3d4e5f6']
 */
export function removeStaleTemps(path: string): string[] {
  const dir = dirname(path);
  const re = new RegExp(`^${escapeRegExp(basename(path))}\\.tmp-(\\d+)-[0-9a-f]+$`);
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const e of entries) {
    const m = re.exec(e);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    try {
      unlinkSync(join(dir, e));
      removed.push(join(dir, e));
    } catch {
      // Another writer removed it first.
    }
  }
  return removed;
}

/**
 * fsync a directory so a rename in it is durable; not supported everywhere (Windows), so best effort.
 * @example fsyncDir('/ckpt')
 */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Durability of the rename is then up to the OS; atomicity still holds.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Write all of `bytes` at the current position of `fd` (writeSync may write less than asked).
 * @example writeFully(fd, new Uint8Array([1, 2, 3]))
 */
export function writeFully(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
}

/**
 * An I/O error with the file it concerns in its message: write and fsync errors name none
 * ("ENOSPC: no space left on device, write"). The error object (class, code) is kept.
 * @example throw withPath(e, '/ckpt/metrics.jsonl') // '/ckpt/metrics.jsonl: ENOSPC: no space left on device, write'
 */
export function withPath(e: unknown, path: string): unknown {
  if (e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && !e.message.includes(path)) e.message = `${path}: ${e.message}`;
  return e;
}

/** A file written and fsynced under its temp name, not yet in place. */
export interface StagedFile {
  /** Rename it over its path (needs no space) and fsync the directory. */
  commit(): void;
  /** Remove the temp file; the path keeps what it had. */
  abort(): void;
}

/**
 * The first half of `writeFileAtomic`: `body(fd)` written to a temp file beside `path` and fsynced.
 * Files staged first and committed after a larger write replace a set of files together: a full
 * disk fails a write, never a rename, so it leaves the old set or the new one. If `body` throws,
 * the temp file is removed.
 * @example const s = stageFileAtomic('/out/config.json', (fd) => writeFully(fd, bytes)); writeTheWeights(); s.commit();
 */
export function stageFileAtomic(path: string, body: (fd: number) => void): StagedFile {
  removeStaleTemps(path);
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', 0o644);
  let open = true;
  const remove = () => {
    try {
      unlinkSync(tmp);
    } catch {
      // Already renamed or removed.
    }
  };
  try {
    body(fd);
    fsyncSync(fd);
    closeSync(fd);
    open = false;
  } catch (e) {
    try {
      if (open) closeSync(fd);
    } catch {
      // The write error below is the one worth reporting.
    }
    remove();
    throw withPath(e, path);
  }
  return {
    commit: () => {
      try {
        renameSync(tmp, path);
      } catch (e) {
        remove();
        throw e;
      }
      fsyncDir(dirname(path));
    },
    abort: remove,
  };
}

/**
 * Replace `path` atomically with what `body(fd)` writes. If `body` throws, the temp file is
 * removed and `path` is untouched. An I/O error names `path`.
 * @example writeFileAtomic('/ckpt/index.json', (fd) => writeFully(fd, new TextEncoder().encode('{}')))
 */
export function writeFileAtomic(path: string, body: (fd: number) => void): void {
  stageFileAtomic(path, body).commit();
}
