/**
 * Data parallelism: every rank of a DP group holds the whole model, runs its share of the step's
 * micro-batches, and the gradients are summed over the group before the optimizer runs.
 *
 * - Plain DP: one all-reduce of all gradients (one flat buffer, as Megatron's grad buffer), then
 *   every rank runs the same AdamW update on the same sums, so the weights stay identical.
 * - ZeRO-1 (ShardedAdamW): the flat gradient is reduce-scattered instead, each rank keeps AdamW's
 *   moments for its 1/p of the flat parameter space only, updates that slice, and the updated
 *   slices are all-gathered back into every rank's weights (Megatron's distributed optimizer,
 *   with fp32 weights: the all-gather moves fp32 values).
 * Micro-batch losses are already scaled by 1/(micro-batches of the whole step), so the sum over
 * ranks is the step's mean, as one rank accumulating them all would have it.
 */
import * as T from '../../tensor/index.js';
import type { Tensor } from '../../tensor/index.js';
import { AdamW, type AdamWOptions, type GlobalNorm, isDecayed } from '../../train/optimizer.js';
import { evenCounts, type Group } from './comm.js';

/** Every parameter's gradient as one flat buffer in parameter order; a missing gradient is zeros. */
export function flatGradients(params: readonly Tensor[]): Float32Array {
  const flat = new Float32Array(params.reduce((a, p) => a + p.size, 0));
  let o = 0;
  for (const p of params) {
    if (p.grad) flat.set(p.grad.toFloat32(), o);
    o += p.size;
  }
  return flat;
}

function setGradient(p: Tensor, values: Float32Array): void {
  if (!p.grad) p.grad = T.empty(p.shape, 'f32', p.backend, false);
  p.grad.assign(values);
}

/** Sum the gradients over the group (one all-reduce), in place. */
export function allReduceGradients(params: readonly Tensor[], group: Group): void {
  if (group.size === 1) return;
  const flat = group.allReduce(flatGradients(params));
  let o = 0;
  for (const p of params) {
    setGradient(p, flat.subarray(o, o + p.size));
    o += p.size;
  }
}

/** A piece of a parameter inside this rank's shard. */
interface Piece {
  param: Tensor;
  /** Element range of the parameter. */
  from: number;
  to: number;
  /** Where the piece starts in the shard. */
  at: number;
  m: Tensor;
  v: Tensor;
}

/**
 * AdamW with ZeRO-1: moments for this rank's shard of the flat parameter space only. Drop-in for
 * the trainer's optimizer: clipGradNorm reduce-scatters the gradients first (so it must be called
 * once per step, before update), update then all-gathers the new weights.
 */
export class ShardedAdamW {
  step = 0;
  readonly steps = new Map<string, number>();
  readonly counts: number[];
  readonly lo: number;
  readonly hi: number;
  private readonly pieces: Piece[] = [];
  private shardGrad: Float32Array | null = null;
  /** The parameters sharded over the group (every rank of it holds them whole). */
  private readonly sharded: readonly Tensor[];
  /** Parameters only this rank of the group holds (expert parallelism's experts): a plain AdamW, nothing to shard. */
  private readonly localOpt: AdamW | null;

  constructor(
    readonly params: readonly Tensor[],
    readonly opts: AdamWOptions,
    readonly group: Group,
    local: (p: Tensor) => boolean = () => false,
  ) {
    this.sharded = params.filter((p) => !local(p));
    const own = params.filter(local);
    this.localOpt = own.length ? new AdamW(own, opts) : null;
    const total = this.sharded.reduce((a, p) => a + p.size, 0);
    this.counts = evenCounts(total, group.size);
    this.lo = this.counts.slice(0, group.index).reduce((a, b) => a + b, 0);
    this.hi = this.lo + this.counts[group.index]!;
    for (const p of own) this.steps.set(p.name!, 0);
    let o = 0;
    for (const p of this.sharded) {
      if (!p.name) throw new Error('ShardedAdamW: every parameter needs a name (used for checkpoints)');
      this.steps.set(p.name, 0);
      const from = Math.max(this.lo, o) - o, to = Math.min(this.hi, o + p.size) - o;
      if (to > from) {
        const mk = () => T.keep(T.zeros([to - from], 'f32', p.backend));
        this.pieces.push({ param: p, from, to, at: o + from - this.lo, m: mk(), v: mk() });
      }
      o += p.size;
    }
  }

  /** Floats of optimizer state this rank holds (2 per element of its shard). */
  get stateFloats(): number {
    return 2 * (this.hi - this.lo) + 2 * (this.localOpt?.params.reduce((a, p) => a + p.size, 0) ?? 0);
  }

  /** Reduce-scatter the gradients; returns the global norm (before clipping) and clips this shard. */
  clipGradNorm(maxNorm: number, global?: GlobalNorm): number {
    const shard = this.group.reduceScatter(flatGradients(this.sharded), this.counts);
    let local = 0;
    for (const pc of this.pieces) {
      let sq = 0;
      for (let i = pc.at; i < pc.at + (pc.to - pc.from); i++) sq += shard[i]! * shard[i]!;
      local += (global?.weight(pc.param) ?? 1) * sq;
    }
    for (const p of this.localOpt?.params ?? []) if (p.grad) local += (global?.weight(p) ?? 1) * T.sumSquares(p.grad);
    const dpSum = this.group.control(() => this.group.allReduce(Float32Array.of(local)))[0]!; // a scalar the planner does not model
    const norm = Math.sqrt(global ? global.reduce(dpSum) : dpSum);
    const coef = maxNorm / (norm + 1e-6);
    if (maxNorm > 0 && coef < 1) {
      for (let i = 0; i < shard.length; i++) shard[i]! *= coef;
      for (const p of this.localOpt?.params ?? []) if (p.grad) T.scaleInPlace(p.grad, coef);
    }
    this.shardGrad = shard;
    return norm;
  }

  /** Update this shard with the reduced gradients, then all-gather the weights. */
  update(lr: number): void {
    const g = this.shardGrad;
    if (!g) throw new Error('ShardedAdamW.update: clipGradNorm (which reduce-scatters the gradients) must run first in each step');
    this.step++;
    const mine = new Float32Array(this.hi - this.lo);
    // every parameter is stepped on every rank (the counts stay the same everywhere); the shard's
    // pieces are updated with the same kernel AdamW uses on whole tensors
    for (const p of this.sharded) this.steps.set(p.name!, this.steps.get(p.name!)! + 1);
    if (this.localOpt) {
      this.localOpt.update(lr);
      for (const [n, st] of this.localOpt.steps) this.steps.set(n, st);
    }
    for (const pc of this.pieces) {
      const n = pc.to - pc.from;
      const be = pc.param.backend;
      T.tidy(() => {
        const w = T.tensor(pc.param.toFloat32().subarray(pc.from, pc.to), [n], 'f32', be);
        const gr = T.tensor(g.subarray(pc.at, pc.at + n), [n], 'f32', be);
        const wd = isDecayed(pc.param) ? this.opts.weightDecay : 0;
        T.adamwUpdate(w, gr, pc.m, pc.v, { lr, beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps, weightDecay: wd, step: this.steps.get(pc.param.name!)! });
        mine.set(w.toFloat32(), pc.at);
      });
    }
    this.shardGrad = null;
    const all = this.group.allGather(mine, this.counts);
    let o = 0;
    for (const p of this.sharded) {
      p.assign(all.subarray(o, o + p.size));
      o += p.size;
    }
    this.zeroGrad();
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** The whole optimizer state as a plain AdamW (every rank gets it: an all-gather of the moments), for checkpoints. */
  gatherFull(): AdamW {
    const full = new AdamW(this.params, this.opts);
    full.step = this.step;
    for (const [n, s] of this.steps) full.steps.set(n, s);
    for (const key of ['m', 'v'] as const) {
      const mine = new Float32Array(this.hi - this.lo);
      for (const pc of this.pieces) mine.set(pc[key].toFloat32(), pc.at);
      const all = this.group.allGather(mine, this.counts);
      let o = 0;
      for (const p of this.sharded) {
        full[key].get(p.name!)!.assign(all.subarray(o, o + p.size));
        o += p.size;
      }
      for (const [n, t] of this.localOpt?.[key] ?? []) full[key].get(n)!.assign(t.toFloat32());
    }
    return full;
  }

  /** Take this shard of a whole optimizer state (a checkpoint loaded into a plain AdamW). */
  loadFrom(full: AdamW): void {
    this.step = full.step;
    for (const [n, s] of full.steps) this.steps.set(n, s);
    for (const pc of this.pieces) {
      pc.m.assign(full.m.get(pc.param.name!)!.toFloat32().subarray(pc.from, pc.to));
      pc.v.assign(full.v.get(pc.param.name!)!.toFloat32().subarray(pc.from, pc.to));
    }
    if (this.localOpt) {
      this.localOpt.step = full.step;
      for (const p of this.localOpt.params) {
        this.localOpt.steps.set(p.name!, full.steps.get(p.name!)!);
        this.localOpt.m.get(p.name!)!.assign(full.m.get(p.name!)!.toFloat32());
        this.localOpt.v.get(p.name!)!.assign(full.v.get(p.name!)!.toFloat32());
      }
    }
  }

  dispose(): void {
    this.localOpt?.dispose();
    for (const pc of this.pieces) {
      pc.m.dispose();
      pc.v.dispose();
    }
  }
}
