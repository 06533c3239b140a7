/**
 * Pipeline parallelism on the runtime side (Megatron-LM's, Narayanan et al. 2021): the model's
 * decoder layers cut into stages, one per rank of a pipeline, the first stage also holding the
 * embedding and the last the final norm, lm_head and loss. Activations go forward and their
 * gradients back by point-to-point transfers; the trainer runs the 1F1B schedule (train/trainer.ts).
 *
 * This file holds what the trainer needs besides the schedule: the stage's place in the mesh, the
 * layer split in the planner's notation, and the gathering of every stage's parameters into one
 * whole model for a checkpoint (always saved whole, in the Hugging Face layout).
 */
import type { ModelConfig } from '../../model/config.js';
import { parameterSpecs, type PipelineStage, pipelineStages, stageHolds } from '../../model/skywork-moe.js';
import type { Communicator, Group } from './comm.js';
import type { WholeTensor } from './tensor-parallel.js';

/** Megatron's recomputation modes: none, selective (the core attention), full (the stage's layers, from its input). */
export type StageRecompute = 'none' | 'selective' | 'full';

export interface PipelineParallel {
  stage: PipelineStage;
  /** Layers per stage (the split) and each stage's recomputation, for run.json and the log. */
  stages: number[];
  recomputeAll: StageRecompute[];
  recompute: StageRecompute;
  /** This rank's pipeline: the ranks of the same data- and tensor-parallel index, in stage order. */
  group: Group;
  comm: Communicator;
  /** World ranks of the neighbouring stages (absent at the ends). */
  prev?: number;
  next?: number;
  /** With tied embeddings: the first and last stage of this pipeline (their embedding gradients are summed). */
  embedding?: Group;
  /** World rank of each stage's writer-side rank (data- and tensor-parallel index 0), for checkpoints. */
  leaders: number[];
  /** Name of the pipeline's transfers in the communication statistics. */
  label: string;
}

/** Refuse a split that is not one of the model's layers, naming the field. */
export function checkStages(c: ModelConfig, stages: readonly number[], recompute: readonly StageRecompute[]): PipelineStage[] {
  if (stages.length < 1) throw new Error('--layout: stages needs one layer count per pipeline stage');
  if (stages.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`--layout: stages must be non-negative integers, got ${stages.join('+')}`);
  const sum = stages.reduce((a, b) => a + b, 0);
  if (sum !== c.numLayers) throw new Error(`--layout: stages ${stages.join('+')} sum to ${sum}, but the model has ${c.numLayers} layers`);
  if (recompute.length !== stages.length) throw new Error(`--layout: recompute has ${recompute.length} entries for ${stages.length} stages`);
  return pipelineStages(stages);
}

/**
 * Every stage's whole tensors (already gathered over tensor parallelism) sent to the first stage's
 * leader, which returns the model's tensors in checkpoint order; the other leaders send theirs and
 * get null. Each tensor goes as its values, then its moments, then its AdamW step count; the
 * receiver knows every shape from the config and the split. A tied embedding travels once.
 */
export function gatherStages(c: ModelConfig, mine: readonly WholeTensor[], steps: ReadonlyMap<string, number>, pp: PipelineParallel, extras: number): WholeTensor[] | null {
  const me = pp.stage.index;
  const all = pipelineStages(pp.stages);
  const sent = (s: PipelineStage, name: string) => stageHolds(c, s, name) && !(s.index > 0 && name === 'model.embed_tokens.weight');
  if (me > 0) {
    for (const t of mine) {
      if (!sent(pp.stage, t.name)) continue;
      for (const v of t.values) pp.comm.send(pp.leaders[0]!, v, `${pp.label}-checkpoint`);
      pp.comm.send(pp.leaders[0]!, Float32Array.of(steps.get(t.name) ?? 0), `${pp.label}-checkpoint`);
    }
    return null;
  }
  const have = new Map(mine.map((t) => [t.name, t]));
  const byStage = new Map<number, WholeTensor[]>();
  for (const s of all.slice(1)) {
    const got: WholeTensor[] = [];
    for (const spec of parameterSpecs(c)) {
      if (!sent(s, spec.name)) continue;
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const values = Array.from({ length: 1 + extras }, () => {
        const v = new Float32Array(n);
        pp.comm.recv(pp.leaders[s.index]!, v);
        return v;
      });
      const step = new Float32Array(1);
      pp.comm.recv(pp.leaders[s.index]!, step);
      got.push({ name: spec.name, shape: [...spec.shape], values, step: step[0]! });
    }
    byStage.set(s.index, got);
  }
  for (const ts of byStage.values()) for (const t of ts) have.set(t.name, t);
  return parameterSpecs(c).map((spec) => {
    const t = have.get(spec.name);
    if (!t) throw new Error(`pipeline checkpoint: no stage sent '${spec.name}'`);
    return t;
  });
}
