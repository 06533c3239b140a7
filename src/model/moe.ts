/**
 * The MoE block: router (gating logit normalization, fp32 softmax, top-k, renormalize), capacity
 * with a drop policy, dispatch by sorting assignments by expert, the grouped expert FFN,
 * un-permute and weighted combine; plus the per-layer aux losses and router statistics.
 *
 * SPEC section 1 (the released weights' forward):
 *   logits = x @ Wg^T;  logits /= std(logits, unbiased) / lambda;  p = softmax(logits)
 *   (w, idx) = topk(p, k);  w /= sum(w);  y = sum_k w_k * W2(silu(W1 x) * W3 x)
 * Qwen3-MoE and OLMoE renormalize w only with norm_topk_prob (OLMoE-1B-7B: no): y then sums the
 * gate probabilities of the k experts as they are.
 */
import * as T from '../tensor/index.js';
import type { ExpertWeights, Tensor } from '../tensor/index.js';
import type { ModelConfig } from './config.js';
import { type ExpertParallelOps, unevenSplit } from './shard.js';

/** Which assignments an over-full expert drops first. */
export type DropPolicy = 'probability' | 'position';

/** Training-time routing options (not part of the checkpoint config). */
export interface MoeOptions {
  /** capacity = ceil(capacityFactor * tokens * k / E) per expert; null: dropless (inference). */
  capacityFactor: number | null;
  /** 'probability': lowest gate probability dropped first; 'position': last token first. */
  dropPolicy: DropPolicy;
  /** Which auxiliary load-balancing loss to compute (the trainer weights it). */
  auxLoss: 'skywork' | 'switch' | 'none';
  /** Also compute the router z-loss, mean(logsumexp(logits)^2). */
  zLoss: boolean;
  /** Aux-loss-free balancing: a per-expert bias added to the routing scores for top-k selection only. */
  expertBias?: Float32Array;
  /**
   * Tensor parallelism (model/shard.ts): routing is replicated; this rank runs experts [from, to)
   * (edp: its whole experts, the weights hold only them) or every expert's slice of the FFN
   * (etp: experts null), and `combine` sums the partial outputs over the group. `copy` marks the
   * experts' input so that its gradient is summed over the group.
   */
  parallel?: { experts: [number, number] | null; copy(x: Tensor): Tensor; combine(y: Tensor): Tensor; ep?: ExpertParallelOps };
}

export const DROPLESS: MoeOptions = { capacityFactor: null, dropPolicy: 'probability', auxLoss: 'none', zLoss: false };

export interface RouterStats {
  /** Assignments routed to each expert before capacity. */
  routedPerExpert: number[];
  /** Assignments each expert processed (after drops). */
  tokensPerExpert: number[];
  /** Dropped assignments / (tokens * k). */
  dropRate: number;
  /** Mean over tokens of p_(1)/p_(2) and p_(2)/p_(3) of the full gate distribution. */
  max1OverMax2: number;
  max2OverMax3: number;
  /** Mean over tokens of -sum_j p_j log p_j (nats). */
  entropy: number;
  capacity: number | null;
}

export interface MoeOutput {
  y: Tensor;
  /** Unweighted aux loss of this layer (scalar), when asked for. */
  aux: Tensor | null;
  zLoss: Tensor | null;
  stats: RouterStats;
}

/**
 * The weights of one MoE layer. The router is f32 (it stays high precision in every checkpoint
 * format); the experts are stacked f32 tensors (w1, w3 [E, F, H]; w2 [E, H, F]; trainable) or one
 * weight per expert in a storage dtype (inference, possibly read in place from the checkpoint).
 */
export interface MoeWeights {
  gate: Tensor; // (E, H), or the first layer of a 2-layer gate (8E, H)
  gate2?: Tensor; // (E, 8E)
  w1: Tensor | ExpertWeights;
  w3: Tensor | ExpertWeights;
  w2: Tensor | ExpertWeights;
}

/** The routing plan: which assignment goes where, computed on the host from the top-k result. */
export interface DispatchPlan {
  /** Kept assignment ids (a = token * k + slot), sorted by expert then token. */
  order: Int32Array;
  /** Token of each entry of `order`. */
  tokenOf: Int32Array;
  /** Group offsets into `order` per expert (E + 1). */
  offsets: Int32Array;
  routed: number[];
  dropped: number;
  capacity: number | null;
}

/**
 * Sort assignments by expert and apply capacity. `experts` [N*k] expert ids, `probs` [N*k] the
 * gate probabilities used by the 'probability' policy.
 */
export function planDispatch(experts: Int32Array, probs: Float32Array, N: number, k: number, E: number, opts: Pick<MoeOptions, 'capacityFactor' | 'dropPolicy'>): DispatchPlan {
  const byExpert: number[][] = Array.from({ length: E }, () => []);
  for (let a = 0; a < N * k; a++) byExpert[experts[a]!]!.push(a); // token order within an expert
  const routed = byExpert.map((l) => l.length);
  const capacity = opts.capacityFactor === null ? null : Math.ceil((opts.capacityFactor * N * k) / E);
  let dropped = 0;
  if (capacity !== null) {
    for (let e = 0; e < E; e++) {
      const l = byExpert[e]!;
      if (l.length <= capacity) continue;
      dropped += l.length - capacity;
      let keep: number[];
      if (opts.dropPolicy === 'position') keep = l.slice(0, capacity);
      else {
        keep = [...l].sort((a, b) => probs[b]! - probs[a]! || a - b).slice(0, capacity);
        keep.sort((a, b) => a - b);
      }
      byExpert[e] = keep;
    }
  }
  const offsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e]! + byExpert[e]!.length;
  const order = Int32Array.from(byExpert.flat());
  const tokenOf = order.map((a) => Math.floor(a / k));
  return { order, tokenOf, offsets, routed, dropped, capacity };
}

/** Router diagnostics from the full gate distribution p [N, E] (host copy). */
function gateStats(p: Float32Array, N: number, E: number): Pick<RouterStats, 'max1OverMax2' | 'max2OverMax3' | 'entropy'> {
  let r12 = 0, r23 = 0, ent = 0;
  for (let i = 0; i < N; i++) {
    let m1 = -1, m2 = -1, m3 = -1;
    for (let j = 0; j < E; j++) {
      const v = p[i * E + j]!;
      if (v > 0) ent -= v * Math.log(v);
      if (v > m1) [m1, m2, m3] = [v, m1, m2];
      else if (v > m2) [m2, m3] = [v, m2];
      else if (v > m3) m3 = v;
    }
    r12 += m2 > 0 ? m1 / m2 : 0;
    r23 += m3 > 0 ? m2 / m3 : 0;
  }
  return { max1OverMax2: N ? r12 / N : 0, max2OverMax3: E >= 3 && N ? r23 / N : 0, entropy: N ? ent / N : 0 };
}

/** The gate logits [N, E]: one linear, or Linear -> tanh -> Linear (fp32 throughout). */
function gateLogits(x: Tensor, w: MoeWeights): Tensor {
  if (w.gate2) return T.linear(T.tanh(T.linear(x, w.gate)), w.gate2);
  return T.linear(x, w.gate);
}

/** The router's result for N tokens. */
export interface Routing {
  /** The logits that enter the softmax: normalized when logit normalization is on. (N, E) */
  logits: Tensor;
  /** Gate probabilities over all experts, fp32. (N, E) */
  p: Tensor;
  /** The k experts of each token, best first (ties: lower index first). [N*k] */
  experts: Int32Array;
  /** Their combine weights: the gate probabilities, renormalized over the k when normTopK. (N, K) */
  weights: Tensor;
}

/**
 * The router on gate logits z (N, E), SPEC section 1: gating logit normalization, fp32 softmax,
 * top-k, renormalization. With `expertBias` (aux-loss-free balancing) the bias is added to the
 * probabilities for the selection only; the weights stay the probabilities.
 * @example
 * const r = route(T.tensor([1, 2, 0.5, -1], [1, 4]), { numExperts: 4, topK: 2, logitsNorm: true, gateNormStd: 1, normTopK: true });
 * r.experts; // Int32Array [1, 0]
 */
export function route(z: Tensor, cfg: Pick<ModelConfig, 'numExperts' | 'topK' | 'logitsNorm' | 'gateNormStd' | 'normTopK'>, expertBias?: Float32Array): Routing {
  const [N] = z.shape as [number, number];
  const E = cfg.numExperts, k = cfg.topK;
  const be = z.backend;
  let logits = z; // (N, E)
  if (cfg.logitsNorm) {
    // Report section 4.1: divide by std / lambda (unbiased std, no eps; softmax ignores the mean).
    const sd = T.reshape(T.std(logits, true), [N, 1]);
    logits = T.div(logits, T.scale(sd, 1 / cfg.gateNormStd));
  }
  const p = T.softmax(logits); // (N, E)

  // Top-k selection, optionally on biased scores (aux-loss-free balancing: bias for selection only).
  let weights: Tensor; // (N, K), gate probabilities of the selected experts
  let experts: Int32Array;
  if (expertBias) {
    const bias = T.tensor(expertBias, [E], 'f32', be);
    const top = T.topk(T.add(p, bias), k);
    experts = top.indices.toArray() as Int32Array;
    const bSel = Float32Array.from(experts, (e) => expertBias[e]!);
    weights = T.sub(top.values, T.tensor(bSel, [N, k], 'f32', be));
  } else {
    const top = T.topk(p, k);
    experts = top.indices.toArray() as Int32Array;
    weights = top.values;
  }
  const wNorm = cfg.normTopK ? T.div(weights, T.reshape(T.sum(weights), [N, 1])) : weights; // (N, K), renormalized over the k or not
  return { logits, p, experts, weights: wNorm };
}

/** One MoE layer on normalized hidden states x [N, H]. */
export function moeForward(x: Tensor, w: MoeWeights, cfg: ModelConfig, opts: MoeOptions): MoeOutput {
  const [N] = x.shape as [number, number];
  const E = cfg.numExperts, k = cfg.topK;
  const be = x.backend;
  const { logits, p, experts, weights: wNorm } = route(gateLogits(x, w), cfg, opts.expertBias);
  const pHost = p.toFloat32();
  const selProbs = Float32Array.from(experts, (e, a) => pHost[Math.floor(a / k) * E + e]!);
  const plan = planDispatch(experts, selProbs, N, k, E, opts);

  // Dispatch: token rows in expert order, grouped expert FFN, weight, un-permute and sum.
  // Under expert data parallelism only this rank's experts' rows: dispatch stays local. Under
  // expert parallelism this rank's rows go to their experts' ranks and come back (all-to-all).
  const par = opts.parallel;
  const ffn = (xs: Tensor, offsets: Int32Array) => T.groupedMatmul(T.swiglu(T.groupedMatmul(xs, w.w1, offsets), T.groupedMatmul(xs, w.w3, offsets)), w.w2, offsets); // (M, H)
  // the rows this rank weights and sums: their tokens (i32 [M], on the backend) and assignment ids
  let tokenOf: Tensor, order: Int32Array;
  let ys: Tensor; // their expert outputs (M, H)
  if (par?.ep) ({ tokenOf, order, ys } = dispatchExpertParallel(x, plan, E, par.ep, par.copy, ffn));
  else {
    const [e0, e1] = par?.experts ?? [0, E];
    const lo = plan.offsets[e0]!, hi = plan.offsets[e1]!;
    const offsets = plan.offsets.slice(e0, e1 + 1).map((o) => o - lo);
    tokenOf = T.tensor(plan.tokenOf.subarray(lo, hi), [hi - lo], 'i32', be);
    order = plan.order.subarray(lo, hi);
    ys = ffn(T.gatherRows(par ? par.copy(x) : x, tokenOf), offsets);
  }
  // the gate weights also meet only this rank's part of the experts: their gradient is summed over the group too
  const wSel = T.gatherRows(T.reshape(par ? par.copy(wNorm) : wNorm, [N * k, 1]), T.tensor(order, [order.length], 'i32', be)); // (M, 1)
  const yPart = T.scatterAddRows(T.mul(ys, wSel), tokenOf, N); // (N, H); dropped assignments add nothing
  const y = par ? par.combine(yPart) : yPart;

  let aux: Tensor | null = null;
  if (opts.auxLoss !== 'none') {
    const meanP = T.mean(T.transpose(p)); // (E): mean gate probability per expert
    if (opts.auxLoss === 'skywork') {
      // Report eq. 4: sum_j (1/E - mean_i p_ij)^2
      aux = T.sumAll(T.square(T.sub(T.full([E], 1 / E, 'f32', be), meanP)));
    } else {
      // Switch Transformer: E * sum_j f_j * P_j, f_j = fraction of assignments routed to j.
      const f = Float32Array.from(plan.routed, (c) => c / (N * k));
      aux = T.scale(T.sumAll(T.mul(meanP, T.tensor(f, [E], 'f32', be))), E);
    }
  }
  let zLoss: Tensor | null = null;
  if (opts.zLoss) {
    // ST-MoE: mean_i logsumexp(z_i)^2 over the logits that enter the softmax (normalized ones
    // when logit normalization is on), with the row max as a constant shift for stability.
    const lg = logits.toFloat32();
    const mx = new Float32Array(N);
    for (let i = 0; i < N; i++) {
      let m = -Infinity;
      for (let j = 0; j < E; j++) m = Math.max(m, lg[i * E + j]!);
      mx[i] = m;
    }
    const shift = T.tensor(mx, [N, 1], 'f32', be);
    const lse = T.add(T.log(T.sum(T.exp(T.sub(logits, shift)))), T.reshape(shift, [N]));
    zLoss = T.meanAll(T.square(lse));
  }
  const tokensPerExpert = Array.from({ length: E }, (_, e) => plan.offsets[e + 1]! - plan.offsets[e]!);
  const stats: RouterStats = {
    routedPerExpert: plan.routed,
    tokensPerExpert,
    dropRate: N ? plan.dropped / (N * k) : 0,
    capacity: plan.capacity,
    ...gateStats(pHost, N, E),
  };
  return { y, aux, zLoss, stats };
}

/**
 * Expert parallelism's dispatch: this rank's rows (its share under tensor parallelism) of every
 * kept assignment go to the rank holding the assignment's expert (experts split over the group
 * as unevenSplit(E, size), so the rows, in expert order, are already grouped by destination),
 * the receiving rank regroups what arrives by its experts, runs them, puts the outputs back in
 * arrival order and returns them: the rows this rank sent (their tokens and assignment ids, in
 * order) and their outputs `ys`.
 */
function dispatchExpertParallel(x: Tensor, plan: DispatchPlan, E: number, ep: ExpertParallelOps, copy: (x: Tensor) => Tensor, ffn: (xs: Tensor, offsets: Int32Array) => Tensor): { tokenOf: Tensor; order: Int32Array; ys: Tensor } {
  const be = x.backend;
  const [N] = x.shape as [number, number];
  const [r0, r1] = ep.rows(N);
  const P = ep.shard.size;
  const perRank = unevenSplit(E, P);
  const firstExpert = perRank.map((_, j) => perRank.slice(0, j).reduce((a, b) => a + b, 0));
  const sel: number[] = [];
  const counts: number[][] = perRank.map((n) => Array<number>(n).fill(0)); // per destination, per its expert
  for (let j = 0; j < P; j++) {
    for (let le = 0; le < perRank[j]!; le++) {
      const e = firstExpert[j]! + le;
      for (let i = plan.offsets[e]!; i < plan.offsets[e + 1]!; i++) {
        const t = plan.tokenOf[i]!;
        if (t >= r0 && t < r1) {
          sel.push(i);
          counts[j]![le]!++;
        }
      }
    }
  }
  const send = counts.map((c) => c.reduce((a, b) => a + b, 0));
  const arriving = ep.counts(counts); // per source rank, per expert of mine
  const recv = arriving.map((c) => c.reduce((a, b) => a + b, 0));
  const tokenOf = T.tensor(Int32Array.from(sel, (i) => plan.tokenOf[i]!), [sel.length], 'i32', be);
  const xs = T.gatherRows(copy(x), tokenOf); // (M, H)
  const xr = ep.exchange(xs, send, recv); // (R, H), by source rank, then by expert
  // regroup by expert: rows of expert le from every source, sources in order
  const mine = perRank[ep.shard.index]!;
  const srcStart = recv.map((_, s) => recv.slice(0, s).reduce((a, b) => a + b, 0));
  const perm: number[] = [];
  const offsets = new Int32Array(mine + 1);
  for (let le = 0; le < mine; le++) {
    for (let s = 0; s < P; s++) {
      const before = arriving[s]!.slice(0, le).reduce((a, b) => a + b, 0);
      for (let r = 0; r < arriving[s]![le]!; r++) perm.push(srcStart[s]! + before + r);
    }
    offsets[le + 1] = perm.length;
  }
  const permT = Int32Array.from(perm);
  const inverse = new Int32Array(permT.length);
  permT.forEach((p, i) => (inverse[p] = i));
  const R = permT.length;
  const yg = ffn(T.gatherRows(xr, T.tensor(permT, [R], 'i32', be)), offsets); // (R, H) by expert
  const yr = T.gatherRows(yg, T.tensor(inverse, [R], 'i32', be)); // back in arrival order
  return { tokenOf, order: Int32Array.from(sel, (i) => plan.order[i]!), ys: ep.exchange(yr, recv, send) }; // (M, H), in the order this rank sent
}
