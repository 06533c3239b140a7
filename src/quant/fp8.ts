/**
 * FP8 (float8_e4m3fn) and bf16 weight formats: per-tensor or per-row scales chosen from the
 * absolute maximum (the weight-only scheme of Skywork-MoE-Base-FP8 and vLLM's "fp8" method: real
 * value = stored x scale, stored in [-448, 448]), and the error a conversion makes.
 */
import { decodeE4M3, encodeBf16, encodeE4M3 } from '../io/dtypes.js';

/** The largest finite float8_e4m3fn value. */
export const E4M3_MAX = 448;

export interface Fp8Tensor {
  codes: Uint8Array;
  /** One scale for the tensor, or one per row. */
  scale: number | Float32Array;
}

/**
 * Quantize `values` ([rows, cols], row-major) to E4M3 with the scale amax / 448 per tensor (default)
 * or per row. An all-zero tensor or row gets scale 1.
 * @example quantizeFp8(new Float32Array([0.5, -2, 1]), 1, 3).scale // 2 / 448
 */
export function quantizeFp8(values: Float32Array, rows: number, cols: number, perRow = false): Fp8Tensor {
  const codes = new Uint8Array(values.length);
  const scaleOf = (lo: number, hi: number) => {
    let amax = 0;
    for (let i = lo; i < hi; i++) amax = Math.max(amax, Math.abs(values[i]!));
    return amax > 0 && Number.isFinite(amax) ? amax / E4M3_MAX : 1;
  };
  const encodeRange = (lo: number, hi: number, s: number) => codes.set(encodeFp8At(values.subarray(lo, hi), s), lo);
  if (!perRow) {
    const s = scaleOf(0, values.length);
    encodeRange(0, values.length, s);
    return { codes, scale: s };
  }
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    scales[r] = scaleOf(r * cols, (r + 1) * cols);
    encodeRange(r * cols, (r + 1) * cols, scales[r]!);
  }
  return { codes, scale: scales };
}

/** E4M3 codes of values / scale (values beyond 448 x scale saturate). */
export function encodeFp8At(values: Float32Array, scale: number): Uint8Array {
  const inv = 1 / scale;
  return encodeE4M3(values.map((v) => v * inv));
}

/** The real values of an FP8 tensor. */
export function dequantizeFp8(t: Fp8Tensor, rows: number, cols: number): Float32Array {
  const out = decodeE4M3(t.codes);
  for (let r = 0; r < rows; r++) {
    const s = typeof t.scale === 'number' ? t.scale : t.scale[r]!;
    for (let c = 0; c < cols; c++) out[r * cols + c]! *= s;
  }
  return out;
}

/** bf16 bytes (little-endian) of float32 values, rounded to nearest even. */
export function bf16Bytes(values: Float32Array): Uint8Array {
  const u16 = encodeBf16(values);
  return new Uint8Array(u16.buffer, u16.byteOffset, u16.byteLength);
}

export interface QuantizationError {
  /** sqrt(mean (q - x)^2) / sqrt(mean x^2). */
  relRms: number;
  maxAbs: number;
}

/** How far `approx` is from `exact`. */
export function quantizationError(exact: Float32Array, approx: Float32Array): QuantizationError {
  let se = 0, sx = 0, maxAbs = 0;
  for (let i = 0; i < exact.length; i++) {
    const d = approx[i]! - exact[i]!;
    se += d * d;
    sx += exact[i]! * exact[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { relRms: sx > 0 ? Math.sqrt(se / sx) : Math.sqrt(se), maxAbs };
}
