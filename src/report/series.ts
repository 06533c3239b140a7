/** Turning a run's steps into what the charts plot: thinned series, layer means, expert load. */
import type { ReportStep } from './runs.js';

/** Points per plotted series at most: more is invisible at chart width and bloats the page. */
export const MAX_POINTS = 500;

/**
 * Evenly thin `xs` to at most `max` items, always keeping the first and the last.
 * @example downsample([1, 2, 3, 4, 5], 3) // [1, 3, 5]
 */
export function downsample<T>(xs: readonly T[], max = MAX_POINTS): T[] {
  if (xs.length <= max) return [...xs];
  if (max < 2) return [xs[xs.length - 1]!];
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(xs[Math.round((i * (xs.length - 1)) / (max - 1))]!);
  return out;
}

/** Mean of the finite values, NaN when there are none. */
export function finiteMean(xs: readonly number[]): number {
  let s = 0;
  let n = 0;
  for (const x of xs) {
    if (Number.isFinite(x)) {
      s += x;
      n++;
    }
  }
  return n ? s / n : Number.NaN;
}

/** Number of MoE layers a run reports (the widest per-layer array seen in its last step). */
export function moeLayers(steps: readonly ReportStep[]): number {
  const last = steps[steps.length - 1];
  return last ? Math.max(last.alpha.length, last.dropRate.length, last.tokensPerExpert.length) : 0;
}

/** The steps of the last `fraction` of a run (at least one). */
export function lastSteps(steps: readonly ReportStep[], fraction: number): ReportStep[] {
  const n = Math.max(1, Math.ceil(steps.length * fraction));
  return steps.slice(steps.length - n);
}

/**
 * Fraction of each layer's routed tokens that went to each expert, pooled over `steps`:
 * result[layer][expert], each row summing to 1 (or all NaN when the layer saw no tokens).
 */
export function expertLoad(steps: readonly ReportStep[]): number[][] {
  const sums: number[][] = [];
  for (const s of steps) {
    s.tokensPerExpert.forEach((row, l) => {
      const acc = (sums[l] ??= []);
      row.forEach((c, e) => {
        acc[e] = (acc[e] ?? 0) + (Number.isFinite(c) ? c : 0);
      });
    });
  }
  return sums.map((row) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((c) => (total > 0 ? c / total : Number.NaN));
  });
}
