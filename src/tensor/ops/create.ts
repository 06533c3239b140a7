/** Tensor creation. */
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../engine.js';
import { Rng } from '../random.js';
import { type DType, empty, numel, ShapeError, type Tensor } from '../tensor.js';

/** A tensor from host values (f32 unless an Int32Array or dtype 'i32' is given). */
export function tensor(data: ArrayLike<number>, shape?: readonly number[], dtype?: DType, backend: Backend = currentBackend()): Tensor {
  const dt: DType = dtype ?? (data instanceof Int32Array ? 'i32' : 'f32');
  const s = shape ?? [data.length];
  if (numel(s) !== data.length) throw new ShapeError(`tensor: ${data.length} values do not fill shape [${s}]`);
  const t = empty(s, dt, backend);
  t.assign(dt === 'f32' ? Float32Array.from(data) : Int32Array.from(data));
  return t;
}

export function full(shape: readonly number[], value: number, dtype: DType = 'f32', backend: Backend = currentBackend()): Tensor {
  const t = empty(shape, dtype, backend);
  backend.kernels.fill(t.ptr, t.size, value, dtype === 'i32');
  return t;
}

export function zeros(shape: readonly number[], dtype: DType = 'f32', backend: Backend = currentBackend()): Tensor {
  return full(shape, 0, dtype, backend);
}

export function ones(shape: readonly number[], backend: Backend = currentBackend()): Tensor {
  return full(shape, 1, 'f32', backend);
}

/** Normal(0, std^2) values from a seeded generator. */
export function randn(shape: readonly number[], rng: Rng, std = 1, backend: Backend = currentBackend()): Tensor {
  const n = numel(shape);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * std;
  return empty(shape, 'f32', backend).assign(v);
}

/** Uniform [lo, hi) values. */
export function uniform(shape: readonly number[], rng: Rng, lo = 0, hi = 1, backend: Backend = currentBackend()): Tensor {
  const n = numel(shape);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.float();
  return empty(shape, 'f32', backend).assign(v);
}

/** A parameter: a leaf that accumulates gradients. */
export function parameter(t: Tensor, name?: string): Tensor {
  t.requiresGrad = true;
  if (name !== undefined) t.name = name;
  return t;
}

export { Rng };
