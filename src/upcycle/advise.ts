/**
 * Upcycle or train from scratch? Report section 3.2 / SPEC section 4: with C_dense the compute
 * already sunk in the dense checkpoint and C_moe the planned MoE budget,
 *   no dense checkpoint -> scratch;  C_moe >= 2 C_dense -> scratch;  C_moe well below C_dense -> upcycle.
 * Costs are 6 x active parameters x tokens plus attention, from the configs.
 */
import type { ModelConfig } from '../model/config.js';
import { countParams } from '../model/params.js';
import { gpuSpec } from '../parallel/planner/gpus.js';

/** Training FLOPs per token: 6 x active parameters + causal attention (fwd+bwd: 6 x L x T x C). */
export function trainFlopsPerToken(c: ModelConfig, seq: number): number {
  return 6 * countParams(c).active + 6 * c.numLayers * seq * c.numHeads * c.headDim;
}

export interface AdviseInput {
  dense?: { config: ModelConfig; tokens: number };
  moe: ModelConfig;
  seq: number;
  /** Exactly one of these. */
  budgetTokens?: number;
  budgetFlops?: number;
  budgetGpuHours?: { hours: number; gpu: string; mfu: number };
  /** Below this ratio C_moe / C_dense counts as "well below" (default 0.5). */
  upcycleBelow?: number;
}

export interface Advice {
  decision: 'upcycle' | 'scratch';
  reason: string;
  denseFlops: number | null;
  moeFlops: number;
  moeTokens: number;
  ratio: number | null;
  figures: string[];
}

export function advise(a: AdviseInput): Advice {
  const given = [a.budgetTokens, a.budgetFlops, a.budgetGpuHours].filter((x) => x !== undefined).length;
  if (given !== 1) throw new Error('advise: give exactly one MoE budget: tokens, FLOPs or GPU-hours');
  const perTokMoe = trainFlopsPerToken(a.moe, a.seq);
  let moeFlops: number;
  const figures: string[] = [`MoE: ${countParams(a.moe).active.toExponential(3)} active parameters, ${perTokMoe.toExponential(3)} training FLOPs per token at seq ${a.seq}`];
  if (a.budgetTokens !== undefined) moeFlops = a.budgetTokens * perTokMoe;
  else if (a.budgetFlops !== undefined) moeFlops = a.budgetFlops;
  else {
    const g = gpuSpec(a.budgetGpuHours!.gpu); // the planner's GPU table
    moeFlops = a.budgetGpuHours!.hours * 3600 * g.bf16Tflops * 1e12 * a.budgetGpuHours!.mfu;
    figures.push(`budget: ${a.budgetGpuHours!.hours} ${g.name} GPU-hours x ${g.bf16Tflops} bf16 TFLOP/s x MFU ${a.budgetGpuHours!.mfu}`);
  }
  const moeTokens = moeFlops / perTokMoe;
  figures.push(`C_moe = ${moeFlops.toExponential(3)} FLOPs (${moeTokens.toExponential(3)} tokens)`);
  if (!a.dense) return { decision: 'scratch', reason: 'no dense checkpoint to upcycle from', denseFlops: null, moeFlops, moeTokens, ratio: null, figures };
  const perTokDense = trainFlopsPerToken(a.dense.config, a.seq);
  const denseFlops = a.dense.tokens * perTokDense;
  const ratio = moeFlops / denseFlops;
  figures.push(`dense: ${countParams(a.dense.config).active.toExponential(3)} parameters, ${perTokDense.toExponential(3)} FLOPs per token; C_dense = ${a.dense.tokens.toExponential(3)} tokens -> ${denseFlops.toExponential(3)} FLOPs (sunk)`);
  figures.push(`C_moe / C_dense = ${ratio.toFixed(3)}`);
  const below = a.upcycleBelow ?? 0.5;
  if (ratio >= 2) return { decision: 'scratch', reason: `C_moe >= 2 C_dense: a from-scratch MoE catches up with and passes the upcycled one within this budget (report section 3.2)`, denseFlops, moeFlops, moeTokens, ratio, figures };
  if (ratio < below) return { decision: 'upcycle', reason: `C_moe is well below C_dense (< ${below}x): the dense checkpoint's sunk compute is a head start scratch training cannot recover`, denseFlops, moeFlops, moeTokens, ratio, figures };
  return { decision: 'upcycle', reason: `C_moe is between ${below}x and 2x C_dense: upcycling still starts ahead, but the margin shrinks as the budget grows (the report's small-budget runs were close); monitor expert similarity`, denseFlops, moeFlops, moeTokens, ratio, figures };
}
