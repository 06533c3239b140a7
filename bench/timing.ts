/** Shared benchmark helpers: medians, timed calls, random heap blocks. */
import type { Backend } from '../src/backend/backend.js';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/**
 * Median seconds per call: one warm-up call, then 7 runs of at least ~50 ms each (the repeat
 * count is sized from `flops` and a guess of the speed, `guessFlopsPerSec`).
 */
export function timeCall(fn: () => void, flops: number, guessFlopsPerSec: number): number {
  fn();
  const perRun = Math.max(1, Math.round(0.05 / (flops / guessFlopsPerSec)));
  const times: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    for (let i = 0; i < perRun; i++) fn();
    times.push((performance.now() - t0) / 1e3 / perRun);
  }
  return median(times);
}

/** A heap block of n floats uniform in [-0.5, 0.5). */
export function randomBlock(be: Backend, n: number): number {
  const p = be.alloc(n * 4);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.random() - 0.5;
  be.write(p, x);
  return p;
}
