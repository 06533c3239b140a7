/**
 * Names of checkpoint tensors: the Hugging Face per-expert names of the experts that the engine's
 * training form stacks ([E, out, in] per layer), and the error type of checkpoint faults.
 */

export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/**
 * A stacked internal expert name (model/skywork-moe.ts moeParamNames): Skywork and Mixtral's
 * `block_sparse_moe.experts.{w1,w3,w2}`, Qwen3-MoE and OLMoE's `mlp.experts.{gate,up,down}_proj`.
 * It has no `.weight`, so a dense layer's `mlp.gate_proj.weight` never matches.
 */
const STACKED = /^(model\.layers\.\d+\.(?:block_sparse_moe\.experts\.(?:w1|w3|w2)|mlp\.experts\.(?:gate_proj|up_proj|down_proj)))$/;

/**
 * The file names a stacked internal name maps to: one per expert, the expert index before the
 * projection (`...experts.w1` -> `...experts.<e>.w1.weight`, `...experts.gate_proj` -> `...experts.<e>.gate_proj.weight`).
 */
export function expertTensorNames(stackedName: string, numExperts: number): string[] {
  if (!STACKED.test(stackedName)) return [stackedName];
  const cut = stackedName.lastIndexOf('.');
  const experts = stackedName.slice(0, cut), projection = stackedName.slice(cut + 1);
  return Array.from({ length: numExperts }, (_, e) => `${experts}.${e}.${projection}.weight`);
}
