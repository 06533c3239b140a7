/**
 * The bytes model: every collective one optimizer step issues, with the bytes each rank sends, for
 * a model shape, a training setup and a layout. The step model's communication times (step.ts
 * layerTime, stageExtra, dataParallelTime; placement.ts moeLayerComm) are these transfers priced
 * by comm.ts collectiveTime, and `skymoe plan --measure` sets the bytes beside the ones the
 * runtime's ranks sent (parallel/traffic-check.ts): the prediction it checks is the one the
 * planner prices.
 *
 * What one rank sends for a buffer of B bytes over a group of p (the ring and pairwise algorithms
 * of comm.ts, which parallel/runtime/comm.ts runs): all-reduce 2(p-1)/p B; all-gather and
 * reduce-scatter (p-1)/p B, B the whole (gathered) buffer; all-to-all (p-1)/p B, B what one rank
 * holds, routed evenly; broadcast (p-1)/p B on average (a chain: every rank but the last sends B);
 * point-to-point B.
 *
 * Per micro-batch of T tokens, C = hidden, k = top-k, a = activation bytes, t = TP size:
 *   TP seam (attention, dense MLP, EDP/ETP experts): sequence parallel: all-gather + reduce-scatter
 *     of T C a forward, the same backward; without: all-reduce forward (the partial outputs) and
 *     backward (the input's gradient). Same bytes, other kinds.
 *   MoE gate weights under local dispatch: T k a, gathered with the tokens (sequence parallel) or
 *     their gradient all-reduced (the runtime's `copy` of the weights). Under sequence parallelism
 *     with every TP rank routing all tokens (the runtime's), the experts' input gradient is
 *     all-reduced instead of reduce-scattered (TrafficOptions.routing).
 *   Expert all-to-all (EP, ETP with ep > 1): 4 of the sequence shard's routed copies (T/t) k C a,
 *     dispatch and combine, forward and backward, and the split sizes (one int32 per expert);
 *     ETP then gathers them over its etp ranks. Without sequence parallelism each TP rank
 *     dispatches 1/t of the rows all of them hold, and the MoE block keeps a TP seam.
 *   Dropless routing, spread evenly: capacity drops send less; imbalance changes which rank is
 *   busiest (the time, `busiest`), not the mean bytes sent, when every rank's tokens route alike.
 *   Vocabulary-parallel embedding (first stage) and output layer (last): one seam each, plus the
 *     parallel cross-entropy's three fp32 all-reduces of T values. Without it, under sequence
 *     parallelism each stage's whole rows are cut into shards on the way in (the gradient
 *     all-gathered back) and all-gathered on the way out.
 *   Pipeline: each micro-batch's activation forward and gradient back, (T C a)/t with sequence
 *     parallelism, T C a without; 2 vp sends per rank, one fewer at each end of the pipeline.
 *   Full recomputation repeats the forward transfers of the layers.
 * Per step: the gradients reduced over the data-parallel group (dense) and the expert-data-parallel
 * group (experts): all-reduce, or with ZeRO reduce-scatter and the updated weights all-gathered;
 * with tied embeddings over a pipeline, the embedding gradient all-reduced between the first and
 * last stage (Megatron's embedding group); under sequence parallelism the norms' gradients
 * all-reduced over TP (they saw one shard of the tokens each).
 */
import { collectiveTime, type Collective } from './comm.js';
import type { ModelShape } from './flops.js';
import type { Cluster } from './gpus.js';
import { expertDataParallel, rankImbalance, stageParams } from './memory.js';
import { expertGroups, type Layout, type Recompute, type TrainingSetup } from './setup.js';

/**
 * The group a transfer runs over: tp (also the expert-tensor-parallel ranks of ETP), dp, edp (the
 * expert-data-parallel group when it is not the dp group), ep (the expert all-to-all), pp (pipeline
 * neighbours), embedding (first and last stage, tied embeddings), world.
 */
export type GroupKind = 'tp' | 'dp' | 'edp' | 'ep' | 'pp' | 'embedding' | 'world';

/** Bytes per element of what moves. */
export interface ElementBytes {
  /** Activations and their gradients (TP seams, expert dispatch, pipeline transfers). */
  activation: number;
  /** Gradients reduced over the data-parallel group. */
  gradient: number;
  /** Updated weights all-gathered after a ZeRO optimizer step. */
  parameter: number;
}

export interface TrafficOptions {
  elements: ElementBytes;
  /** TP seams as all-gather + reduce-scatter (Megatron's sequence parallelism) rather than all-reduces. */
  sequenceParallel: boolean;
  /**
   * Embedding and output layer split over TP, and under sequence parallelism the activations
   * between pipeline stages kept in sequence shards (Megatron); false: both replicated, so every
   * stage's layers take and give whole rows (the reference runtime).
   */
  vocabParallel: boolean;
  /**
   * Under sequence parallelism, who routes: 'shard' (Megatron: each TP rank routes its sequence
   * shard, tokens and their gate weights are all-gathered to the experts and reduce-scattered
   * back) or 'replicated' (the reference runtime: every TP rank routes all tokens, so the experts'
   * input gradient is all-reduced rather than reduce-scattered). Without sequence parallelism
   * every TP rank holds all tokens and routing is replicated either way.
   */
  routing: 'shard' | 'replicated';
}

/**
 * What the planner assumes of a Megatron-Core run: bf16 activations, fp32 main gradients reduced,
 * bf16 weights gathered by the distributed optimizer, sequence parallelism with TP, the
 * vocabulary-parallel embedding and output layer, routing on the sequence shard.
 */
export const MEGATRON_TRAFFIC: TrafficOptions = { elements: { activation: 2, gradient: 4, parameter: 2 }, sequenceParallel: true, vocabParallel: true, routing: 'shard' };

/** One collective, repeated `calls` times. */
export interface Transfer {
  /** The seam or step that moves it, e.g. 'attention', 'experts: gate weights', 'gradients: dense'. */
  what: string;
  kind: Collective;
  group: GroupKind;
  /** Ranks in the group and their spacing (for the link they cross). */
  size: number;
  stride: number;
  /** The buffer as collectiveTime takes it (see the file comment), mean over ranks. */
  bytes: number;
  /** Per micro-batch (layer and stage transfers) or per optimizer step (gradients, stepTransfers). */
  calls: number;
  /** forward / backward of a micro-batch; reduce (gradients after the last backward) / gather (weights after the optimizer). */
  pass: 'forward' | 'backward' | 'reduce' | 'gather';
  /** The busiest rank's buffer over the mean (an all-to-all under routing imbalance); prices time, not bytes. */
  busiest: number;
}

/** Fraction of the buffer one rank sends, for a collective over `size` ranks. */
export function sentFraction(kind: Collective, size: number): number {
  if (size <= 1) return 0;
  const frac = (size - 1) / size;
  return kind === 'all-reduce' ? 2 * frac : kind === 'p2p' ? 1 : frac;
}

/** Bytes one rank sends over all calls of a transfer. */
export function sentBytes(t: Transfer): number {
  return t.calls * sentFraction(t.kind, t.size) * t.bytes;
}

/** Seconds of all calls of a transfer on the cluster (the busiest rank's buffer). */
export function transferTime(c: Cluster, t: Transfer): number {
  return t.calls * collectiveTime(c, t.kind, t.bytes * t.busiest, t.size, t.stride);
}

function transfer(what: string, kind: Collective, group: GroupKind, size: number, bytes: number, calls: number, pass: Transfer['pass'], o: { stride?: number; busiest?: number } = {}): Transfer {
  return { what, kind, group, size, stride: o.stride ?? 1, bytes, calls, pass, busiest: o.busiest ?? 1 };
}

/** A TP seam around a split block: the input made whole and the partial outputs summed, forward and backward. */
function tpSeam(what: string, bytes: number, calls: number, size: number, sp: boolean, stride = 1): Transfer[] {
  if (size <= 1 || calls <= 0 || bytes <= 0) return [];
  if (sp) {
    return [
      transfer(what, 'all-gather', 'tp', size, bytes, calls, 'forward', { stride }),
      transfer(what, 'reduce-scatter', 'tp', size, bytes, calls, 'forward', { stride }),
      transfer(what, 'all-gather', 'tp', size, bytes, calls, 'backward', { stride }),
      transfer(what, 'reduce-scatter', 'tp', size, bytes, calls, 'backward', { stride }),
    ];
  }
  return [transfer(what, 'all-reduce', 'tp', size, bytes, calls, 'forward', { stride }), transfer(what, 'all-reduce', 'tp', size, bytes, calls, 'backward', { stride })];
}

/**
 * The TP seam around an MoE block whose TP ranks all work on the group's tokens: the tokens made
 * whole and the experts' partial outputs summed, and the routing weights of the k experts, which
 * meet only this rank's part of the experts (their gradient is summed likewise).
 */
function moeSeam(m: ModelShape, l: Layout, tokens: number, o: TrafficOptions, calls: number): Transfer[] {
  if (l.tp <= 1 || calls <= 0) return [];
  const x = tokens * m.hidden * o.elements.activation, w = tokens * m.topK * o.elements.activation;
  const at = (what: string, kind: Collective, bytes: number, pass: Transfer['pass']) => transfer(what, kind, 'tp', l.tp, bytes, calls, pass);
  if (!o.sequenceParallel) return [...tpSeam('experts', x, calls, l.tp, false), at('experts: gate weights', 'all-reduce', w, 'backward')];
  if (o.routing === 'shard') return [...tpSeam('experts', x, calls, l.tp, true), at('experts: gate weights', 'all-gather', w, 'forward'), at('experts: gate weights', 'reduce-scatter', w, 'backward')];
  // every rank routes all tokens: gathered for it, but the experts' input gradient is whole on every rank (all-reduced)
  return [
    at('experts', 'all-gather', x, 'forward'),
    at('experts', 'reduce-scatter', x, 'forward'),
    at('experts', 'all-gather', x, 'backward'),
    at('experts', 'all-reduce', x, 'backward'),
    at('experts: gate weights', 'all-reduce', w, 'backward'),
  ];
}

/** Transfers of one MoE layer for one micro-batch of `tokens` (forward + backward). */
export function moeTraffic(m: ModelShape, l: Layout, tokens: number, imbalance: number, o: TrafficOptions, calls = 1): Transfer[] {
  const g = expertGroups(m, l);
  const a = o.elements.activation;
  // local dispatch: every TP rank holds the group's tokens after the seam, its experts' rows are local
  if (g.dispatch === 'local') return moeSeam(m, l, tokens, o, calls);
  const busiest = rankImbalance(imbalance, g.expertsPerRank);
  // routed copies of the rows this GPU dispatches: its sequence shard, or without sequence
  // parallelism its share of the rows every TP rank holds (dropless, routed evenly)
  const perGpu = (tokens / l.tp) * m.topK * m.hidden * a;
  const out = [
    transfer('experts: dispatch and combine', 'all-to-all', 'ep', g.ep, perGpu, 2 * calls, 'forward', { stride: g.stride, busiest }),
    transfer('experts: dispatch and combine', 'all-to-all', 'ep', g.ep, perGpu, 2 * calls, 'backward', { stride: g.stride, busiest }),
    // how many rows each rank sends each expert: one int32 per expert
    transfer('experts: split sizes', 'all-to-all', 'ep', g.ep, m.experts * 4, calls, 'forward', { stride: g.stride }),
  ];
  // routed on all rows (no sequence parallelism, or replicated routing), each TP rank dispatched
  // its share: the partial outputs are summed over TP, as around a dense MLP
  if (l.etp === 1 && !(o.sequenceParallel && o.routing === 'shard')) out.push(...moeSeam(m, l, tokens, o, calls));
  if (l.etp > 1) {
    // every expert-TP rank needs all routed tokens of its EP rank: k x tokens gathered, reduce-scattered back
    const gathered = perGpu * l.etp;
    out.push(
      transfer('experts: etp gather', 'all-gather', 'tp', l.etp, gathered, calls, 'forward', { busiest }),
      transfer('experts: etp gather', 'reduce-scatter', 'tp', l.etp, gathered, calls, 'forward', { busiest }),
      transfer('experts: etp gather', 'all-gather', 'tp', l.etp, gathered, calls, 'backward', { busiest }),
      transfer('experts: etp gather', 'reduce-scatter', 'tp', l.etp, gathered, calls, 'backward', { busiest }),
    );
  }
  return out;
}

/** Transfers of one average layer (MoE and dense layers mixed as in the model) for one micro-batch. */
export function layerTraffic(m: ModelShape, s: TrainingSetup, l: Layout, o: TrafficOptions): Transfer[] {
  const T = l.microBatch * s.seq;
  const bytes = T * m.hidden * o.elements.activation;
  const moeShare = m.experts ? m.moeLayers / m.layers : 0;
  return [
    ...tpSeam('attention', bytes, 1, l.tp, o.sequenceParallel),
    ...(moeShare > 0 ? moeTraffic(m, l, T, s.routingImbalance, o, moeShare) : []),
    ...tpSeam('dense MLP', bytes, 1 - moeShare, l.tp, o.sequenceParallel),
  ];
}

/** Per micro-batch on pipeline stage i, outside its layers: the vocabulary-parallel seams and the pipeline transfers. */
export function stageTraffic(m: ModelShape, s: TrainingSetup, l: Layout, i: number, o: TrafficOptions): Transfer[] {
  const T = l.microBatch * s.seq;
  const a = o.elements.activation;
  const first = i === 0, last = i === l.pp - 1;
  const out: Transfer[] = [];
  if (o.vocabParallel && l.tp > 1) {
    const bytes = T * m.hidden * a;
    // embedding: partial lookups summed (onto sequence shards); its input, token ids, has no gradient
    if (first) out.push(o.sequenceParallel ? transfer('embedding', 'reduce-scatter', 'tp', l.tp, bytes, 1, 'forward') : transfer('embedding', 'all-reduce', 'tp', l.tp, bytes, 1, 'forward'));
    if (first && o.sequenceParallel) out.push(transfer('embedding', 'all-gather', 'tp', l.tp, bytes, 1, 'backward'));
    if (last) {
      // output layer: its input made whole (the gradient summed back), then the cross-entropy's max, target logit and sum of exponentials (fp32)
      if (o.sequenceParallel) out.push(transfer('output layer', 'all-gather', 'tp', l.tp, bytes, 1, 'forward'), transfer('output layer', 'reduce-scatter', 'tp', l.tp, bytes, 1, 'backward'));
      else out.push(transfer('output layer', 'all-reduce', 'tp', l.tp, bytes, 1, 'backward'));
      out.push(transfer('cross-entropy', 'all-reduce', 'tp', l.tp, T * 4, 3, 'forward'));
    }
  }
  if (l.pp > 1) {
    const bytes = (T * m.hidden * a) / (o.sequenceParallel && o.vocabParallel ? l.tp : 1);
    // each of the vp model chunks sends its activation forward and its input's gradient back, except the model's first and last chunk
    const forward = l.vp - (last ? 1 : 0), backward = l.vp - (first ? 1 : 0);
    const stride = l.tp * l.dp;
    if (forward > 0) out.push(transfer('pipeline: activations', 'p2p', 'pp', 2, bytes, forward, 'forward', { stride }));
    if (backward > 0) out.push(transfer('pipeline: gradients', 'p2p', 'pp', 2, bytes, backward, 'backward', { stride }));
  }
  return out;
}

/**
 * Per micro-batch, the stage's layers taking and giving whole rows under sequence parallelism
 * without vocabulary parallelism (the reference runtime): cut into sequence shards on the way in
 * (the gradient gathered back) and gathered on the way out, for the replicated output layer or the
 * next stage. Part of the layers' forward: full recomputation repeats the gather.
 */
export function stageRowsTraffic(m: ModelShape, s: TrainingSetup, l: Layout, o: TrafficOptions): Transfer[] {
  if (o.vocabParallel || !o.sequenceParallel || l.tp <= 1) return [];
  const bytes = l.microBatch * s.seq * m.hidden * o.elements.activation;
  return [transfer('stage input', 'all-gather', 'tp', l.tp, bytes, 1, 'backward'), transfer('stage output', 'all-gather', 'tp', l.tp, bytes, 1, 'forward')];
}

/** Per optimizer step on a GPU of stage i holding n layers: the gradient reduction and, with ZeRO, the weights' gather. */
export function dataParallelTraffic(m: ModelShape, s: TrainingSetup, l: Layout, i: number, n: number, o: TrafficOptions): Transfer[] {
  const first = i === 0, last = i === l.pp - 1;
  const sp = stageParams(m, l, first, last, o.vocabParallel);
  const dense = sp.densePerLayer * n + sp.denseFixed;
  const experts = sp.expertPerLayer * n;
  const edp = expertDataParallel(l);
  const { gradient: g, parameter: p } = o.elements;
  // the expert-data-parallel group is the dp group when the expert mesh spans the TP group (EDP, ETP with ep 1)
  const expertGroup: GroupKind = l.ep * l.etp === l.tp ? 'dp' : 'edp';
  const out: Transfer[] = [];
  const reduce = (what: string, params: number, group: GroupKind, size: number, stride: number) => {
    if (size <= 1 || params <= 0) return;
    if (s.zero === 0) out.push(transfer(`gradients: ${what}`, 'all-reduce', group, size, params * g, 1, 'reduce', { stride }));
    else out.push(transfer(`gradients: ${what}`, 'reduce-scatter', group, size, params * g, 1, 'reduce', { stride }), transfer(`weights: ${what}`, 'all-gather', group, size, params * p, 1, 'gather', { stride }));
  };
  reduce('dense', dense, 'dp', l.dp, l.tp);
  reduce('experts', experts, expertGroup, edp, l.ep * l.etp);
  if (o.sequenceParallel && l.tp > 1 && n > 0) {
    // the norms between the blocks saw only this rank's sequence shard: their gradients are summed
    // over TP (Megatron's sequence-parallel parameters; its final norm too, on sequence shards)
    const norms = 2 * m.hidden * n + (last && o.vocabParallel ? m.hidden : 0);
    out.push(transfer('gradients: sequence-parallel norms', 'all-reduce', 'tp', l.tp, norms * g, 1, 'reduce'));
  }
  if (m.tied && l.pp > 1 && (first || last)) {
    // the first stage's embedding and the last stage's copy (the output layer) get one gradient
    const emb = m.vocab * m.hidden / (o.vocabParallel ? l.tp : 1);
    out.push(transfer('gradients: tied embedding', 'all-reduce', 'embedding', 2, emb * g, 1, 'reduce', { stride: (l.pp - 1) * l.tp * l.dp }));
  }
  return out;
}

/** A layer's transfers under recomputation `r`: full recomputation repeats the forward ones. */
export function recomputedTraffic(layer: readonly Transfer[], r: Recompute): Transfer[] {
  if (r !== 'full') return [];
  return layer.filter((t) => t.pass === 'forward').map((t) => ({ ...t, what: `${t.what} (recomputed)` }));
}

/**
 * Every transfer of one optimizer step, with `calls` per step on one GPU, averaged over the
 * layout's GPUs (stages differ: the first and last pay the vocabulary seams, the middle ones two
 * pipeline sends per micro-batch); the same transfer on several stages is one entry.
 */
export function stepTransfers(m: ModelShape, s: TrainingSetup, l: Layout, o: TrafficOptions): Transfer[] {
  const micro = s.globalBatch / (l.dp * l.microBatch);
  const layer = layerTraffic(m, s, l, o);
  const by = new Map<string, Transfer>();
  const add = (ts: readonly Transfer[], times: number) => {
    for (const t of ts) {
      if (t.calls * times <= 0) continue;
      const key = [t.what, t.kind, t.group, t.pass, t.size, t.stride, t.bytes, t.busiest].join('|');
      const have = by.get(key);
      if (have) have.calls += (t.calls * times) / l.pp;
      else by.set(key, { ...t, calls: (t.calls * times) / l.pp });
    }
  };
  const rows = stageRowsTraffic(m, s, l, o);
  l.stages.forEach((n, i) => {
    add(layer, micro * n);
    add(recomputedTraffic(layer, l.recompute[i]!), micro * n);
    if (n > 0) {
      add(rows, micro);
      add(recomputedTraffic(rows, l.recompute[i]!), micro);
    }
    add(stageTraffic(m, s, l, i, o), micro);
    add(dataParallelTraffic(m, s, l, i, n, o), 1);
  });
  return [...by.values()];
}

/** Bytes one GPU sends per optimizer step (mean over the GPUs) of one collective kind over one kind of group. */
export interface TrafficTotal {
  kind: Collective;
  group: GroupKind;
  bytes: number;
}

/** The transfers summed by collective kind and group kind, in the order they first appear. */
export function trafficTotals(transfers: readonly Transfer[]): TrafficTotal[] {
  const by = new Map<string, TrafficTotal>();
  for (const t of transfers) {
    const key = `${t.kind} ${t.group}`;
    const row = by.get(key) ?? { kind: t.kind, group: t.group, bytes: 0 };
    row.bytes += sentBytes(t);
    by.set(key, row);
  }
  return [...by.values()].filter((r) => r.bytes > 0);
}

/**
 * Bytes one GPU sends per optimizer step, per collective kind and group kind.
 *
 * @example stepTraffic(shapeOf(preset('tiny')), defaultSetup({ seq: 32, globalBatch: 4, zero: 0 }), layout, MEGATRON_TRAFFIC)
 */
export function stepTraffic(m: ModelShape, s: TrainingSetup, l: Layout, o: TrafficOptions = MEGATRON_TRAFFIC): TrafficTotal[] {
  return trafficTotals(stepTransfers(m, s, l, o));
}
