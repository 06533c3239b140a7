/** Learning-rate schedules: warmup + cosine to a floor, constant (with warmup), warmup-stable-decay. */

export type ScheduleKind = 'cosine' | 'constant' | 'wsd';

export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Peak learning rate. */
  lr: number;
  /** Floor reached at the end of the decay (cosine, wsd). */
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
  /** wsd: fraction of totalSteps spent in the final decay (default 0.2). */
  decayFraction?: number;
}

/** Learning rate at a 0-based step. Warmup is linear from lr/warmup to lr. */
export function learningRate(s: ScheduleOptions, step: number): number {
  if (s.warmupSteps > 0 && step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  switch (s.kind) {
    case 'constant':
      return s.lr;
    case 'cosine': {
      const span = Math.max(1, s.totalSteps - s.warmupSteps);
      const t = Math.min(1, (step - s.warmupSteps) / span);
      return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * t));
    }
    case 'wsd': {
      const decaySteps = Math.max(1, Math.round((s.decayFraction ?? 0.2) * s.totalSteps));
      const decayStart = s.totalSteps - decaySteps;
      if (step < decayStart) return s.lr;
      const t = Math.min(1, (step - decayStart) / decaySteps);
      return s.lr + (s.minLr - s.lr) * t;
    }
  }
}
