/**
 * Cross-check against Python when python3 with numpy is installed (skipped otherwise): numpy
 * parses our files with its own code, and numpy's float32 -> float16 cast (round to nearest even)
 * must give the same bits as our encoder.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { encodeF16, openSafetensors, writeSafetensors } from '../../src/io/index.js';
import { randomArray } from '../helpers.js';
import { tempDir } from './fixtures.js';

const { dir, cleanup } = tempDir();
after(cleanup);

function python(script: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return r.stdout;
}

const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;

const READ = `
import json, struct, sys
import numpy as np
path = sys.argv[1]
with open(path, 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
out = {}
kinds = {'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4'}
for name, e in header.items():
    if name == '__metadata__':
        out[name] = e
        continue
    b, end = e['data_offsets']
    raw = data[b:end]
    if e['dtype'] == 'BF16':
        v = (np.frombuffer(raw, '<u2').astype(np.uint32) << 16).view(np.float32)
    else:
        v = np.frombuffer(raw, kinds[e['dtype']])
    out[name] = {'shape': e['shape'], 'values': v.reshape(e['shape']).ravel().tolist()}
print(json.dumps(out))
`;

test('numpy reads files we write', { skip: !hasNumpy && 'python3 with numpy not installed' }, () => {
  const path = join(dir, 'ours.safetensors');
  const w = randomArray(24, 7);
  writeSafetensors(
    path,
    [
      { name: 'w32', dtype: 'F32', shape: [4, 6], data: w },
      { name: 'w16', dtype: 'F16', shape: [24], data: w },
      { name: 'wbf', dtype: 'BF16', shape: [2, 12], data: w },
      { name: 'ids', dtype: 'I64', shape: [3], data: new BigInt64Array([-1n, 0n, 2n ** 40n]) },
    ],
    { format: 'pt' },
  );
  const got = JSON.parse(python(READ, path));
  const r = openSafetensors(path);
  assert.deepEqual(got.__metadata__, { format: 'pt' });
  for (const name of ['w32', 'w16', 'wbf']) assert.deepEqual(got[name].values, [...r.readF32(name)], name);
  assert.deepEqual(got.ids.values, [-1, 0, 2 ** 40]);
  r.close();
});

const CAST = `
import json, struct, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
with open(src, 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
b, e = header['x']['data_offsets']
with np.errstate(all='ignore'):
    h = np.frombuffer(data[b:e], '<f4').astype(np.float16)
raw = h.astype('<f2').tobytes()
head = json.dumps({'x': {'dtype': 'F16', 'shape': [len(h)], 'data_offsets': [0, len(raw)]}}).encode()
head += b' ' * (-len(head) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(head)) + head + raw)
`;

test('our F16 encoder matches numpy on random float32 bit patterns', { skip: !hasNumpy && 'python3 with numpy not installed' }, () => {
  const n = 200_000;
  const bits = new Uint32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    bits[i] = (s ^ (s >>> 13) ^ Math.imul(i, 2654435761)) >>> 0;
  }
  // Bias half the samples into F16's range, where rounding is interesting.
  for (let i = 0; i < n; i += 2) bits[i] = (bits[i]! & 0x807fffff) | ((0x67 + (bits[i]! % 0x1e)) << 23);
  const x = new Float32Array(bits.buffer);
  const src = join(dir, 'cast-in.safetensors');
  const dst = join(dir, 'cast-out.safetensors');
  writeSafetensors(src, [{ name: 'x', dtype: 'F32', shape: [n], data: x }]);
  python(CAST, src, dst);
  const r = openSafetensors(dst);
  const theirs = new Uint16Array(r.readRaw('x').buffer);
  r.close();
  const ours = encodeF16(x);
  for (let i = 0; i < n; i++) {
    const nan = (ours[i]! & 0x7c00) === 0x7c00 && (ours[i]! & 0x3ff) !== 0;
    if (nan) assert.ok((theirs[i]! & 0x7c00) === 0x7c00 && (theirs[i]! & 0x3ff) !== 0, `NaN at ${i}`);
    else assert.equal(ours[i], theirs[i], `float32 0x${bits[i]!.toString(16)}: ours 0x${ours[i]!.toString(16)}, numpy 0x${theirs[i]!.toString(16)}`);
  }
});
