/**
 * Pipeline schedules and the non-uniform stage balancer.
 *
 * Step time of 1F1B with per-micro-batch stage times t_i over m micro-batches: the slowest stage
 * runs m times and the others add their fill and drain once, T = m max(t) + (sum(t) - max(t)).
 * Interleaving over v virtual stages cuts the fill/drain term by v (Narayanan et al. 2021,
 * bubble (p-1)/(v m)); for equal stages both reduce to the textbook (m + (p-1)/v) t.
 *
 * The balancer (report appendix B): each stage i with n layers under recomputation r costs
 * n c_r + e_i per micro-batch (e_0 the embedding, e_{p-1} the output layer and loss) and needs
 * a_i + n b_{i,r} bytes (its in-flight micro-batches grow b toward the first stage). It finds the
 * smallest stage time T for which the stages' capacities cap_i(T) = max over fitting r of
 * min(floor((T - e_i)/c_r), floor((M - a_i)/b_{i,r})) cover all layers, by bisection, then
 * trims the surplus from the slowest stages.
 */
import type { Recompute } from './setup.js';

export function pipelineTime(stageTimes: number[], micro: number, vp = 1): number {
  const max = Math.max(...stageTimes);
  const sum = stageTimes.reduce((a, b) => a + b, 0);
  return micro * max + (sum - max) / vp;
}

/** Idle fraction of the pipeline: 1 - (work of the slowest stage) / step. */
export function bubbleFraction(stageTimes: number[], micro: number, vp = 1): number {
  const t = pipelineTime(stageTimes, micro, vp);
  return 1 - (micro * Math.max(...stageTimes)) / t;
}

/** The linear cost and memory model of one stage. */
export interface StageModel {
  /** Seconds per micro-batch: n * perLayer[r] + extra. */
  perLayer: Record<Recompute, number>;
  extra: number;
  /** Bytes: memFixed[r] + n * memPerLayer[r] (n >= 1). */
  memFixed: Record<Recompute, number>;
  memPerLayer: Record<Recompute, number>;
}

export interface Split {
  layers: number[];
  recompute: Recompute[];
  stageTimes: number[];
  stageMemory: number[];
}

const MODES: Recompute[] = ['none', 'selective', 'full'];

function cheapestFitting(s: StageModel, n: number, capacity: number, allowed: readonly Recompute[]): Recompute | null {
  let best: Recompute | null = null;
  for (const r of allowed) {
    if (n > 0 && s.memFixed[r] + n * s.memPerLayer[r] > capacity) continue;
    if (best === null || s.perLayer[r] < s.perLayer[best]) best = r;
  }
  return best;
}

function describe(stages: StageModel[], layers: number[], recompute: Recompute[]): Split {
  return {
    layers,
    recompute,
    stageTimes: stages.map((s, i) => layers[i]! * s.perLayer[recompute[i]!] + s.extra),
    stageMemory: stages.map((s, i) => s.memFixed[recompute[i]!] + layers[i]! * s.memPerLayer[recompute[i]!]),
  };
}

/**
 * Evaluate a given split with, per stage, the fastest recomputation that fits (or the one given).
 * Returns null when some stage cannot fit with any allowed mode.
 */
export function evaluateSplit(stages: StageModel[], layers: number[], capacity: number, allowed: readonly Recompute[] = MODES, fixed?: Recompute[]): Split | null {
  const rc: Recompute[] = [];
  for (let i = 0; i < stages.length; i++) {
    const r = fixed ? fixed[i]! : cheapestFitting(stages[i]!, layers[i]!, capacity, allowed);
    if (r === null) return null;
    rc.push(r);
  }
  return describe(stages, layers, rc);
}

function capacityAt(s: StageModel, T: number, mem: number, allowed: readonly Recompute[]): number {
  let cap = -1;
  for (const r of allowed) {
    const byTime = s.perLayer[r] > 0 ? Math.floor((T - s.extra) / s.perLayer[r] + 1e-9) : Number.MAX_SAFE_INTEGER;
    const byMem = s.memPerLayer[r] > 0 ? Math.floor((mem - s.memFixed[r]) / s.memPerLayer[r]) : Number.MAX_SAFE_INTEGER;
    if (T < s.extra) continue;
    if (s.memFixed[r] > mem) {
      cap = Math.max(cap, 0);
      continue;
    }
    cap = Math.max(cap, Math.min(byTime, byMem));
  }
  return cap;
}

/**
 * Layers (and recomputation) per stage minimizing the slowest stage under each stage's memory;
 * null when no split fits.
 */
export function balanceStages(stages: StageModel[], totalLayers: number, capacity: number, allowed: readonly Recompute[] = MODES): Split | null {
  const p = stages.length;
  const feasible = (T: number) => {
    let sum = 0;
    for (const s of stages) {
      const c = capacityAt(s, T, capacity, allowed);
      if (c < 0) return false;
      sum += c;
      if (sum >= totalLayers) return true;
    }
    return sum >= totalLayers;
  };
  let hi = Math.max(...stages.map((s) => s.extra)) + totalLayers * Math.max(...stages.map((s) => Math.max(...allowed.map((r) => s.perLayer[r]))));
  if (!feasible(hi)) return null;
  let lo = 0;
  for (let it = 0; it < 40 && hi - lo > hi * 1e-6; it++) {
    const mid = (lo + hi) / 2;
    if (feasible(mid)) hi = mid;
    else lo = mid;
  }
  const caps = stages.map((s) => Math.max(0, capacityAt(s, hi, capacity, allowed)));
  const layers = caps.slice();
  let surplus = layers.reduce((a, b) => a + b, 0) - totalLayers;
  // trim the surplus one layer at a time from the slowest stage (on ties the one with more layers, then the later one)
  const time = (i: number, n: number) => {
    const r = cheapestFitting(stages[i]!, n, capacity, allowed);
    return r === null ? Infinity : n * stages[i]!.perLayer[r] + stages[i]!.extra;
  };
  while (surplus > 0) {
    let worst = -1;
    for (let i = 0; i < p; i++) {
      if (layers[i]! === 0) continue;
      if (worst < 0) {
        worst = i;
        continue;
      }
      const ti = time(i, layers[i]!), tw = time(worst, layers[worst]!);
      if (ti > tw + 1e-12 || (Math.abs(ti - tw) <= 1e-12 && layers[i]! >= layers[worst]!)) worst = i;
    }
    layers[worst]!--;
    surplus--;
  }
  return evaluateSplit(stages, layers, capacity, allowed);
}
