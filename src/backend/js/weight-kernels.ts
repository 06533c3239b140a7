/**
 * The js reference kernels for weights in their storage dtype (f32, bf16, f16, f8_e4m3 with
 * per-tensor and per-row scales): each element decoded exactly from its bytes, products summed in
 * float64. Written for clarity: the oracle the native and wasm weight kernels are tested against.
 */
import { type Kernels, type Ptr, WEIGHT_DTYPE_BYTES, WeightDType, type WeightRef } from '../backend.js';
import type { Heap } from '../heap.js';

const word = new Uint32Array(1);
const asFloat = new Float32Array(word.buffer);

/** float8_e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; subnormals at exponent 0; 0x7F/0xFF NaN. */
const E4M3 = Float64Array.from({ length: 256 }, (_, c) => {
  const sign = c & 0x80 ? -1 : 1, e = (c >> 3) & 15, m = c & 7;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7));
});

function f16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (e === 0 ? (m / 1024) * 2 ** -14 : (1 + m / 1024) * 2 ** (e - 15));
}

/** The element decoder of a weight over the heap's current bytes (byte offset -> stored value). */
function decoder(heap: Heap, dtype: WeightDType): (at: number) => number {
  const u8 = heap.u8;
  const u16 = (at: number) => u8[at]! | (u8[at + 1]! << 8);
  switch (dtype) {
    case WeightDType.F32:
      return (at) => {
        word[0] = (u8[at]! | (u8[at + 1]! << 8) | (u8[at + 2]! << 16) | (u8[at + 3]! << 24)) >>> 0;
        return asFloat[0]!;
      };
    case WeightDType.BF16:
      return (at) => {
        word[0] = u16(at) << 16;
        return asFloat[0]!;
      };
    case WeightDType.F16:
      return (at) => f16(u16(at));
    case WeightDType.F8E4M3:
      return (at) => E4M3[u8[at]!]!;
  }
}

/** Per-row multiplier of a weight: scale x rowScale[r]. */
function rowScaler(heap: Heap, w: WeightRef): (r: number) => number {
  if (w.rowScale === null) return () => w.scale;
  const f = heap.f32, base = w.rowScale / 4;
  return (r) => w.scale * f[base + r]!;
}

export function makeJsWeightKernels(heap: Heap): Pick<Kernels, 'linearW' | 'groupedLinearW' | 'gatherRowsW' | 'dequantize'> {
  /** y[i, j] = sum_p x[i, p] W[j, p] for rows i of x starting at xRow, into y rows starting at the same index. */
  function linear(x: Ptr, w: WeightRef, y: Ptr, rows: number, k: number, n: number): void {
    const dec = decoder(heap, w.dtype), sc = rowScaler(heap, w), f = heap.f32;
    const es = WEIGHT_DTYPE_BYTES[w.dtype]!;
    const X = x / 4, Y = y / 4;
    for (let j = 0; j < n; j++) {
      const row = new Float64Array(k);
      for (let p = 0; p < k; p++) row[p] = dec(w.ptr + (j * k + p) * es);
      const s = sc(j);
      for (let i = 0; i < rows; i++) {
        let acc = 0;
        for (let p = 0; p < k; p++) acc += f[X + i * k + p]! * row[p]!;
        f[Y + i * n + j] = acc * s;
      }
    }
  }

  return {
    linearW(x, w, y, m, k, n) {
      linear(x, w, y, m, k, n);
    },

    groupedLinearW(x, ws, y, offsets, n, k) {
      for (let g = 0; g + 1 < offsets.length; g++) {
        const r0 = offsets[g]!, rows = offsets[g + 1]! - r0;
        if (rows > 0) linear(x + 4 * r0 * k, ws.refs[g]!, y + 4 * r0 * n, rows, k, n);
      }
    },

    gatherRowsW(w, _rows, ids, out, count, cols) {
      const dec = decoder(heap, w.dtype), sc = rowScaler(heap, w), f = heap.f32, i32 = heap.i32;
      const es = WEIGHT_DTYPE_BYTES[w.dtype]!;
      for (let i = 0; i < count; i++) {
        const r = i32[ids / 4 + i]!, s = sc(r);
        for (let c = 0; c < cols; c++) f[out / 4 + i * cols + c] = dec(w.ptr + (r * cols + c) * es) * s;
      }
    },

    dequantize(w, out, rows, cols) {
      const dec = decoder(heap, w.dtype), sc = rowScaler(heap, w), f = heap.f32;
      const es = WEIGHT_DTYPE_BYTES[w.dtype]!;
      for (let r = 0; r < rows; r++) {
        const s = sc(r);
        for (let c = 0; c < cols; c++) f[out / 4 + r * cols + c] = dec(w.ptr + (r * cols + c) * es) * s;
      }
    },
  };
}
