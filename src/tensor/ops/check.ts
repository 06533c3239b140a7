/** Input validation shared by the ops: every error names the op and the shapes at fault. */
import type { Backend } from '../../backend/backend.js';
import { ShapeError, type Tensor, TensorError } from '../tensor.js';

export function sameBackend(op: string, ...ts: Tensor[]): Backend {
  const b = ts[0]!.backend;
  for (const t of ts) if (t.backend !== b) throw new TensorError(`${op}: inputs live on different backends (${b.name} and ${t.backend.name})`);
  return b;
}

export function checkF32(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.dtype !== 'f32') throw new TensorError(`${op}: expected an f32 tensor, got ${t.dtype} [${t.shape}]`);
}

export function checkI32(op: string, what: string, t: Tensor): void {
  if (t.dtype !== 'i32') throw new TensorError(`${op}: ${what} must be an i32 tensor, got ${t.dtype} [${t.shape}]`);
}

export function checkRank(op: string, what: string, t: Tensor, ranks: number[]): void {
  if (!ranks.includes(t.rank)) throw new ShapeError(`${op}: ${what} must have rank ${ranks.join(' or ')}, got [${t.shape}]`);
}

/** Last dimension, and the product of the others. */
export function rowsCols(t: Tensor): [number, number] {
  const cols = t.shape[t.rank - 1] ?? 1;
  return [cols === 0 ? 0 : t.size / cols, cols];
}

/** Every index in [0, limit) (from the host copy when there is one, else read back). Do not modify the result. */
export function checkIndices(op: string, what: string, ids: Tensor, limit: number, allow?: number): Int32Array {
  const v = ids.hostInts ?? (ids.toArray() as Int32Array);
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if ((x < 0 || x >= limit) && x !== allow) throw new ShapeError(`${op}: ${what}[${i}] = ${x} is out of range [0, ${limit})`);
  }
  return v;
}
