/**
 * The training loop: micro-batches with gradient accumulation, the loss of the report
 * (L = L_ce + sum_l alpha_l L_aux_l, plus an optional router z-loss), global-norm clipping,
 * AdamW on a schedule, aux-loss controllers updated from each layer's drop rate, validation,
 * router monitoring with warnings, metrics JSONL and resumable checkpoints.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { withPath, writeFileAtomic, writeFully } from '../io/atomic.js';
import { join } from 'node:path';
import type { Tokenizer } from '../io/tokenizer/index.js';
import type { DropPolicy, RouterStats } from '../model/moe.js';
import type { SkyworkMoE } from '../model/skywork-moe.js';
import { isMoeLayer } from '../model/config.js';
import * as T from '../tensor/index.js';
import { expertSimilarity } from '../upcycle/similarity.js';
import { AuxController, type ControllerOptions, type ControllerState } from './aux-controller.js';
import { saveCheckpoint, STATE_VERSION, type TrainerState } from './checkpoint.js';
import type { Batch, TokenDataset } from './data.js';
import { allReduceGradients, ShardedAdamW } from '../parallel/runtime/data-parallel.js';
import { gatherWhole, type WholeTensor, wholeModel } from '../parallel/runtime/tensor-parallel.js';
import { gatherStages, type PipelineParallel } from '../parallel/runtime/pipeline.js';
import { type ExpertParallelOps, shardPlan, type TensorParallelOps } from '../model/shard.js';
import type { Group } from '../parallel/runtime/comm.js';
import { AdamW, type GlobalNorm } from './optimizer.js';
import { learningRate, type ScheduleKind } from './schedule.js';

export interface TrainOptions {
  steps: number;
  /** Sequences per micro-batch and their length. */
  batch: number;
  seq: number;
  /** Micro-batches per optimizer step. */
  accum: number;
  lr: number;
  minLr: number;
  warmup: number;
  schedule: ScheduleKind;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clip: number;
  seed: number;
  evalEvery: number;
  evalBatches: number;
  saveEvery: number;
  keep: number;
  /** Router during training. */
  capacityFactor: number | null;
  dropPolicy: DropPolicy;
  /** Which load-balancing loss the controller weights ('none' with the bias controller). */
  auxLoss: 'skywork' | 'switch' | 'none';
  zLossCoef: number;
  controller: ControllerOptions;
  /** Warn when an expert receives no tokens for this many consecutive steps. */
  deadExpertSteps: number;
  /** Warn when a layer's drop rate stays above `dropWarnRate` for `dropWarnSteps` steps. */
  dropWarnRate: number;
  dropWarnSteps: number;
}

export interface StepMetrics {
  step: number;
  loss: number;
  ce: number;
  aux: number[];
  alpha: number[];
  dropRate: number[];
  tokensPerExpert: number[][];
  max1OverMax2: number[];
  max2OverMax3: number[];
  entropy: number[];
  gradNorm: number;
  lr: number;
  tokensPerSec: number;
  valLoss?: number;
  valPpl?: number;
  /** Mean pairwise cosine similarity of the experts per MoE layer (on evaluation steps). */
  expertSimilarity?: number[];
}

/** Options that must match between a run and its resume (the rest may change, e.g. steps). */
export function optionsHash(o: TrainOptions): string {
  const fixed = { batch: o.batch, seq: o.seq, accum: o.accum, seed: o.seed, capacityFactor: o.capacityFactor, dropPolicy: o.dropPolicy, auxLoss: o.auxLoss, controller: o.controller.kind };
  return createHash('sha256').update(JSON.stringify(fixed)).digest('hex').slice(0, 16);
}

interface WarningState {
  /** Per MoE layer, per expert: consecutive steps with no tokens. */
  idle: number[][];
  /** Per MoE layer: consecutive steps above the drop-rate threshold. */
  highDrop: number[];
}

export interface TrainerHooks {
  /** Called after every optimizer step. */
  onStep?: (m: StepMetrics, t: Trainer) => void;
  onWarn?: (msg: string) => void;
  onCheckpoint?: (dir: string) => void;
}

/**
 * Data parallelism (parallel/runtime): the step's `accum` micro-batches are shared out over the DP
 * group (rank i takes micro-batches i, i + dp, ...; every rank draws them all, so the data order is
 * the one-rank order), gradients, losses and router statistics are summed over the group, and one
 * rank writes metrics and checkpoints. With `zero`, the optimizer is ZeRO-1 (ShardedAdamW).
 */
export interface TrainerParallel {
  dp: Group;
  /** Tensor parallelism: this rank's group and the model's seams (the model holds this rank's slices). */
  tp?: { group: Group; ops: TensorParallelOps };
  /** Pipeline parallelism: this rank's stage (the model holds only its layers) and its neighbours. */
  pp?: PipelineParallel;
  /** The ranks of this data-parallel replica (tp x pp): the gradient norm is summed over them. */
  replica?: Group;
  /**
   * Expert parallelism: the experts are spread whole over `group` (this stage's tp x dp ranks) and
   * reached by all-to-all; they are this rank's alone, so they skip the data-parallel reduction.
   */
  ep?: { group: Group; ops: ExpertParallelOps };
  /** Every rank (all stop at the same step). */
  world: Group;
  zero: boolean;
  /** This rank writes metrics.jsonl and checkpoints (world rank 0). */
  writer: boolean;
}

export class Trainer {
  readonly opt: AdamW | ShardedAdamW;
  readonly controller: AuxController;
  step = 0;
  tokensSeen = 0;
  private warnings: WarningState;
  /** Indices of the MoE layers (controller state i belongs to layer moeLayerIds[i]). */
  private readonly moeLayerIds: number[];
  private valCache: Batch[] | null = null;
  /** Under pipeline parallelism: the most micro-batches this stage held at once (1F1B: at most stages - stage), and the forwards it ran again in backwards (full recomputation). */
  readonly pipelineStats = { maxInFlight: 0, recomputedForwards: 0, recomputedAttention: 0 };

  constructor(
    readonly model: SkyworkMoE,
    readonly tokenizer: Tokenizer,
    readonly data: TokenDataset,
    readonly o: TrainOptions,
    readonly runDir: string,
    readonly hooks: TrainerHooks = {},
    readonly parallel?: TrainerParallel,
  ) {
    const c = model.config;
    this.moeLayerIds = Array.from({ length: c.numLayers }, (_, l) => l).filter((l) => isMoeLayer(c, l));
    const dp = parallel?.dp.size ?? 1;
    if (o.accum % dp !== 0) throw new Error(`train: --accum ${o.accum} must be a multiple of dp=${dp} (each data-parallel rank runs accum/dp micro-batches of the step)`);
    const adam = { beta1: o.beta1, beta2: o.beta2, eps: 1e-8, weightDecay: o.weightDecay };
    this.opt = parallel?.zero && dp > 1 ? new ShardedAdamW(model.parameters(), adam, parallel.dp, (p) => this.ownExpert(p)) : new AdamW(model.parameters(), adam);
    this.controller = new AuxController(o.controller, this.moeLayerIds.length, Math.max(1, c.numExperts));
    this.warnings = { idle: Array.from({ length: this.moeLayerIds.length }, () => Array(c.numExperts).fill(0)), highDrop: Array(this.moeLayerIds.length).fill(0) };
    mkdirSync(runDir, { recursive: true });
  }

  /** Under expert parallelism, a parameter holding this rank's experts (no other rank has them). */
  private ownExpert(p: T.Tensor): boolean {
    const ep = this.parallel?.ep;
    if (!ep || ep.group.size === 1) return false;
    this.expertNames ??= new Set(shardPlan(this.model.config, { size: 1, index: 0, experts: 'ep' }, ep.ops.shard).keys());
    return this.expertNames.has(p.name!);
  }
  private expertNames?: Set<string>;

  /** This process writes metrics and checkpoints (always, without data parallelism). */
  get writer(): boolean {
    return this.parallel?.writer ?? true;
  }

  /** The optimizer as a whole AdamW (ZeRO-1: the shards gathered; every DP rank must call it). */
  fullOptimizer(): { opt: AdamW; temporary: boolean } {
    return this.opt instanceof ShardedAdamW ? { opt: this.opt.gatherFull(), temporary: true } : { opt: this.opt, temporary: false };
  }

  /** Take the optimizer state of a checkpoint (loaded into a whole AdamW by `load`). */
  loadOptimizerState(load: (opt: AdamW) => void): void {
    if (!(this.opt instanceof ShardedAdamW)) return load(this.opt);
    const full = new AdamW(this.model.parameters(), this.opt.opts);
    try {
      load(full);
      this.opt.loadFrom(full);
    } finally {
      full.dispose();
    }
  }

  get metricsPath(): string {
    return join(this.runDir, 'metrics.jsonl');
  }

  /** Continue from a checkpoint's state (model and optimizer moments loaded by the caller). */
  restore(state: TrainerState): void {
    if (state.optionsHash !== optionsHash(this.o)) {
      throw new Error('resume: batch, sequence length, accumulation, seed, capacity, drop policy, aux loss or controller differ from the checkpointed run');
    }
    this.step = state.step;
    this.tokensSeen = state.tokensSeen;
    this.data.setState(state.dataRng);
    this.controller.load(state.controller as ControllerState);
    this.warnings = structuredClone(state.warnings as WarningState);
    // Metrics written after the checkpoint (a crash between save and the next save) are dropped.
    // A line cut short by a crash mid-write is dropped too.
    if (this.writer && existsSync(this.metricsPath)) {
      const kept = readFileSync(this.metricsPath, 'utf8').split('\n').filter((l) => {
        if (!l) return false;
        try {
          const step = (JSON.parse(l) as { step?: unknown }).step;
          return typeof step === 'number' && step <= state.step;
        } catch {
          return false;
        }
      });
      // Replaced atomically: a kill here keeps the old file whole (the history is not lost).
      const text = new TextEncoder().encode(kept.map((l) => `${l}\n`).join(''));
      writeFileAtomic(this.metricsPath, (fd) => writeFully(fd, text));
    }
  }

  private state(): TrainerState {
    return {
      version: STATE_VERSION,
      step: this.step,
      tokensSeen: this.tokensSeen,
      adamStep: this.opt.step,
      dataRng: this.data.getState(),
      controller: this.controller.state,
      warnings: this.warnings,
      optionsHash: optionsHash(this.o),
    };
  }

  /**
   * The ranks that evaluate: the writer, and under tensor parallelism its whole TP group (the
   * forward of a sliced model needs every slice).
   */
  get evaluates(): boolean {
    // expert parallelism: the experts are on every replica's ranks, so every rank runs the evaluation
    if (this.parallel?.ep && this.parallel.ep.group.size > 1) return true;
    return this.parallel?.tp || this.parallel?.pp ? this.parallel.dp.index === 0 : this.writer;
  }

  /**
   * Save a checkpoint, always whole and in the Hugging Face layout: with ZeRO-1 every rank takes
   * part in gathering the optimizer over its DP group; under tensor parallelism the first DP
   * replica's TP group gathers the slices. The writer saves; returns its directory, or null on
   * other ranks.
   */
  async checkpoint(): Promise<string | null> {
    const { opt, temporary } = this.fullOptimizer();
    const tp = this.parallel?.tp, pp = this.parallel?.pp;
    const ep = this.parallel?.ep && this.parallel.ep.group.size > 1 ? this.parallel.ep : undefined;
    let whole: { model: SkyworkMoE; opt?: AdamW } | null = null;
    try {
      if ((tp || pp || ep) && this.evaluates) {
        const moments = [(n: string) => opt.m.get(n)!.toFloat32(), (n: string) => opt.v.get(n)!.toFloat32()];
        // the slices of the tensor-parallel group, the experts of the expert-parallel group (every replica's ranks)
        let tensors: WholeTensor[] | null = gatherWhole(this.model, { tp: tp?.group, ep: ep?.group }, moments);
        // every stage's leader sends its part to the first stage's
        if (pp && this.parallel!.dp.index === 0 && (!tp || tp.group.index === 0)) tensors = gatherStages(this.model.config, tensors, opt.steps, pp, moments.length);
        if (this.writer) whole = wholeModel(this.model, tensors!, this.model.backend, opt);
      }
      if (!this.writer) return null;
      const dir = await saveCheckpoint(this.runDir, whole?.model ?? this.model, this.tokenizer, whole?.opt ?? opt, this.state(), this.o.keep);
      this.hooks.onCheckpoint?.(dir);
      return dir;
    } finally {
      if (temporary) opt.dispose();
      whole?.opt?.dispose();
      whole?.model.dispose();
    }
  }

  /** One micro-batch forward and backward; returns the loss parts and router stats. */
  private microStep(b: Batch, scale: number): { loss: number; ce: number; aux: number[]; stats: RouterStats[] } {
    const be = this.model.backend;
    const V = this.model.config.vocabSize;
    return T.tidy(() => {
      const bias = Array.from({ length: this.model.config.numLayers }, () => undefined as Float32Array | undefined);
      this.moeLayerIds.forEach((l, i) => (bias[l] = this.controller.bias(i)));
      const out = this.model.forward(T.tensor(b.inputs, [b.batch, b.seq], 'i32', be), {
        moe: { capacityFactor: this.o.capacityFactor, dropPolicy: this.o.dropPolicy, auxLoss: this.o.auxLoss, zLoss: this.o.zLossCoef > 0 },
        expertBias: bias,
      });
      const ce = T.crossEntropy(T.reshape(out.logits, [b.batch * b.seq, V]), T.tensor(b.targets, [b.batch * b.seq], 'i32', be));
      let loss = ce;
      const aux: number[] = [];
      out.moe.forEach((l, i) => {
        if (l.aux) {
          aux.push(l.aux.item());
          const a = this.controller.alpha(i);
          if (a > 0) loss = T.add(loss, T.scale(l.aux, a));
        } else aux.push(0);
        if (l.zLoss) loss = T.add(loss, T.scale(l.zLoss, this.o.zLossCoef));
      });
      const lossValue = loss.item();
      T.backward(scale === 1 ? loss : T.scale(loss, scale));
      return { loss: lossValue, ce: ce.item(), aux, stats: out.moe.map((l) => l.stats) };
    });
  }

  /**
   * Forward and backward over `accum` micro-batches, accumulating into the parameters' .grad
   * (each micro-batch loss scaled by 1/accum, so the sum is the mean over the whole batch).
   */
  accumulateGradients(): { loss: number; ce: number; aux: number[]; stats: RouterStats[] } {
    if (this.parallel?.pp && this.parallel.pp.group.size > 1) return this.accumulatePipeline(this.parallel.pp);
    const o = this.o;
    let loss = 0, ce = 0;
    const aux = Array(this.moeLayerIds.length).fill(0);
    const statsSum: RouterStats[] = [];
    const dp = this.parallel?.dp;
    for (let a = 0; a < o.accum; a++) {
      const batch = this.data.nextBatch(o.batch); // drawn on every rank: the data order does not depend on the layout
      if (dp && a % dp.size !== dp.index) continue;
      const r = this.microStep(batch, 1 / o.accum);
      loss += r.loss / o.accum;
      ce += r.ce / o.accum;
      r.aux.forEach((v, i) => (aux[i] += v / o.accum));
      r.stats.forEach((s, i) => addStats((statsSum[i] ??= zeroStats(s.routedPerExpert.length)), s, o.accum));
    }
    if (dp && dp.size > 1) return sumOverGroup(dp, { loss, ce, aux, stats: statsSum });
    return { loss, ce, aux, stats: statsSum };
  }

  /**
   * The pipeline's share of the step (1F1B, Narayanan et al. 2021): this stage runs its
   * micro-batches' forwards, warmup = stages - stage - 1 of them ahead, then alternates one
   * forward and one backward, then drains the remaining backwards. Activations go to the next
   * stage and gradients come back (send-forward-receive-backward in one exchange). Each forward
   * keeps its graph until its backward, except under full recomputation, where only the stage's
   * input is kept and the forward runs again with autograd in the backward. A stage's loss is
   * its layers' aux and z terms, plus the cross-entropy on the last; its gradient reaches the
   * earlier stages through sum(out * dy), whose gradient in out is exactly dy.
   */
  private accumulatePipeline(pp: PipelineParallel): { loss: number; ce: number; aux: number[]; stats: RouterStats[] } {
    const o = this.o, c = this.model.config, be = this.model.backend;
    const dp = this.parallel!.dp;
    const mine: Batch[] = [];
    for (let a = 0; a < o.accum; a++) {
      const b = this.data.nextBatch(o.batch); // drawn on every rank: the data order does not depend on the layout
      if (a % dp.size === dp.index) mine.push(b);
    }
    const S = pp.stage.size, s = pp.stage.index, first = s === 0, last = s === S - 1;
    const M = mine.length, warm = Math.min(S - s - 1, M);
    const actLen = o.batch * o.seq * c.hiddenSize, scale = 1 / o.accum;
    const bias = Array.from({ length: c.numLayers }, () => undefined as Float32Array | undefined);
    this.moeLayerIds.forEach((l, i) => (bias[l] = this.controller.bias(i)));
    const fopts = { moe: { capacityFactor: o.capacityFactor, dropPolicy: o.dropPolicy, auxLoss: o.auxLoss, zLoss: o.zLossCoef > 0 }, expertBias: bias, recomputeAttention: pp.recompute === 'selective' };
    const full = pp.recompute === 'full';
    const moeIndex = new Map(this.moeLayerIds.map((l, i) => [l, i]));

    // the step's sums over this stage's micro-batches, over every MoE layer of the model (other stages' stay zero)
    let loss = 0, ce = 0;
    const aux = Array<number>(this.moeLayerIds.length).fill(0);
    const stats: RouterStats[] = this.moeLayerIds.map(() => zeroStats(c.numExperts));

    /** This stage's forward of one micro-batch: its output and its loss terms (null: none). */
    const stageForward = (b: Batch, input: T.Tensor, record: boolean) => {
      const r = this.model.forwardStage(input, fopts);
      let lossT: T.Tensor | null = null;
      let ceValue = 0;
      if (last) {
        const ceT = T.crossEntropy(T.reshape(r.out, [b.batch * b.seq, c.vocabSize]), T.tensor(b.targets, [b.batch * b.seq], 'i32', be));
        ceValue = ceT.item();
        lossT = ceT;
      }
      const add = (t: T.Tensor) => (lossT = lossT ? T.add(lossT, t) : t);
      for (const l of r.moe) {
        const i = moeIndex.get(l.layer)!;
        if (l.aux) {
          const a = this.controller.alpha(i);
          if (a > 0) add(T.scale(l.aux, a));
        }
        if (l.zLoss) add(T.scale(l.zLoss, o.zLossCoef));
        if (record) {
          aux[i]! += (l.aux ? l.aux.item() : 0) / o.accum;
          addStats(stats[i]!, l.stats, o.accum);
        }
      }
      if (record) {
        loss += (lossT ? (lossT as T.Tensor).item() : 0) / o.accum;
        ce += ceValue / o.accum;
      }
      return { out: r.out, loss: lossT as T.Tensor | null };
    };

    // a micro-batch's tensors live in its own arena from its forward to the end of its backward
    interface Flight { b: Batch; arena: T.Arena; input: T.Tensor; out: T.Tensor | null; loss: T.Tensor | null }
    const flights: Flight[] = [];
    const inputOf = (b: Batch, act: Float32Array | null): T.Tensor => {
      if (first) return T.tensor(b.inputs, [b.batch, b.seq], 'i32', be);
      const x = T.tensor(act!, [b.batch, b.seq, c.hiddenSize], 'f32', be);
      x.requiresGrad = true; // a leaf: its gradient goes back to the previous stage
      return x;
    };
    /** Forward of the next micro-batch; returns the activation for the next stage (null on the last). */
    const forward = (b: Batch, act: Float32Array | null): Float32Array | null => {
      const arena = new T.Arena();
      try {
        return arena.run(() => {
          const input = inputOf(b, act);
          if (full) {
            // only the input is kept: the forward runs again, with autograd, in the backward
            const out = T.noGrad(() => T.tidy(() => {
              const r = stageForward(b, input, true);
              return last ? null : r.out.toFloat32();
            }));
            flights.push({ b, arena, input, out: null, loss: null });
            this.pipelineStats.maxInFlight = Math.max(this.pipelineStats.maxInFlight, flights.length);
            return out;
          }
          const r = stageForward(b, input, true); // the graph lives until this micro-batch's backward
          flights.push({ b, arena, input, out: r.out, loss: r.loss });
          this.pipelineStats.maxInFlight = Math.max(this.pipelineStats.maxInFlight, flights.length);
          return last ? null : r.out.toFloat32();
        });
      } catch (e) {
        arena.dispose();
        throw e;
      }
    };
    /** Backward of the oldest micro-batch in flight, given its output's gradient; returns its input's gradient (null on the first stage). */
    const backward = (dy: Float32Array | null): Float32Array | null => {
      const f = flights.shift()!;
      try {
        return f.arena.run(() => {
          if (full) this.pipelineStats.recomputedForwards++;
          const r = full ? stageForward(f.b, f.input, false) : { out: f.out!, loss: f.loss };
          let root: T.Tensor | null = r.loss ? T.scale(r.loss, scale) : null;
          if (!last) {
            const surrogate = T.sumAll(T.mul(r.out, T.tensor(dy!, r.out.shape, 'f32', be)));
            root = root ? T.add(root, surrogate) : surrogate;
          }
          if (root && (root.node || root.requiresGrad)) T.backward(root);
          if (first) return null;
          return f.input.grad ? f.input.grad.toFloat32() : new Float32Array(actLen);
        });
      } finally {
        f.arena.dispose();
      }
    };
    const recomputed0 = T.checkpointRecomputations();
    const recvFrom = (rank: number) => {
      const v = new Float32Array(actLen);
      pp.comm.recv(rank, v);
      return v;
    };
    const send = (rank: number, v: Float32Array) => pp.comm.send(rank, v, pp.label);

    let next = 0;
    for (let i = 0; i < warm; i++) {
      const out = forward(mine[next++]!, first ? null : recvFrom(pp.prev!));
      if (out) send(pp.next!, out);
    }
    const steady = M - warm;
    let act = steady > 0 && !first ? recvFrom(pp.prev!) : null;
    for (let i = 0; i < steady; i++) {
      const out = forward(mine[next++]!, act);
      let dy: Float32Array | null = null;
      if (out) {
        dy = new Float32Array(actLen);
        pp.comm.sendRecv(pp.next!, out, pp.next!, dy, pp.label); // send forward, receive backward
      }
      const dx = backward(dy);
      act = null;
      if (dx) {
        if (i === steady - 1) send(pp.prev!, dx);
        else {
          act = new Float32Array(actLen);
          pp.comm.sendRecv(pp.prev!, dx, pp.prev!, act, pp.label); // send backward, receive forward
        }
      }
    }
    for (let i = 0; i < warm; i++) {
      const dx = backward(last ? null : recvFrom(pp.next!));
      if (dx) send(pp.prev!, dx);
    }
    this.pipelineStats.recomputedAttention += T.checkpointRecomputations() - recomputed0;
    // the stages' parts (disjoint layers; the loss terms add up), then the data-parallel replicas'
    let r = sumOverGroup(pp.group, { loss, ce, aux, stats });
    if (dp.size > 1) r = sumOverGroup(dp, r);
    return r;
  }

  /**
   * The gradient norm of the whole model from this rank's parameters: a tensor-parallel slice
   * counts once, a parameter the TP group replicates 1/tp per rank, the last stage's copy of a tied
   * embedding not at all; summed over the replica's ranks (tp x pp).
   */
  private globalNorm(): GlobalNorm | undefined {
    const tp = this.parallel?.tp, pp = this.parallel?.pp;
    const ep = this.parallel?.ep && this.parallel.ep.group.size > 1 ? this.parallel.ep : undefined;
    if (!tp && !pp && !ep) return undefined;
    const split = tp ? shardPlan(this.model.config, tp.ops.shard) : new Map();
    const tpSize = tp?.group.size ?? 1;
    const lastTied = pp !== undefined && pp.stage.index > 0 && pp.stage.index === pp.stage.size - 1;
    const weight = (p: T.Tensor) => (lastTied && p.name === 'model.embed_tokens.weight' ? 0 : this.ownExpert(p) || split.has(p.name!) ? 1 : 1 / tpSize);
    // a scalar the planner does not model
    const sum = (g: Group, s: number) => g.control(() => g.allReduce(Float32Array.of(s)))[0]!;
    if (ep && !(this.opt instanceof ShardedAdamW)) {
      // this rank's experts are its own, while the rest is the same on every data-parallel replica
      // (reduced already): the rest counts 1/dp per replica, and the sum runs over every rank
      const dp = this.parallel!.dp.size;
      const world = this.parallel!.world;
      return { weight: (p) => (this.ownExpert(p) ? 1 : weight(p) / dp), reduce: (s) => sum(world, s) };
    }
    const group = this.parallel!.replica ?? tp?.group;
    return { weight, reduce: (s) => (group ? sum(group, s) : s) };
  }

  /**
   * Sequence parallelism: the norms between the blocks saw only this rank's rows of the tokens, so
   * their gradients are partial sums over the tensor-parallel group (Megatron all-reduces these
   * "sequence-parallel" parameters' gradients the same way).
   */
  private reduceSequenceParallelNorms(): void {
    const tp = this.parallel?.tp;
    if (!tp?.ops.sequence) return;
    const norms = [...this.model.params].filter(([n]) => /\.(input_layernorm|post_attention_layernorm)\.weight$/.test(n)).map(([, p]) => p as T.Tensor);
    allReduceGradients(norms, tp.group);
  }

  /** With tied embeddings over a pipeline, the first and last stage's embedding gradients summed (Megatron's embedding group). */
  private reduceTiedEmbedding(): void {
    const pp = this.parallel?.pp;
    if (!pp?.embedding) return;
    const p = this.model.params.get('model.embed_tokens.weight') as T.Tensor;
    allReduceGradients([p], pp.embedding);
  }

  /** One optimizer step over `accum` micro-batches. */
  trainStep(): StepMetrics {
    const t0 = performance.now();
    const o = this.o;
    const { loss, ce, aux, stats: statsSum } = this.accumulateGradients();
    this.reduceTiedEmbedding();
    this.reduceSequenceParallelNorms();
    if (this.parallel && !(this.opt instanceof ShardedAdamW)) allReduceGradients(this.opt.params.filter((p) => !this.ownExpert(p)), this.parallel.dp);
    const gradNorm = this.opt.clipGradNorm(o.clip, this.globalNorm()); // ZeRO-1: reduce-scatters the gradients first
    const lr = learningRate({ kind: o.schedule, lr: o.lr, minLr: o.minLr, warmupSteps: o.warmup, totalSteps: o.steps }, this.step);
    this.opt.update(lr);
    const alpha = statsSum.map((_, i) => this.controller.alpha(i));
    this.controller.update(statsSum); // report eqs. 7-9: alpha for the next step from this step's drop rate
    this.step++;
    const tokens = o.accum * o.batch * o.seq;
    this.tokensSeen += tokens;
    this.watch(statsSum);
    const m: StepMetrics = {
      step: this.step,
      loss,
      ce,
      aux,
      alpha,
      dropRate: statsSum.map((s) => s.dropRate),
      tokensPerExpert: statsSum.map((s) => s.tokensPerExpert),
      max1OverMax2: statsSum.map((s) => s.max1OverMax2),
      max2OverMax3: statsSum.map((s) => s.max2OverMax3),
      entropy: statsSum.map((s) => s.entropy),
      gradNorm,
      lr,
      tokensPerSec: tokens / ((performance.now() - t0) / 1000),
    };
    return m;
  }

  /** Router monitoring: dead experts and persistently high drop rates. */
  private watch(stats: RouterStats[]): void {
    const o = this.o;
    const layers = this.moeLayerIds;
    stats.forEach((s, i) => {
      s.routedPerExpert.forEach((n, e) => {
        const idle = this.warnings.idle[i]!;
        idle[e] = n === 0 ? idle[e]! + 1 : 0;
        if (idle[e] === o.deadExpertSteps) this.hooks.onWarn?.(`layer ${layers[i]}: expert ${e} received no tokens for ${o.deadExpertSteps} steps (dead expert)`);
      });
      this.warnings.highDrop[i] = s.dropRate > o.dropWarnRate ? this.warnings.highDrop[i]! + 1 : 0;
      if (this.warnings.highDrop[i] === o.dropWarnSteps) {
        this.hooks.onWarn?.(`layer ${layers[i]}: drop rate above ${(100 * o.dropWarnRate).toFixed(0)}% for ${o.dropWarnSteps} steps (now ${(100 * s.dropRate).toFixed(1)}%)`);
      }
    });
  }

  /** Mean validation cross-entropy over the fixed held-out batches (dropless routing), and perplexity. */
  evaluate(): { loss: number; ppl: number; tokens: number } {
    this.valCache ??= this.data.valBatches(this.o.batch, this.o.evalBatches);
    if (this.valCache.length === 0) return { loss: NaN, ppl: NaN, tokens: 0 };
    const be = this.model.backend;
    const V = this.model.config.vocabSize;
    let sum = 0;
    const pp = this.parallel?.pp;
    if (pp && pp.group.size > 1) {
      // the batches flow through the stages; the last computes the loss and tells the others
      const first = pp.stage.index === 0, last = pp.stage.index === pp.stage.size - 1;
      for (const b of this.valCache) {
        sum += T.noGrad(() =>
          T.tidy(() => {
            let input: T.Tensor;
            if (first) input = T.tensor(b.inputs, [b.batch, b.seq], 'i32', be);
            else {
              const act = new Float32Array(b.batch * b.seq * this.model.config.hiddenSize);
              pp.comm.recv(pp.prev!, act);
              input = T.tensor(act, [b.batch, b.seq, this.model.config.hiddenSize], 'f32', be);
            }
            const out = this.model.forwardStage(input).out;
            if (!last) {
              pp.comm.send(pp.next!, out.toFloat32(), pp.label);
              return 0;
            }
            return T.crossEntropy(T.reshape(out, [b.batch * b.seq, V]), T.tensor(b.targets, [b.batch * b.seq], 'i32', be)).item();
          }),
        );
      }
      sum = pp.group.broadcast(Float32Array.of(sum), pp.stage.size - 1)[0]!;
      const loss = sum / this.valCache.length;
      return { loss, ppl: Math.exp(loss), tokens: this.valCache.length * this.o.batch * this.o.seq };
    }
    for (const b of this.valCache) {
      sum += T.noGrad(() =>
        T.tidy(() => T.crossEntropy(T.reshape(this.model.forward(T.tensor(b.inputs, [b.batch, b.seq], 'i32', be)).logits, [b.batch * b.seq, V]), T.tensor(b.targets, [b.batch * b.seq], 'i32', be)).item()),
      );
    }
    const loss = sum / this.valCache.length;
    return { loss, ppl: Math.exp(loss), tokens: this.valCache.length * this.o.batch * this.o.seq };
  }

  /**
   * Train until `steps` (or until `shouldStop()` says so after a step: then checkpoint and
   * return). Evaluates every evalEvery steps, checkpoints every saveEvery steps and at the end.
   */
  async run(shouldStop: () => boolean = () => false): Promise<{ stopped: boolean; last?: StepMetrics }> {
    let last: StepMetrics | undefined;
    while (this.step < this.o.steps) {
      const m = this.trainStep();
      if (this.evaluates && this.o.evalEvery > 0 && (this.step % this.o.evalEvery === 0 || this.step === this.o.steps)) {
        const v = this.controlTraffic(() => this.evaluate());
        m.valLoss = v.loss;
        m.valPpl = v.ppl;
        // report section 3.2: watch it fall (needs whole experts: not under tensor parallelism)
        if (this.moeLayerIds.length > 0 && !this.parallel?.tp && !this.parallel?.pp && !this.parallel?.ep) m.expertSimilarity = expertSimilarity(this.model);
      }
      if (this.writer) {
        try {
          appendFileSync(this.metricsPath, `${JSON.stringify(m)}\n`);
        } catch (e) {
          throw withPath(e, this.metricsPath); // a full disk: say which file (a line cut short is dropped on resume)
        }
        this.hooks.onStep?.(m, this);
      }
      last = m;
      await new Promise<void>((r) => setImmediate(r)); // let signals (SIGINT) and I/O in between steps
      let stop = shouldStop();
      // every rank stops at the same step (any rank asked to)
      if (this.parallel && this.parallel.world.size > 1) stop = this.controlTraffic(() => this.parallel!.world.allReduce(Float32Array.of(stop ? 1 : 0)))[0]! > 0;
      if (stop || this.step === this.o.steps || (this.o.saveEvery > 0 && this.step % this.o.saveEvery === 0)) await this.controlTraffic(() => this.checkpoint());
      if (stop) return { stopped: true, last };
    }
    return { stopped: false, last };
  }

  /**
   * Run `fn` with this rank's collectives counted as control traffic: evaluation, the stop
   * agreement and checkpoints are not the step the planner models (Communicator.control).
   */
  private controlTraffic<R>(fn: () => R): R {
    return this.parallel ? this.parallel.world.control(fn) : fn();
  }

  dispose(): void {
    this.opt.dispose();
  }
}

/** Router statistics of no micro-batch yet (E experts). */
function zeroStats(E: number): RouterStats {
  return { routedPerExpert: Array(E).fill(0), tokensPerExpert: Array(E).fill(0), dropRate: 0, max1OverMax2: 0, max2OverMax3: 0, entropy: 0, capacity: null };
}

/** Add one micro-batch's router statistics into the step's: counts summed, rates as their share of the step's mean. */
function addStats(acc: RouterStats, s: RouterStats, accum: number): void {
  s.routedPerExpert.forEach((v, e) => (acc.routedPerExpert[e]! += v));
  s.tokensPerExpert.forEach((v, e) => (acc.tokensPerExpert[e]! += v));
  acc.dropRate += s.dropRate / accum;
  acc.max1OverMax2 += s.max1OverMax2 / accum;
  acc.max2OverMax3 += s.max2OverMax3 / accum;
  acc.entropy += s.entropy / accum;
  acc.capacity = s.capacity;
}

/** Losses and router statistics of each rank's micro-batches, summed over the group (each is already a share of the step's mean). */
function sumOverGroup(g: Group, r: { loss: number; ce: number; aux: number[]; stats: RouterStats[] }): { loss: number; ce: number; aux: number[]; stats: RouterStats[] } {
  const flat: number[] = [r.loss, r.ce, ...r.aux];
  for (const s of r.stats) flat.push(...s.routedPerExpert, ...s.tokensPerExpert, s.dropRate, s.max1OverMax2, s.max2OverMax3, s.entropy);
  const sum = g.control(() => g.allReduce(Float32Array.from(flat))); // metrics, not the planner's step traffic
  let i = 0;
  const next = () => sum[i++]!;
  const loss = next(), ce = next();
  const aux = r.aux.map(next);
  const stats = r.stats.map((s) => ({
    ...s,
    routedPerExpert: s.routedPerExpert.map(next),
    tokensPerExpert: s.tokensPerExpert.map(next),
    dropRate: next(),
    max1OverMax2: next(),
    max2OverMax3: next(),
    entropy: next(),
  }));
  return { loss, ce, aux, stats };
}
