/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), and global-norm gradient clipping.
 * Not decayed: 1-D parameters (the RMSNorm weights), as in Megatron-LM and nanoGPT; embeddings,
 * attention, router and expert matrices are decayed.
 */
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

/** Whether a parameter is decayed (matrices yes, vectors no). */
export function isDecayed(p: Tensor): boolean {
  return p.rank >= 2;
}

/**
 * The gradient norm of a model spread over ranks: each rank weighs its parameters' squared sums
 * (1 for a slice, 1/ranks for a parameter every rank holds whole) and `reduce` sums them over the ranks.
 */
export interface GlobalNorm {
  weight(p: Tensor): number;
  reduce(localSumOfSquares: number): number;
}

export class AdamW {
  /** Optimizer steps taken. */
  step = 0;
  /**
   * Updates each parameter has received (its bias-correction count). A parameter without a gradient
   * in a step is skipped entirely, as torch.optim.AdamW does: no decay, no moment update, no count.
   */
  readonly steps = new Map<string, number>();
  readonly m = new Map<string, Tensor>();
  readonly v = new Map<string, Tensor>();

  constructor(
    readonly params: readonly Tensor[],
    readonly opts: AdamWOptions = DEFAULT_ADAMW,
  ) {
    for (const p of params) {
      if (!p.name) throw new Error('AdamW: every parameter needs a name (used for checkpoints)');
      this.steps.set(p.name, 0);
      this.m.set(p.name, T.keep(T.zeros(p.shape, 'f32', p.backend)));
      this.v.set(p.name, T.keep(T.zeros(p.shape, 'f32', p.backend)));
    }
  }

  /** Global L2 norm of all gradients (missing gradients count as zero). */
  gradNorm(global?: GlobalNorm): number {
    let s = 0;
    for (const p of this.params) if (p.grad) s += (global?.weight(p) ?? 1) * T.sumSquares(p.grad);
    return Math.sqrt(global ? global.reduce(s) : s);
  }

  /**
   * Scale gradients by min(1, maxNorm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_ does;
   * returns the norm before clipping. `global`: the norm of a model whose parameters are spread
   * over ranks (tensor parallelism).
   */
  clipGradNorm(maxNorm: number, global?: GlobalNorm): number {
    const norm = this.gradNorm(global);
    const coef = maxNorm / (norm + 1e-6);
    if (maxNorm > 0 && coef < 1) for (const p of this.params) if (p.grad) T.scaleInPlace(p.grad, coef);
    return norm;
  }

  /** One update with learning rate lr; gradients are dropped afterwards (zero for the next step). */
  update(lr: number): void {
    this.step++;
    for (const p of this.params) {
      if (!p.grad) continue;
      const wd = isDecayed(p) ? this.opts.weightDecay : 0;
      const step = this.steps.get(p.name!)! + 1;
      this.steps.set(p.name!, step);
      T.adamwUpdate(p, p.grad, this.m.get(p.name!)!, this.v.get(p.name!)!, { lr, beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps, weightDecay: wd, step });
    }
    this.zeroGrad();
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}
