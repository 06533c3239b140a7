/** Weight formats: FP8 (E4M3 with per-tensor or per-row scales) and bf16, and the error they make. */
export * from './fp8.js';
