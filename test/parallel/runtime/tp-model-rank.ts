/** A tensor-parallel rank of the model: forward, loss (cross-entropy + aux), backward; returns what the test compares. */
import { copyToGroup, reduceFromGroup } from '../../../src/parallel/runtime/autograd-comm.js';
import type { RankContext } from '../../../src/parallel/runtime/ranks.js';
import type { ModelConfig } from '../../../src/model/config.js';
import { SkyworkMoE } from '../../../src/model/skywork-moe.js';
import * as T from '../../../src/tensor/index.js';

export interface TpModelCase {
  config: ModelConfig;
  experts: 'etp' | 'edp';
  ids: number[];
  targets: number[];
  batch: number;
  seq: number;
}

export interface TpModelResult {
  loss: number;
  logits: Float32Array;
  grads: Record<string, Float32Array>;
}

/** Forward + backward of the model (one rank, or this rank's slice), the loss the trainer uses. */
export function lossAndGrads(model: SkyworkMoE, c: TpModelCase): TpModelResult {
  const V = model.config.vocabSize;
  const r = T.tidy(() => {
    const out = model.forward(T.tensor(Int32Array.from(c.ids), [c.batch, c.seq], 'i32'), { moe: { capacityFactor: 1.0, dropPolicy: 'probability', auxLoss: 'skywork', zLoss: false } });
    let loss = T.crossEntropy(T.reshape(out.logits, [c.batch * c.seq, V]), T.tensor(Int32Array.from(c.targets), [c.batch * c.seq], 'i32'));
    for (const l of out.moe) if (l.aux) loss = T.add(loss, T.scale(l.aux, 0.01));
    T.backward(loss);
    return { loss: loss.item(), logits: out.logits.toFloat32() };
  });
  const grads: Record<string, Float32Array> = {};
  for (const p of model.parameters()) grads[p.name!] = p.grad!.toFloat32();
  return { ...r, grads };
}

export function rankMain(ctx: RankContext<TpModelCase>): TpModelResult {
  const g = ctx.comm.group('tp', Array.from({ length: ctx.size }, (_, i) => i));
  const model = SkyworkMoE.create(ctx.data.config, {
    seed: 11,
    backend: ctx.backend,
    tp: { shard: { size: ctx.size, index: ctx.rank, experts: ctx.data.experts }, copy: (x) => copyToGroup(x, g), reduce: (x) => reduceFromGroup(x, g) },
  });
  return lossAndGrads(model, ctx.data);
}
