/**
 * Sharded checkpoints in the Hugging Face layout: a directory holding either one
 * `model.safetensors`, or `model.safetensors.index.json` =
 * `{"metadata": {"total_size": N}, "weight_map": {tensor: "model-00001-of-00003.safetensors"}}`
 * plus the shards it names.
 *
 * Crash safety of writeSharded (the index is the commit point):
 * 1. New shards are written first, each atomically (see atomic.ts).
 * 2. The new index is written atomically, last. Readers prefer the index over `model.safetensors`.
 * 3. Only then are files of the previous save that the new one does not reuse removed.
 * A crash before step 2 leaves the previous index in force. When the new save has a different
 * shard count, or the previous save was a single file, no name is shared and the previous
 * checkpoint stays fully readable. When the shard count is the same, the new shards necessarily
 * replace old ones of the same name (the HF names allow no other choice); for that case every
 * shard and the index carry a per-save id (`skymoe_save_id`) and the reader refuses a shard whose
 * id differs from the index's, so a torn save is reported, never silently mixed.
 * A single-shard save writes `model.safetensors` and then deletes a previous index (its commit
 * point), then the previous shards.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic, writeFully } from './atomic.js';
import { describe, SafetensorsError, SafetensorsReader, storedBytes, type TensorInfo, type TensorLocation, type TensorReader, type TensorToWrite, validateTensors, writeSafetensors } from './safetensors.js';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
/** Hugging Face's default `max_shard_size` ("5GB", decimal). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;
/** Metadata key tying shards to the index of the same save. */
export const SAVE_ID_KEY = 'skymoe_save_id';

const SHARD_NAME = /^model-\d+-of-\d+\.safetensors$/;

/**
 * The Hugging Face shard file name for shard `i` (1-based) of `n`.
 * @example shardFileName(1, 3) // 'model-00001-of-00003.safetensors'
 */
export function shardFileName(i: number, n: number): string {
  return `model-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

interface IndexFile {
  metadata: Record<string, unknown>;
  weightMap: Map<string, string>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}


/** Read and validate an index file; shard names must be plain file names inside the directory. */
function readIndex(path: string): IndexFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SafetensorsError(path, `cannot read index (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(path, `index is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) throw new SafetensorsError(path, 'index is not a JSON object');
  const meta = json.metadata ?? {};
  if (!isPlainObject(meta)) throw new SafetensorsError(path, 'index "metadata" is not an object');
  const wm = json.weight_map;
  if (!isPlainObject(wm)) throw new SafetensorsError(path, 'index has no "weight_map" object');
  const weightMap = new Map<string, string>();
  for (const name of Object.keys(wm)) {
    const file = wm[name];
    if (typeof file !== 'string' || file === '' || file === '.' || file === '..' || /[/\\]/.test(file)) {
      throw new SafetensorsError(path, `weight_map entry for tensor ${JSON.stringify(name)} is not a shard file name in this directory (got ${describe(file)})`);
    }
    weightMap.set(name, file);
  }
  return { metadata: meta, weightMap };
}

/**
 * A checkpoint directory opened for reading: the index plus lazily opened shards, or a single
 * `model.safetensors`. Same API as SafetensorsReader; close() closes every opened shard.
 */
export class ShardedReader implements TensorReader {
  private readonly shards = new Map<string, SafetensorsReader>();
  private closed = false;

  private constructor(
    readonly dir: string,
    /** The index path, or undefined for a single-file checkpoint. */
    readonly indexPath: string | undefined,
    /** The index's "metadata" object (`total_size`, ...); empty for a single file. */
    readonly indexMetadata: Readonly<Record<string, unknown>>,
    private readonly weightMap: Map<string, string>,
  ) {}

  /**
   * Open a checkpoint directory (index + shards, or model.safetensors).
   * @example
   * const ckpt = ShardedReader.open('Skywork-MoE-Base');
   * const wq = ckpt.readF32('model.layers.0.self_attn.q_proj.weight');
   * ckpt.close();
   */
  static open(dir: string): ShardedReader {
    const indexPath = join(dir, INDEX_FILE);
    if (existsSync(indexPath)) {
      const index = readIndex(indexPath);
      return new ShardedReader(dir, indexPath, index.metadata, index.weightMap);
    }
    const single = join(dir, SINGLE_FILE);
    if (!existsSync(single)) throw new SafetensorsError(dir, `no checkpoint: neither ${INDEX_FILE} nor ${SINGLE_FILE} exists`);
    const reader = SafetensorsReader.open(single);
    const r = new ShardedReader(dir, undefined, {}, new Map(reader.names().map((n) => [n, SINGLE_FILE])));
    r.shards.set(SINGLE_FILE, reader);
    return r;
  }

  /** The `__metadata__` of the shard holding the first tensor (shards of one save share it). */
  get metadata(): Readonly<Record<string, string>> {
    const first = this.weightMap.values().next();
    if (first.done) return {};
    const { [SAVE_ID_KEY]: _, ...rest } = this.shard(first.value).metadata;
    return rest;
  }

  names(): string[] {
    this.check();
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    this.check();
    return this.weightMap.has(name);
  }

  /** Shard file names in use, in first-use order. */
  shardFiles(): string[] {
    return [...new Set(this.weightMap.values())];
  }

  info(name: string): TensorInfo {
    return this.locate(name).info(name);
  }

  readRaw(name: string): Uint8Array {
    return this.locate(name).readRaw(name);
  }

  location(name: string): TensorLocation {
    return this.locate(name).location(name);
  }

  readF32(name: string): Float32Array {
    return this.locate(name).readF32(name);
  }

  readInt(name: string): Int32Array {
    return this.locate(name).readInt(name);
  }

  readI64(name: string): BigInt64Array {
    return this.locate(name).readI64(name);
  }

  close(): void {
    for (const r of this.shards.values()) r.close();
    this.shards.clear();
    this.closed = true;
  }

  private check(): void {
    if (this.closed) throw new SafetensorsError(this.indexPath ?? this.dir, 'reader is closed');
  }

  private locate(name: string): SafetensorsReader {
    this.check();
    const file = this.weightMap.get(name);
    if (file === undefined) throw new SafetensorsError(this.indexPath ?? join(this.dir, SINGLE_FILE), 'no such tensor in this checkpoint', name);
    const shard = this.shard(file);
    if (!shard.has(name)) throw new SafetensorsError(shard.path, `listed in ${this.indexPath} but absent from this shard`, name);
    return shard;
  }

  private shard(file: string): SafetensorsReader {
    this.check();
    let r = this.shards.get(file);
    if (r) return r;
    const path = join(this.dir, file);
    if (!existsSync(path)) {
      const user = [...this.weightMap].find(([, f]) => f === file)?.[0];
      throw new SafetensorsError(this.indexPath ?? this.dir, `weight_map points tensor ${JSON.stringify(user)} to shard ${path}, which does not exist`);
    }
    r = SafetensorsReader.open(path);
    const want = this.indexMetadata[SAVE_ID_KEY];
    const got = r.metadata[SAVE_ID_KEY];
    if (typeof want === 'string' && got !== undefined && got !== want) {
      r.close();
      throw new SafetensorsError(path, `shard belongs to save ${got} but ${this.indexPath} is save ${want} (an interrupted save overwrote it?)`);
    }
    if (want === undefined && got !== undefined && this.indexPath !== undefined) {
      // The index was written by another tool (Hugging Face writes no save id) and this shard by a
      // skymoe save that never reached its index: old and new shards would mix.
      r.close();
      throw new SafetensorsError(path, `shard belongs to skymoe save ${got} but ${this.indexPath} has no save id (a save over this checkpoint was interrupted before writing its index; re-save or restore the checkpoint)`);
    }
    this.shards.set(file, r);
    return r;
  }
}

/**
 * Open a checkpoint directory (same as ShardedReader.open).
 * @example const ckpt = openCheckpoint('out/step-1000'); console.log(ckpt.names().length); ckpt.close();
 */
export function openCheckpoint(dir: string): ShardedReader {
  return ShardedReader.open(dir);
}

/**
 * Split tensors into consecutive groups of at most `maxShardBytes` data bytes (Hugging Face's
 * greedy rule: a tensor that does not fit starts a new shard; one larger than the limit gets its own).
 * @example planShards([{ name: 'a', dtype: 'F32', shape: [4], data: new Float32Array(4) }], 8).length // 1
 */
export function planShards<T extends { dtype: TensorToWrite['dtype']; shape: readonly number[] }>(tensors: readonly T[], maxShardBytes: number): T[][] {
  if (!(maxShardBytes > 0)) throw new RangeError(`maxShardBytes must be positive (got ${maxShardBytes})`);
  const shards: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const t of tensors) {
    const b = storedBytes(t);
    if (current.length > 0 && bytes + b > maxShardBytes) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(t);
    bytes += b;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

export interface ShardedWriteOptions {
  /** Largest data size of one shard in bytes (default 5 GB, like Hugging Face). */
  maxShardBytes?: number;
  /** `__metadata__` for every shard, e.g. {format: 'pt'}. */
  metadata?: Readonly<Record<string, string>>;
  /** Progress per shard file; throwing aborts the save (files of the previous save stay in force). */
  onProgress?: (shardPath: string, bytesWritten: number, totalBytes: number) => void;
}

export interface ShardedWriteResult {
  /** Files written, relative to the directory (shards, then the index when there is one). */
  files: string[];
  /** Sum of tensor data bytes, the index's `total_size`. */
  totalSize: number;
  /** Files of a previous save that were removed. */
  removed: string[];
}

/**
 * The previous checkpoint's files that a new save replaces: only names this writer makes
 * (model.safetensors, the index, model-NNNNN-of-NNNNN.safetensors). Files an old index names
 * otherwise (a user's keep.safetensors) are never deleted; the new index simply stops naming them.
 */
function previousFiles(dir: string): Set<string> {
  const files = new Set<string>();
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return files;
  }
  for (const e of entries) if (e === SINGLE_FILE || e === INDEX_FILE || SHARD_NAME.test(e)) files.add(e);
  return files;
}

function removeFiles(dir: string, files: Iterable<string>): string[] {
  const removed: string[] = [];
  for (const f of files) {
    try {
      unlinkSync(join(dir, f));
      removed.push(f);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  if (removed.length > 0) fsyncDir(dir);
  return removed;
}

/**
 * Save tensors to a checkpoint directory in the Hugging Face layout, splitting into shards of at
 * most `maxShardBytes`; one shard is written as `model.safetensors` without an index. Order of
 * operations and crash behaviour: see the top of this file.
 * @example
 * writeSharded('out/step-1000', tensors, { maxShardBytes: 2e9, metadata: { format: 'pt' } });
 * // out/step-1000/model-00001-of-00003.safetensors ... + model.safetensors.index.json
 */
export function writeSharded(dir: string, tensors: readonly TensorToWrite[], options: ShardedWriteOptions = {}): ShardedWriteResult {
  const max = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  // Every fault that can be known up front is reported before any file is touched.
  validateTensors(join(dir, INDEX_FILE), tensors);
  const plan = planShards(tensors, max);
  mkdirSync(dir, { recursive: true });
  const previous = previousFiles(dir);
  const totalSize = tensors.reduce((s, t) => s + storedBytes(t), 0);
  const progressFor = (path: string) => (options.onProgress ? (w: number, t: number) => options.onProgress!(path, w, t) : undefined);

  if (plan.length === 1) {
    const path = join(dir, SINGLE_FILE);
    writeSafetensors(path, plan[0]!, options.metadata, { onProgress: progressFor(path) });
    previous.delete(SINGLE_FILE);
    // Deleting the index is this save's commit point; its shards go after.
    const removed = previous.has(INDEX_FILE) ? removeFiles(dir, [INDEX_FILE]) : [];
    previous.delete(INDEX_FILE);
    return { files: [SINGLE_FILE], totalSize, removed: [...removed, ...removeFiles(dir, previous)] };
  }

  const saveId = randomBytes(8).toString('hex');
  const metadata = { ...options.metadata, [SAVE_ID_KEY]: saveId };
  const files: string[] = [];
  const weightMap: [string, string][] = [];
  plan.forEach((group, k) => {
    const file = shardFileName(k + 1, plan.length);
    const path = join(dir, file);
    writeSafetensors(path, group, metadata, { onProgress: progressFor(path) });
    files.push(file);
    for (const t of group) weightMap.push([t.name, file]);
  });

  weightMap.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const index =
    `{\n  "metadata": {\n    "total_size": ${totalSize},\n    ${JSON.stringify(SAVE_ID_KEY)}: ${JSON.stringify(saveId)}\n  },\n` +
    `  "weight_map": {\n${weightMap.map(([n, f]) => `    ${JSON.stringify(n)}: ${JSON.stringify(f)}`).join(',\n')}\n  }\n}\n`;
  writeFileAtomic(join(dir, INDEX_FILE), (fd) => writeFully(fd, new TextEncoder().encode(index)));
  files.push(INDEX_FILE);

  for (const f of files) previous.delete(f);
  return { files, totalSize, removed: removeFiles(dir, previous) };
}
