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
import type { Cluster } from './gpus.js';
import { expertGroups, type ExpertPlacement, type Layout } from './setup.js';
import type { ModelShape } from './flops.js';
import { MEGATRON_TRAFFIC, moeTraffic, transferTime, type TrafficOptions } from './traffic.js';

/** Communication seconds of one MoE layer for one micro-batch of `tokens`, forward + backward, per GPU. */
export interface MoeComm {
  /** TP collectives of the MoE block (all-gather before, reduce-scatter after). */
  tp: number;
  /** Expert all-to-all (dispatch + combine, forward and backward). */
  a2a: number;
  bytesPerA2a: number;
}

/** The MoE layer's transfers (traffic.ts moeTraffic) priced on the cluster. */
export function moeLayerComm(m: ModelShape, l: Layout, c: Cluster, tokens: number, imbalance: number, o: TrafficOptions = MEGATRON_TRAFFIC): MoeComm {
  const r: MoeComm = { tp: 0, a2a: 0, bytesPerA2a: 0 };
  for (const t of moeTraffic(m, l, tokens, imbalance, o)) {
    if (t.kind === 'all-to-all') {
      r.a2a += transferTime(c, t);
      r.bytesPerA2a = Math.max(r.bytesPerA2a, t.bytes * t.busiest); // the tokens', not the split sizes'
    } else r.tp += transferTime(c, t);
  }
  return r;
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
