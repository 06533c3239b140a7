import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  decodeFloatBytes,
  encodeBytes,
  INDEX_FILE,
  openCheckpoint,
  planShards,
  SAVE_ID_KEY,
  shardFileName,
  SINGLE_FILE,
  type StorageDType,
  type TensorToWrite,
  writeSafetensors,
  writeSharded,
} from '../../src/io/index.js';
import { assertSafetensorsError, f32Bytes, tempDir, writeHandMade } from './fixtures.js';

const { dir: root, cleanup } = tempDir();
after(cleanup);
let counter = 0;
function newDir(): string {
  const d = join(root, `ckpt-${counter++}`);
  mkdirSync(d);
  return d;
}

/** A tiny Skywork-layout state dict: 2 layers, 2 experts, mixed dtypes. */
function tinyModel(seed: number): TensorToWrite[] {
  const t: TensorToWrite[] = [];
  const add = (name: string, dtype: StorageDType, shape: number[]) => {
    const n = shape.reduce((p, d) => p * d, 1);
    t.push({ name, dtype, shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i) * 0.5) });
  };
  add('model.embed_tokens.weight', 'BF16', [32, 8]);
  for (let l = 0; l < 2; l++) {
    for (const p of ['q', 'k', 'v', 'o']) add(`model.layers.${l}.self_attn.${p}_proj.weight`, 'BF16', [8, 8]);
    add(`model.layers.${l}.input_layernorm.weight`, 'F32', [8]);
    add(`model.layers.${l}.block_sparse_moe.gate.weight`, 'F32', [2, 8]);
    for (let e = 0; e < 2; e++) for (const w of ['w1', 'w3', 'w2']) add(`model.layers.${l}.block_sparse_moe.experts.${e}.${w}.weight`, 'F8_E4M3', [16, 8]);
  }
  add('lm_head.weight', 'F16', [32, 8]);
  t.push({ name: 'step', dtype: 'I64', shape: [1], data: new Int32Array([seed]) });
  return t;
}

function expected(t: TensorToWrite): Float32Array | Int32Array {
  const d = typeof t.data === 'function' ? t.data() : t.data;
  return d instanceof Float32Array ? decodeFloatBytes(t.dtype, encodeBytes(t.dtype, d)) : (d as Int32Array);
}

function assertCheckpoint(d: string, tensors: TensorToWrite[]): void {
  const r = openCheckpoint(d);
  try {
    assert.deepEqual(new Set(r.names()), new Set(tensors.map((t) => t.name)));
    for (const t of tensors) {
      assert.deepEqual(r.info(t.name).shape, t.shape);
      assert.deepEqual(t.dtype === 'I64' ? r.readInt(t.name) : r.readF32(t.name), expected(t), t.name);
    }
  } finally {
    r.close();
  }
}

test('shardFileName and planShards follow the Hugging Face rules', () => {
  assert.equal(shardFileName(1, 3), 'model-00001-of-00003.safetensors');
  const spec = (bytes: number) => ({ dtype: 'U8' as const, shape: [bytes] });
  const sizes = (plan: { shape: readonly number[] }[][]) => plan.map((g) => g.map((t) => t.shape[0]));
  assert.deepEqual(sizes(planShards([spec(4), spec(4), spec(4)], 8)), [[4, 4], [4]]);
  assert.deepEqual(sizes(planShards([spec(3), spec(20), spec(3), spec(3)], 8)), [[3], [20], [3, 3]]);
  assert.deepEqual(sizes(planShards([spec(20)], 8)), [[20]]);
  assert.deepEqual(sizes(planShards([], 8)), [[]]);
  assert.throws(() => planShards([spec(1)], 0), /maxShardBytes must be positive/);
});

test('sharded round trip with a small shard limit, index contents as Hugging Face writes them', () => {
  const d = newDir();
  const tensors = tinyModel(1);
  const res = writeSharded(d, tensors, { maxShardBytes: 600, metadata: { format: 'pt' } });
  const shards = res.files.filter((f) => f !== INDEX_FILE);
  assert.ok(shards.length >= 3, `expected several shards, got ${shards.length}`);
  shards.forEach((f, i) => assert.equal(f, shardFileName(i + 1, shards.length)));
  assert.deepEqual(readdirSync(d).sort(), [...res.files].sort());
  const index = JSON.parse(readFileSync(join(d, INDEX_FILE), 'utf8'));
  assert.equal(index.metadata.total_size, res.totalSize);
  assert.equal(res.totalSize, 32 * 8 * 2 * 2 + 2 * (4 * 64 * 2 + 8 * 4 + 16 * 4 + 6 * 128) + 8);
  assert.deepEqual(Object.keys(index.weight_map), tensors.map((t) => t.name).sort());
  assertCheckpoint(d, tensors);
  const r = openCheckpoint(d);
  assert.deepEqual(r.metadata, { format: 'pt' });
  assert.deepEqual(r.shardFiles().sort(), shards);
  r.close();
});

test('a tensor larger than the limit gets its own shard; one shard is written as model.safetensors', () => {
  const d = newDir();
  const tensors: TensorToWrite[] = [
    { name: 'small', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
    { name: 'huge', dtype: 'F32', shape: [100], data: new Float32Array(100).fill(7) },
    { name: 'tail', dtype: 'F32', shape: [2], data: new Float32Array([3, 4]) },
  ];
  const res = writeSharded(d, tensors, { maxShardBytes: 64 });
  assert.deepEqual(res.files, [shardFileName(1, 3), shardFileName(2, 3), shardFileName(3, 3), INDEX_FILE]);
  assert.equal(JSON.parse(readFileSync(join(d, INDEX_FILE), 'utf8')).weight_map.huge, shardFileName(2, 3));
  assertCheckpoint(d, tensors);

  const single = newDir();
  assert.deepEqual(writeSharded(single, tensors).files, [SINGLE_FILE]);
  assert.deepEqual(readdirSync(single), [SINGLE_FILE]);
  assertCheckpoint(single, tensors);
});

test('re-saving removes stale files of the previous save only after the new one is in place', () => {
  const d = newDir();
  const v1 = tinyModel(1);
  writeSharded(d, v1, { maxShardBytes: 600 });
  const n1 = readdirSync(d).length - 1;

  // Different shard count: new shards alongside, index switch, then old shards removed.
  const v2 = tinyModel(2);
  const res2 = writeSharded(d, v2, { maxShardBytes: 1500 });
  assert.ok(res2.files.length - 1 !== n1);
  assert.deepEqual(readdirSync(d).sort(), [...res2.files].sort());
  assert.equal(res2.removed.length, n1);
  assertCheckpoint(d, v2);

  // Sharded -> single file: the index and shards go.
  const v3 = tinyModel(3);
  const res3 = writeSharded(d, v3);
  assert.deepEqual(readdirSync(d), [SINGLE_FILE]);
  assert.ok(res3.removed.includes(INDEX_FILE));
  assertCheckpoint(d, v3);

  // Single file -> sharded: model.safetensors goes.
  const v4 = tinyModel(4);
  writeSharded(d, v4, { maxShardBytes: 600 });
  assert.ok(!existsSync(join(d, SINGLE_FILE)));
  assertCheckpoint(d, v4);

  // Files that are not checkpoint files are left alone.
  writeFileSync(join(d, 'config.json'), '{}');
  writeSharded(d, tinyModel(5), { maxShardBytes: 1500 });
  assert.ok(existsSync(join(d, 'config.json')));
});

test('a save that fails before its index is written leaves the previous checkpoint readable', () => {
  const d = newDir();
  const v1 = tinyModel(1);
  writeSharded(d, v1, { maxShardBytes: 1500 });
  const before = readdirSync(d).sort();
  let calls = 0;
  assert.throws(
    () =>
      writeSharded(d, tinyModel(2), {
        maxShardBytes: 600,
        onProgress: () => {
          if (++calls === 5) throw new Error('disk full'); // a few shards in
        },
      }),
    /disk full/,
  );
  assertCheckpoint(d, v1);
  assert.ok(before.every((f) => readdirSync(d).includes(f)));
  // The next successful save cleans up the orphaned new shards too.
  const v3 = tinyModel(3);
  const res = writeSharded(d, v3, { maxShardBytes: 1500 });
  assert.deepEqual(readdirSync(d).sort(), [...res.files].sort());
  assertCheckpoint(d, v3);
});

test('an interrupted save with the same shard count is detected, not silently mixed', () => {
  const d = newDir();
  writeSharded(d, tinyModel(1), { maxShardBytes: 1500 });
  const oldIndex = readFileSync(join(d, INDEX_FILE));
  const res = writeSharded(d, tinyModel(2), { maxShardBytes: 1500 });
  // Simulate a crash after the shards were replaced but before the index was: restore the old index.
  writeFileSync(join(d, INDEX_FILE), oldIndex);
  const r = openCheckpoint(d);
  assertSafetensorsError(() => r.readF32('model.embed_tokens.weight'), join(d, res.files[0]!), new RegExp(`shard belongs to save [0-9a-f]+ but .*${INDEX_FILE} is save`));
  r.close();
  assert.ok(JSON.parse(oldIndex.toString()).metadata[SAVE_ID_KEY]);
});

test('index and shard faults name the index or shard at fault', () => {
  const d = newDir();
  const index = join(d, INDEX_FILE);
  assertSafetensorsError(() => openCheckpoint(d), d, /no checkpoint: neither model.safetensors.index.json nor model.safetensors exists/);
  const cases: [string, RegExp][] = [
    ['{', /index is not valid JSON/],
    ['[]', /index is not a JSON object/],
    ['{"metadata": {}}', /index has no "weight_map" object/],
    ['{"metadata": 3, "weight_map": {}}', /index "metadata" is not an object/],
    ['{"weight_map": {"a": 3}}', /weight_map entry for tensor "a" is not a shard file name/],
    ['{"weight_map": {"a": "../x.safetensors"}}', /is not a shard file name in this directory/],
    ['{"weight_map": {"a": "/etc/passwd"}}', /is not a shard file name/],
  ];
  for (const [text, fault] of cases) {
    writeFileSync(index, text);
    assertSafetensorsError(() => openCheckpoint(d), index, fault);
  }

  writeHandMade(join(d, 's1.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32Bytes([1]));
  writeFileSync(index, JSON.stringify({ metadata: { total_size: 4 }, weight_map: { a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' } }));
  const r = openCheckpoint(d);
  assert.deepEqual(r.readF32('a'), new Float32Array([1]));
  assertSafetensorsError(() => r.readF32('b'), join(d, 's1.safetensors'), /tensor "b": listed in .*model.safetensors.index.json but absent from this shard/);
  assertSafetensorsError(() => r.info('c'), index, /weight_map points tensor "c" to shard .*s2.safetensors, which does not exist/);
  assertSafetensorsError(() => r.readF32('zzz'), index, /tensor "zzz": no such tensor in this checkpoint/);
  writeFileSync(join(d, 's2.safetensors'), 'garbage!garbage!');
  assertSafetensorsError(() => r.readF32('c'), join(d, 's2.safetensors'), /header length/);
  r.close();
  assertSafetensorsError(() => r.names(), index, /reader is closed/);
  unlinkSync(index);

  writeSafetensors(join(d, SINGLE_FILE), [{ name: 'x', dtype: 'F16', shape: [1], data: new Float32Array([2]) }]);
  const single = openCheckpoint(d);
  assert.equal(single.indexPath, undefined);
  assert.deepEqual(single.readF32('x'), new Float32Array([2]));
  assertSafetensorsError(() => single.readF32('y'), join(d, SINGLE_FILE), /tensor "y": no such tensor/);
  single.close();
});

test('a weight_map entry nested too deeply to print is a SafetensorsError naming the index, not a RangeError', () => {
  const d = newDir();
  const index = join(d, INDEX_FILE);
  writeFileSync(index, `{"metadata": {}, "weight_map": {"a": ${'['.repeat(100_000)}${']'.repeat(100_000)}}}`);
  assertSafetensorsError(() => openCheckpoint(d), index, /weight_map entry for tensor "a" is not a shard file name in this directory \(got a deeply nested array\)/);
});

test('writeSharded reports bad tensors before touching the directory', () => {
  const d = newDir();
  const f = new Float32Array(2);
  assertSafetensorsError(
    () => writeSharded(d, [{ name: 'a', dtype: 'F32', shape: [2], data: f }, { name: 'b', dtype: 'F32', shape: [2], data: f }, { name: 'a', dtype: 'F32', shape: [2], data: f }], { maxShardBytes: 8 }),
    join(d, INDEX_FILE),
    /tensor "a": duplicate tensor name/,
  );
  assert.deepEqual(readdirSync(d), []);
});
