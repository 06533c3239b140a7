/**
 * The three expert placements of SPEC section 5 on Megatron-Core's expert mesh
 * (ranks of one pipeline stage = TP x DP for attention = ETP x EP x EDP for experts):
 *
 *   EP  (size_EP = size_DP x size_TP, ETP 1): whole experts per rank, tokens reach them by an
 *       all-to-all over the EP group; needs size_EP <= E, which caps the GPUs per stage.
 *   ETP (size_EP = size_DP, ETP = size_TP): each expert split over the TP group; the all-to-all
 *       runs over DP and every TP rank then gathers k x the tokens: the cost grows with TP.
 *   EDP (size_EP = size_TP, ETP 1, Skywork's): experts spread over the TP group, replicated over
 *       DP (expert data parallel). After attention every TP rank holds all of its group's tokens,
 *       so dispatch is local and the combine is the reduce-scatter a dense MLP already does.
 *
 * Megatron-Core spells these --expert-model-parallel-size ep --expert-tensor-parallel-size etp,
 * with EDP = (tp x dp) / (ep x etp) implied; EDP's local dispatch is its `allgather` dispatcher.
 */
import { collectiveTime } from './comm.js';
import type { Cluster } from './gpus.js';
import { rankImbalance } from './memory.js';
import type { ExpertPlacement, Layout } from './setup.js';
import type { ModelShape } from './flops.js';

export interface ExpertGroups {
  ep: number;
  etp: number;
  /** Replicas of each expert (the group its gradients are reduced over). */
  edp: number;
  expertsPerRank: number;
  /** Token dispatch: 'local' (EDP), or an all-to-all over `ep` ranks `stride` apart. */
  dispatch: 'local' | 'all-to-all';
  stride: number;
}

export function expertGroups(m: ModelShape, l: Layout): ExpertGroups {
  const edp = (l.tp * l.dp) / (l.ep * l.etp);
  const local = l.expert === 'edp' || l.ep === 1;
  return { ep: l.ep, etp: l.etp, edp, expertsPerRank: m.experts / l.ep, dispatch: local ? 'local' : 'all-to-all', stride: l.etp };
}

/** Communication seconds of one MoE layer for one micro-batch of `tokens`, forward + backward, per GPU. */
export interface MoeComm {
  /** TP collectives of the MoE block (all-gather before, reduce-scatter after). */
  tp: number;
  /** Expert all-to-all (dispatch + combine, forward and backward). */
  a2a: number;
  bytesPerA2a: number;
}

export function moeLayerComm(m: ModelShape, l: Layout, c: Cluster, tokens: number, imbalance: number): MoeComm {
  const g = expertGroups(m, l);
  const h2 = 2 * m.hidden; // bf16 bytes of one token
  const imb = rankImbalance(imbalance, g.expertsPerRank);
  const tpColl = (bytes: number) => collectiveTime(c, 'all-gather', bytes, l.tp) + collectiveTime(c, 'reduce-scatter', bytes, l.tp);
  if (l.expert === 'edp' || g.ep === 1) {
    // the dense MLP's all-gather / reduce-scatter, forward and backward
    return { tp: 2 * tpColl(tokens * h2), a2a: 0, bytesPerA2a: 0 };
  }
  const perGpu = (tokens / l.tp) * m.topK * h2 * imb; // routed copies of this GPU's sequence-parallel shard
  const a2a = 4 * collectiveTime(c, 'all-to-all', perGpu, g.ep, g.stride);
  if (l.expert === 'etp') {
    // every expert-TP rank needs all routed tokens of its EP rank: all-gather k x tokens, reduce-scatter back
    const gathered = perGpu * l.etp;
    const etp = 2 * (collectiveTime(c, 'all-gather', gathered, l.etp) + collectiveTime(c, 'reduce-scatter', gathered, l.etp));
    return { tp: etp, a2a, bytesPerA2a: perGpu };
  }
  return { tp: 0, a2a, bytesPerA2a: perGpu };
}

/** Which experts each rank of one pipeline stage holds: rows of "rank r (tp i, dp j): experts a-b [cols x/y]". */
export function expertRanks(m: ModelShape, l: Layout, limit = 16): string[] {
  const g = expertGroups(m, l);
  const out: string[] = [];
  const ranks = l.tp * l.dp;
  for (let r = 0; r < Math.min(ranks, limit); r++) {
    const tpRank = r % l.tp, dpRank = Math.floor(r / l.tp);
    // expert mesh order etp (innermost), ep, edp
    const etpRank = r % g.etp;
    const epRank = Math.floor(r / g.etp) % g.ep;
    const first = epRank * g.expertsPerRank;
    const experts = g.expertsPerRank === 1 ? `expert ${first}` : `experts ${first}-${first + g.expertsPerRank - 1}`;
    const cols = g.etp > 1 ? `, FFN columns ${etpRank + 1}/${g.etp}` : '';
    out.push(`rank ${r} (tp ${tpRank}, dp ${dpRank}): ${experts}${cols}`);
  }
  if (ranks > limit) out.push(`... ${ranks - limit} more ranks in the stage (pattern repeats every ${g.ep * g.etp} ranks)`);
  return out;
}

/** Why a SPEC placement does not apply to a grid, or null when it does. */
export function placementProblem(kind: ExpertPlacement, m: ModelShape, tp: number, dp: number): string | null {
  if (!m.experts) return 'dense model';
  if (kind === 'ep') {
    const ep = tp * dp;
    if (ep > m.experts) return `size_EP = DP ${dp} x TP ${tp} = ${ep} > ${m.experts} experts`;
    if (m.experts % ep !== 0) return `${ep} does not divide ${m.experts} experts`;
  }
  if (kind === 'etp') {
    if (dp > m.experts) return `size_EP = DP ${dp} > ${m.experts} experts`;
    if (m.experts % dp !== 0) return `DP ${dp} does not divide ${m.experts} experts`;
    if (m.expertFfn % tp !== 0) return `TP ${tp} does not divide the expert width`;
  }
  if (kind === 'edp' && m.experts % tp !== 0) return `TP ${tp} does not divide ${m.experts} experts`;
  return null;
}
