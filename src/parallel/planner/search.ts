/**
 * Layout search: enumerate TP (inside a node, dividing the heads), PP, DP, micro-batch, virtual
 * stages and expert placement; for each grid let the balancer choose layers and recomputation per
 * stage under the GPU's memory; rank what fits by tokens/s per GPU. Pruning: TP never crosses a
 * node, PP never exceeds the layers, the interleaved schedule only where Megatron allows it
 * (layers divide into pp x vp chunks, micro-batches a multiple of pp), expert groups only where
 * they divide the experts and the TP x DP grid.
 */
import type { ModelShape } from './flops.js';
import { cluster, type Cluster } from './gpus.js';
import { balanceStages, evaluateSplit } from './pipeline.js';
import { placementProblem } from './placement.js';
import { evenStages, RECOMPUTE_MODES, type ExpertPlacement, type Layout, type Recompute, type TrainingSetup, placementSizes } from './setup.js';
import { boundOf, evaluate, stageModels, type Evaluation } from './step.js';

export interface SearchOptions {
  /** Micro-batch sizes to try (default 1, 2, 4, 8). */
  microBatches?: number[];
  /** Recomputation modes the balancer may use (default all). */
  recompute?: readonly Recompute[];
  /** Try interleaved schedules (default true). */
  interleave?: boolean;
  /** Restrict to these placements. */
  placements?: readonly ExpertPlacement[];
  /** Expert-parallel sizes exactly as SPEC section 5 defines them (no partial EP groups). */
  specSizesOnly?: boolean;
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

interface Grid {
  tp: number;
  pp: number;
  dp: number;
  vp: number;
  microBatch: number;
  expert: ExpertPlacement;
  ep: number;
  etp: number;
}

/** Expert meshes to try on a TP x DP grid. */
function expertChoices(m: ModelShape, tp: number, dp: number, o: SearchOptions): { expert: ExpertPlacement; ep: number; etp: number }[] {
  if (!m.experts) return [{ expert: 'edp', ep: 1, etp: 1 }];
  const allow = (k: ExpertPlacement) => !o.placements || o.placements.includes(k);
  const out: { expert: ExpertPlacement; ep: number; etp: number }[] = [];
  if (allow('edp') && m.experts % tp === 0) out.push({ expert: 'edp', ep: tp, etp: 1 });
  if (o.specSizesOnly) {
    for (const k of ['ep', 'etp'] as const) if (allow(k) && placementProblem(k, m, tp, dp) === null && !(k === 'etp' && tp === 1)) out.push({ expert: k, ...placementSizes(k, tp, dp) });
    return out;
  }
  if (allow('ep')) for (const ep of divisors(m.experts)) if (ep > 1 && ep !== tp && (tp * dp) % ep === 0) out.push({ expert: 'ep', ep, etp: 1 });
  if (allow('etp') && tp > 1 && m.expertFfn % tp === 0) for (const ep of divisors(m.experts)) if (dp % ep === 0) out.push({ expert: 'etp', ep, etp: tp });
  return out;
}

/** Layers and recomputation per stage for a grid: balanced (vp 1) or even (interleaved); null when nothing fits. */
export function splitFor(m: ModelShape, s: TrainingSetup, g: Grid, c: Cluster, recompute: readonly Recompute[] = RECOMPUTE_MODES, balanced = true): Layout | null {
  const base: Layout = { ...g, stages: evenStages(m.layers, g.pp), recompute: Array<Recompute>(g.pp).fill('none') };
  const models = stageModels(m, s, base, c);
  const cap = c.gpu.memoryBytes;
  const split = balanced && g.vp === 1 ? balanceStages(models, m.layers, cap, recompute) : evaluateSplit(models, base.stages, cap, recompute);
  return split ? { ...base, stages: split.layers, recompute: split.recompute } : null;
}

/** The even split with one recomputation mode for every stage (what plain Megatron flags give). */
export function uniformFor(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster, recompute: readonly Recompute[] = RECOMPUTE_MODES): Layout | null {
  const models = stageModels(m, s, l, c);
  const stages = evenStages(m.layers, l.pp);
  const order = [...recompute].sort((a, b) => models[0]!.perLayer[a] - models[0]!.perLayer[b]);
  for (const r of order) {
    const split = evaluateSplit(models, stages, c.gpu.memoryBytes, [r], Array<Recompute>(l.pp).fill(r));
    if (split && split.stageMemory.every((b) => b <= c.gpu.memoryBytes)) return { ...l, stages, recompute: Array<Recompute>(l.pp).fill(r) };
  }
  return null;
}

export interface RankedPlan {
  evaluation: Evaluation;
  bound: string;
  why: string;
}

export interface SearchResult {
  /** Best first; feasible layouts only. */
  ranked: RankedPlan[];
  considered: number;
  feasible: number;
  elapsedMs: number;
}

export function search(m: ModelShape, s: TrainingSetup, c: Cluster, o: SearchOptions = {}): SearchResult {
  const t0 = performance.now();
  const N = c.gpus;
  const mbs = o.microBatches ?? [1, 2, 4, 8];
  const tps = [1, 2, 4, 8, 16].filter((t) => t <= c.gpusPerNode && N % t === 0 && m.heads % t === 0 && m.kvHeads % t === 0);
  const out: RankedPlan[] = [];
  let considered = 0;
  for (const tp of tps) {
    for (const pp of divisors(N / tp)) {
      if (pp > m.layers) break;
      const dp = N / (tp * pp);
      for (const mb of mbs) {
        if (s.globalBatch % (dp * mb) !== 0) continue;
        const micro = s.globalBatch / (dp * mb);
        const vps = [1];
        if (o.interleave !== false && pp > 1 && micro % pp === 0) for (let v = 2; v <= 8; v++) if (m.layers % (pp * v) === 0) vps.push(v);
        for (const vp of vps) {
          for (const ex of expertChoices(m, tp, dp, o)) {
            considered++;
            const l = splitFor(m, s, { tp, pp, dp, vp, microBatch: mb, ...ex }, c, o.recompute);
            if (!l) continue;
            const e = evaluate(m, s, l, c);
            if (!e.fits) continue;
            const b = boundOf(e, c.gpu.memoryBytes);
            out.push({ evaluation: e, bound: b.bound, why: b.why });
          }
        }
      }
    }
  }
  out.sort((a, b) => b.evaluation.tokensPerGpuSecond - a.evaluation.tokensPerGpuSecond);
  return { ranked: out, considered, feasible: out.length, elapsedMs: performance.now() - t0 };
}

/** The best plan of each SPEC placement at its SPEC sizes, or why none applies. */
export interface PlacementComparison {
  placement: ExpertPlacement;
  best: RankedPlan | null;
  problem: string | null;
}

/** Whether a ranked layout uses a SPEC placement at its SPEC sizes. */
function atSpecSizes(l: Layout, kind: ExpertPlacement): boolean {
  if (l.expert !== kind) return false;
  const want = placementSizes(kind, l.tp, l.dp);
  return l.ep === want.ep && l.etp === want.etp && !(kind === 'etp' && l.tp === 1);
}

/** From a search over all placements, the best layout of each SPEC placement, or why it has none. */
export function comparePlacements(m: ModelShape, c: Cluster, r: SearchResult): PlacementComparison[] {
  if (!m.experts) return [];
  return (['ep', 'etp', 'edp'] as const).map((k) => {
    const best = r.ranked.find((p) => atSpecSizes(p.evaluation.layout, k));
    if (best) return { placement: k, best, problem: null };
    let problem = 'no layout of this placement fits in memory';
    if (k === 'ep' && m.experts * m.layers < c.gpus) problem = `size_EP = DP x TP must be <= ${m.experts} experts: at most ${m.experts} GPUs per stage x ${m.layers} stages = ${m.experts * m.layers} GPUs < ${c.gpus}`;
    else if (k === 'etp') {
      const tp = [8, 4, 2].find((t) => t <= c.gpusPerNode && m.heads % t === 0 && c.gpus % t === 0);
      if (!tp) problem = 'ETP needs TP > 1';
      else {
        const minDp = Math.ceil(c.gpus / (tp * m.layers));
        if (minDp > m.experts) problem = `size_EP = DP must be <= ${m.experts} experts, but DP >= ${minDp} at TP ${tp} with at most ${m.layers} stages`;
      }
    } else if (k === 'edp') {
      const why = placementProblem('edp', m, Math.min(8, c.gpusPerNode), 1);
      if (why) problem = why;
    }
    return { placement: k, best: null, problem };
  });
}

/** Balanced split vs the even splits Megatron gives without uneven-split flags (report appendix B). */
export interface BalanceReport {
  balanced: Evaluation;
  /** The best even split on the same GPUs (same grid when its stage count divides the layers, else any searched grid whose does). */
  even: Evaluation | null;
  /** Even splits on the nearest stage counts that divide the layers, same TP and DP (GPU count changes: compare per GPU), as the report compares [6,6,6,6] with [5,5,5,5,4]. */
  nearby: { evaluation: Evaluation; gpus: number }[];
  /** Balanced tokens/s per GPU over `even`, minus 1 (null when no even split fits these GPUs). */
  gain: number | null;
}

export function balanceReport(m: ModelShape, s: TrainingSetup, l: Layout, c: Cluster, searched?: SearchResult): BalanceReport {
  const g = { ...l, vp: 1 };
  const balancedLayout = splitFor(m, s, g, c) ?? g;
  const balanced = evaluate(m, s, balancedLayout, c);
  const evens: Evaluation[] = [];
  if (m.layers % l.pp === 0) {
    const u = uniformFor(m, s, g, c);
    if (u) evens.push(evaluate(m, s, u, c));
  }
  for (const r of searched?.ranked ?? []) {
    const x = r.evaluation.layout;
    if (m.layers % x.pp !== 0 || evens.length > 8) continue;
    const u = uniformFor(m, s, { ...x, stages: evenStages(m.layers, x.pp) }, c);
    if (u) evens.push(evaluate(m, s, u, c));
  }
  const fitting = evens.filter((e) => e.fits).sort((a, b) => b.tokensPerGpuSecond - a.tokensPerGpuSecond);
  const even = fitting[0] ?? null;
  const counts = m.layers % l.pp === 0 ? [] : [divisors(m.layers).filter((d) => d < l.pp).pop(), divisors(m.layers).find((d) => d > l.pp)].filter((d): d is number => d !== undefined);
  const nearby: BalanceReport['nearby'] = [];
  for (const pp of counts) {
    const gpus = l.tp * pp * l.dp;
    let cu: Cluster;
    try {
      cu = cluster(c.gpu, gpus, { gpusPerNode: c.gpusPerNode, intraNodeGBs: c.intraNodeGBs, interNodeGBs: c.interNodeGBs });
    } catch {
      continue;
    }
    const lu = uniformFor(m, s, { ...g, pp, stages: evenStages(m.layers, pp), recompute: Array<Recompute>(pp).fill('none') }, cu);
    if (lu) nearby.push({ evaluation: evaluate(m, s, lu, cu), gpus });
  }
  return { balanced, even, nearby, gain: even ? balanced.tokensPerGpuSecond / even.tokensPerGpuSecond - 1 : null };
}
