/**
 * Test weights in every storage dtype: random stored bytes (f8 with +-448 and subnormals), scales,
 * and placing them in a backend's heap. Shared by the weight-kernel tests.
 */
import { type Backend, WEIGHT_DTYPE_BYTES, WeightDType, type WeightRef } from '../../src/backend/backend.js';
import { randomArray } from '../helpers.js';

export const DTYPES = [WeightDType.F32, WeightDType.BF16, WeightDType.F16, WeightDType.F8E4M3] as const;
export const NAME = ['f32', 'bf16', 'f16', 'f8_e4m3'];

let nextSeed = 11;
const rand = (n: number, scale = 1, seed = nextSeed++) => randomArray(Math.max(1, n), seed, scale);

/** Random stored bytes of `count` elements: finite values only (no NaN/Inf codes); f8 includes +-448 and subnormals. */
export function weightBytes(dtype: WeightDType, count: number, seed = nextSeed++): Uint8Array {
  const out = new Uint8Array(count * WEIGHT_DTYPE_BYTES[dtype]!);
  const r = rand(count * 2, 1, seed);
  for (let i = 0; i < count; i++) {
    const u = Math.floor(((r[2 * i]! + 1) / 2) * 65536) & 0xffff, v = Math.floor(((r[2 * i + 1]! + 1) / 2) * 65536) & 0xffff;
    if (dtype === WeightDType.F32) new DataView(out.buffer).setFloat32(4 * i, r[2 * i]! * 3, true);
    else if (dtype === WeightDType.BF16) {
      // sign, exponent in [100, 140] (values ~1e-8..1e4: products stay in float32 range), random mantissa
      const bits = (u & 0x8000) | ((100 + (v % 41)) << 7) | (u & 0x7f);
      out[2 * i] = bits & 0xff;
      out[2 * i + 1] = bits >> 8;
    } else if (dtype === WeightDType.F16) {
      const bits = (u & 0x8000) | ((v % 31) << 10) | (u & 0x3ff); // exponent 0..30: subnormals included, no Inf/NaN
      out[2 * i] = bits & 0xff;
      out[2 * i + 1] = bits >> 8;
    } else {
      let b = u & 0xff;
      if ((b & 0x7f) === 0x7f) b ^= 1; // NaN codes are not weights
      if (i % 17 === 3) b = 0x7e; // +448
      if (i % 17 === 5) b = 0xfe; // -448
      if (i % 17 === 7) b = (u & 0x80) | (u & 7); // subnormal
      out[i] = b;
    }
  }
  return out;
}

export interface Placed {
  ref: WeightRef;
  free: () => void;
}

/** Put bytes (and row scales) into a backend's heap at an offset within a fresh block. */
export function place(be: Backend, bytes: Uint8Array, dtype: WeightDType, scale: number, rowScale: Float32Array | null, misalign = 0): Placed {
  const block = be.alloc(bytes.length + 64);
  be.writeBytes(block + misalign, bytes);
  let rs: number | null = null;
  if (rowScale) {
    rs = be.alloc(rowScale.byteLength);
    be.write(rs, rowScale);
  }
  return { ref: { ptr: block + misalign, dtype, scale, rowScale: rs }, free: () => (be.free(block), rs !== null && be.free(rs)) };
}

export function f32In(be: Backend, data: Float32Array): number {
  const p = be.alloc(Math.max(4, data.byteLength));
  be.write(p, data);
  return p;
}

export interface Case {
  dtype: WeightDType;
  bytes: Uint8Array;
  scale: number;
  rowScale: Float32Array | null;
}

/** A weight case; the same `seed` gives the same weight (default: a new one each call). */
export function makeCase(dtype: WeightDType, rows: number, cols: number, scaling: 'none' | 'tensor' | 'row' | 'both', seed = nextSeed++): Case {
  return {
    dtype,
    bytes: weightBytes(dtype, rows * cols, seed),
    scale: scaling === 'tensor' || scaling === 'both' ? 0.37 : 1,
    rowScale: scaling === 'row' || scaling === 'both' ? rand(rows, 1, seed + 1e6).map((v) => 0.5 + Math.abs(v)) : null,
  };
}

/** linearW of weight case `c` on `be` (output starting as garbage), copied out. */
export function linearOn(be: Backend, c: Case, x: Float32Array, m: number, k: number, n: number, misalign = 0, rowInvariant = false): Float32Array {
  const w = place(be, c.bytes, c.dtype, c.scale, c.rowScale, misalign);
  const xp = f32In(be, x), yp = f32In(be, rand(m * n));
  be.kernels.linearW(xp, w.ref, yp, m, k, n, rowInvariant);
  const y = be.readF32(yp, m * n);
  be.free(xp), be.free(yp), w.free();
  return y;
}
