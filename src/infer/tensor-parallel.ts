/**
 * Tensor-parallel inference (Skywork's non-uniform TP, SPEC section 6): the serving engine over a
 * group of worker-thread ranks, each holding its slice of the weights (model/shard.ts: heads split
 * by key/value group unevenly, experts whole per rank (edp) or split (etp)) and its key/value
 * heads of the paged KV cache.
 *
 *   engine worker (engine-thread.ts) --requests--> rank 0, the driver: Engine (schedule, sample)
 *                                     <--events---    | each step: the step's ids, positions,
 *                                                     | slots and block tables, broadcast
 *                                                     v
 *                                     ranks 0..T-1: forwardPaged on their slices, the partial
 *                                     outputs of every attention and MLP/MoE block summed over
 *                                     the group ([rows, hidden], Group.allReduceOrdered);
 *                                     rank 0 alone computes the logits it samples from
 *
 * The sums add in rank order whatever the step's rows, so a request's tokens do not depend on what
 * else is in the batch (the engine's batch invariance holds under TP), and every rank ends with the
 * same bits (routing, replicated, agrees on every rank).
 */
import { BroadcastChannel } from 'node:worker_threads';
import { checkTokenizerFitsModel, loadModelWithReport, readConfig } from '../io/hf.js';
import { loadTokenizer, type Tokenizer } from '../io/tokenizer/index.js';
import type { LoadReport } from '../io/weights.js';
import { stopTokenIds } from '../model/config.js';
import { PagedKVCache } from '../model/paged-kv.js';
import { headSplit, unevenSplit, type TensorParallelOps } from '../model/shard.js';
import type { PagedStep, SkyworkMoE } from '../model/skywork-moe.js';
import type { Group } from '../parallel/runtime/comm.js';
import type { RankContext } from '../parallel/runtime/ranks.js';
import * as T from '../tensor/index.js';
import { Engine, type EngineOptions } from './engine.js';
import { EngineLoop } from './engine-loop.js';
import type { FromWorker, StartEngineOptions, ToWorker } from './engine-worker.js';

/** What every rank of the serving group receives (runRanks' data). */
export interface TensorParallelRankData extends Omit<StartEngineOptions, 'log' | 'threads'> {
  /** The BroadcastChannel the driver rank takes requests from. */
  channel: string;
}

/**
 * The model's seams over `group` for inference: nothing to mark before a split (no autograd), and
 * partial outputs summed in rank order (batch invariant; see Group.allReduceOrdered).
 */
export function inferenceOps(group: Group, experts: 'edp' | 'etp'): TensorParallelOps {
  return {
    shard: { size: group.size, index: group.index, experts },
    copy: (x) => x,
    reduce: (x) => T.tensor(group.allReduceOrdered(x.toFloat32()), x.shape, 'f32', x.backend),
  };
}

const floats = (a: Int32Array) => new Float32Array(a.buffer, a.byteOffset, a.length); // the bits, moved as they are

/** The driver's step to the other ranks (null: stop). Logit rows stay with the driver: only it samples. */
export function sendStep(group: Group, step: PagedStep | null): void {
  const N = step ? step.ids.length : -1;
  group.broadcast(floats(Int32Array.of(N, step?.blockTables.length ?? 0, step?.maxBlocks ?? 0)));
  if (!step) return;
  const body = new Int32Array(4 * N + step.blockTables.length);
  body.set(step.ids, 0);
  body.set(step.positions, N);
  body.set(step.slots, 2 * N);
  body.set(step.rowSeq, 3 * N);
  body.set(step.blockTables, 4 * N);
  group.broadcast(floats(body));
}

/** The driver's next step on another rank (null: stop); it computes no logits. */
export function receiveStep(group: Group): PagedStep | null {
  const head = new Int32Array(3);
  group.broadcast(floats(head));
  const [N, tables, maxBlocks] = head as unknown as [number, number, number];
  if (N < 0) return null;
  const body = new Int32Array(4 * N + tables);
  group.broadcast(floats(body));
  return {
    ids: body.subarray(0, N),
    positions: body.subarray(N, 2 * N),
    slots: body.subarray(2 * N, 3 * N),
    rowSeq: body.subarray(3 * N, 4 * N),
    blockTables: body.subarray(4 * N),
    maxBlocks,
    logitRows: new Int32Array(0),
  };
}

/** The engine on the driver rank: every step goes to the other ranks, then runs here on this rank's slice. */
export class TensorParallelEngine extends Engine {
  constructor(
    model: SkyworkMoE,
    tokenizer: Tokenizer,
    opts: EngineOptions,
    private readonly group: Group,
  ) {
    super(model, tokenizer, opts);
  }

  protected override forward(step: PagedStep): Float32Array {
    sendStep(this.group, step);
    return super.forward(step);
  }
}

/** Which heads and experts each rank holds, for the load line: "heads 4+2 (key/value 2+1), experts 2+2 whole (edp)". */
export function describeSplit(dir: string, size: number, experts: 'edp' | 'etp'): string {
  const cfg = readConfig(dir);
  const shards = Array.from({ length: size }, (_, index) => headSplit(cfg, { size, index, experts }));
  const heads = `heads ${shards.map((s) => s.heads).join('+')} (key/value ${shards.map((s) => s.kvHeads).join('+')})`;
  if (!cfg.numExperts) return heads;
  return `${heads}, experts ${experts === 'edp' ? `${unevenSplit(cfg.numExperts, size).join('+')} whole (edp)` : `split ${unevenSplit(cfg.moeIntermediateSize, size).join('+')} (etp)`}`;
}

const size = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);
const held = (r: LoadReport) => `${size(r.mappedBytes)} mapped, ${size(r.heapBytes)} in the heap`;

/** A rank of the serving group (runRanks' entry): rank 0 drives the engine, the others follow its steps. */
export async function rankMain(ctx: RankContext<TensorParallelRankData>): Promise<void> {
  const group = ctx.comm.group('tp', Array.from({ length: ctx.size }, (_, i) => i));
  const tp = inferenceOps(group, ctx.data.tpExperts ?? 'edp');
  if (ctx.rank === 0) await drive(ctx, group, tp);
  else follow(ctx, group, tp);
}

async function drive(ctx: RankContext<TensorParallelRankData>, group: Group, tp: TensorParallelOps): Promise<void> {
  const o = ctx.data;
  const post = (m: FromWorker) => ctx.post(m);
  // Open first: the engine's user sends nothing before 'ready', but nothing sent may be missed.
  const channel = new BroadcastChannel(o.channel);
  try {
    const t0 = performance.now();
    const tokenizer = await loadTokenizer(o.model);
    checkTokenizerFitsModel(tokenizer, readConfig(o.model), o.model);
    const { model, report } = loadModelWithReport(o.model, ctx.backend, { dtype: o.dtype ?? 'auto', tp });
    const engine = new TensorParallelEngine(model, tokenizer, o, group);
    group.broadcast(floats(Int32Array.of(engine.kv.numBlocks, engine.kv.blockSize)));
    group.barrier(); // every rank holds its weights and its cache
    const description = `${ctx.backend.describe()}, tensor parallel over ${ctx.size} ranks x ${ctx.threads} thread(s)`;
    post({
      type: 'log',
      line: `[loaded ${o.model} in ${((performance.now() - t0) / 1000).toFixed(2)} s on ${description}: ${describeSplit(o.model, ctx.size, o.tpExperts ?? 'edp')}; rank 0 holds ${held(report)}; KV cache ${engine.kv.numBlocks} blocks of ${engine.kv.blockSize} (${engine.capacityTokens} positions, ${size((engine.kv.bytes * model.config.numKvHeads) / engine.kv.kvHeads)} over the ranks)]`,
    });
    const loop = new EngineLoop(engine, post);
    channel.onmessage = (e) => loop.receive(e.data as ToWorker);
    // Idle, this rank waits for requests, not in a collective: a rank that died meanwhile is seen here.
    const watch = setInterval(() => {
      if (ctx.comm.fabric.aborted) loop.receive({ type: 'close' });
    }, 200);
    post({ type: 'ready', maxContext: Math.min(engine.maxContext, engine.capacityTokens), eosTokenIds: stopTokenIds(model.config), stats: engine.stats(), description });
    try {
      await loop.run();
    } finally {
      clearInterval(watch);
    }
    sendStep(group, null); // throws when the group was aborted: the failed rank is the news
    engine.dispose();
    model.dispose();
  } finally {
    channel.close();
  }
}

function follow(ctx: RankContext<TensorParallelRankData>, group: Group, tp: TensorParallelOps): void {
  const o = ctx.data;
  const { model, report } = loadModelWithReport(o.model, ctx.backend, { dtype: o.dtype ?? 'auto', tp });
  ctx.log(`holds ${held(report)}`);
  const geometry = new Int32Array(2);
  group.broadcast(floats(geometry));
  const kv = new PagedKVCache(model.config, geometry[0]!, geometry[1]!, ctx.backend, tp.shard);
  group.barrier();
  for (let step = receiveStep(group); step; step = receiveStep(group)) model.forwardPaged(step, kv);
  kv.dispose();
  model.dispose();
}
