/**
 * Auxiliary-loss controllers, one state per MoE layer, updated every step from that layer's
 * router statistics:
 * - fixed: a constant coefficient;
 * - skywork: the report's adaptive coefficient (section 4.2, eqs. 7-9):
 *     alpha_hat = xi * d if d <= alpha_max / xi else alpha_max;  alpha <- beta * alpha + (1 - beta) * alpha_hat
 *   with d the layer's token-drop rate of the step;
 * - bias: aux-loss-free balancing (DeepSeek-V3): no aux loss; a per-expert bias added to the
 *   routing scores for top-k selection only, updated by rate * sign(mean load - load).
 */
import type { RouterStats } from '../model/moe.js';

export type ControllerKind = 'fixed' | 'skywork' | 'bias';

export interface ControllerOptions {
  kind: ControllerKind;
  /** fixed: the coefficient; skywork: the initial alpha. */
  alpha: number;
  /** skywork (SPEC section 3 defaults). */
  xi: number;
  alphaMax: number;
  beta: number;
  /** bias: update rate. */
  biasRate: number;
}

/** Defaults: the report's xi, alpha_max, beta; initial alpha = alpha_max (see docs/training.md). */
export const DEFAULT_CONTROLLER: ControllerOptions = { kind: 'skywork', alpha: 0.01, xi: 1 / 5, alphaMax: 0.01, beta: 0.99, biasRate: 1e-3 };

export interface ControllerState {
  kind: ControllerKind;
  /** Current coefficient per MoE layer (0 for bias balancing). */
  alpha: number[];
  /** Per MoE layer, per expert (bias balancing only). */
  bias: number[][];
}

export class AuxController {
  readonly state: ControllerState;
  constructor(
    readonly opts: ControllerOptions,
    numMoeLayers: number,
    numExperts: number,
  ) {
    const a = opts.kind === 'bias' ? 0 : opts.alpha;
    this.state = {
      kind: opts.kind,
      alpha: Array(numMoeLayers).fill(a),
      bias: Array.from({ length: numMoeLayers }, () => Array(numExperts).fill(0)),
    };
  }

  /** The coefficient of layer l's aux loss for the coming step. */
  alpha(l: number): number {
    return this.state.alpha[l]!;
  }

  /** The selection bias of layer l, or undefined when not balancing by bias. */
  bias(l: number): Float32Array | undefined {
    return this.state.kind === 'bias' ? Float32Array.from(this.state.bias[l]!) : undefined;
  }

  /** Skywork eqs. 8-9 for one layer: the target and the smoothed coefficient. */
  static adaptiveStep(alpha: number, d: number, o: Pick<ControllerOptions, 'xi' | 'alphaMax' | 'beta'>): number {
    const target = d <= o.alphaMax / o.xi ? o.xi * d : o.alphaMax;
    return o.beta * alpha + (1 - o.beta) * target;
  }

  /** Update every layer from this step's router statistics (one entry per MoE layer). */
  update(stats: readonly RouterStats[]): void {
    const s = this.state;
    stats.forEach((st, l) => {
      if (s.kind === 'skywork') s.alpha[l] = AuxController.adaptiveStep(s.alpha[l]!, st.dropRate, this.opts);
      else if (s.kind === 'bias') {
        const load = st.routedPerExpert;
        const mean = load.reduce((a, b) => a + b, 0) / load.length;
        s.bias[l] = s.bias[l]!.map((b, e) => b + this.opts.biasRate * Math.sign(mean - load[e]!));
      }
    });
  }

  /** Restore a saved state (checkpoint resume). */
  load(state: ControllerState): void {
    if (state.kind !== this.state.kind || state.alpha.length !== this.state.alpha.length) {
      throw new Error(`aux controller state is for '${state.kind}' with ${state.alpha.length} layers; this run uses '${this.state.kind}' with ${this.state.alpha.length}`);
    }
    this.state.alpha = [...state.alpha];
    this.state.bias = state.bias.map((b) => [...b]);
  }
}
