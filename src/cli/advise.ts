/** `skymoe advise`: upcycle or train from scratch, from the sunk dense cost and the planned MoE budget. */
import { readConfig } from '../io/hf.js';
import type { ModelConfig } from '../model/config.js';
import { preset } from '../model/presets.js';
import { advise } from '../upcycle/advise.js';

export interface AdviseCliOptions {
  dense?: string;
  densePreset?: string;
  denseTokens?: number;
  moe?: string;
  moePreset?: string;
  seq: number;
  tokens?: number;
  flops?: number;
  gpuHours?: number;
  gpu: string;
  mfu: number;
}

function configFrom(dir: string | undefined, name: string | undefined, what: string): ModelConfig | undefined {
  if (dir && name) throw new Error(`advise: give --${what} or --${what}-preset, not both`);
  return dir ? readConfig(dir) : name ? preset(name) : undefined;
}

export function runAdvise(o: AdviseCliOptions): void {
  const dense = configFrom(o.dense, o.densePreset, 'dense');
  const moe = configFrom(o.moe, o.moePreset, 'moe');
  if (!moe) throw new Error('advise: give the planned MoE with --moe DIR or --moe-preset NAME');
  if (dense && o.denseTokens === undefined) throw new Error('advise: --dense-tokens (tokens the dense model was trained on) is needed with a dense model');
  const budgets = [o.tokens, o.flops, o.gpuHours].filter((x) => x !== undefined).length;
  if (budgets !== 1) throw new Error(`advise: give exactly one MoE budget: --tokens, --flops or --gpu-hours (got ${budgets})`);
  const a = advise({
    dense: dense ? { config: dense, tokens: o.denseTokens! } : undefined,
    moe,
    seq: o.seq,
    budgetTokens: o.tokens,
    budgetFlops: o.flops,
    budgetGpuHours: o.gpuHours !== undefined ? { hours: o.gpuHours, gpu: o.gpu, mfu: o.mfu } : undefined,
  });
  for (const f of a.figures) console.log(f);
  console.log(`decision: ${a.decision.toUpperCase()}: ${a.reason}`);
}
