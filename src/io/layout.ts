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

const STACKED = /^(model\.layers\.\d+\.block_sparse_moe\.experts)\.(w1|w3|w2)$/;

/** The file names a stacked internal name maps to: one per expert. */
export function expertTensorNames(stackedName: string, numExperts: number): string[] {
  const m = STACKED.exec(stackedName);
  if (!m) return [stackedName];
  return Array.from({ length: numExperts }, (_, e) => `${m[1]}.${e}.${m[2]}.weight`);
}
