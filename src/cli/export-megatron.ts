/**
 * `skymoe export megatron --model DIR | --preset NAME --gpus N --gpu TYPE [--layout SPEC] --out KIT`:
 * plan the layout (as `skymoe plan`), then write the Megatron-Core training kit (src/export/megatron/).
 */
import { exportMegatronKit } from '../export/megatron/kit.js';
import { MegatronKitError } from '../export/megatron/kit-config.js';
import { kitRefusal, resolveSource } from '../export/megatron/source.js';
import { cluster, PlanError } from '../parallel/planner/gpus.js';
import { defaultSetup, type TrainingSetup } from '../parallel/planner/setup.js';
import type { ModelConfig } from '../model/config.js';
import { trainingPlan } from './plan.js';

export interface ExportMegatronCliOptions {
  model?: string;
  preset?: string;
  out: string;
  gpus?: number;
  gpu?: string;
  gpusPerNode?: number;
  layout?: string;
  seq?: number;
  globalBatchTokens?: number;
  microBatch?: number;
  precision?: string;
  force?: boolean;
}

/** The training setup of the kit: `skymoe plan`'s defaults, the sequence no longer than the model's positions. */
function setupFor(cfg: ModelConfig, o: ExportMegatronCliOptions): TrainingSetup {
  const seq = o.seq ?? Math.min(4096, cfg.maxPositions);
  if (seq > cfg.maxPositions) throw new PlanError(`${seq} tokens is longer than the model's max_position_embeddings ${cfg.maxPositions}`, '--seq');
  const tokens = o.globalBatchTokens ?? 2048 * seq;
  if (tokens < seq || tokens % seq !== 0) throw new PlanError(`expected a whole number of ${seq}-token sequences, got ${tokens} tokens`, '--global-batch-tokens');
  if (o.precision !== undefined && o.precision !== 'bf16' && o.precision !== 'fp8') throw new PlanError(`expected bf16 or fp8, got '${o.precision}'`, '--precision');
  return defaultSetup({ seq, globalBatch: tokens / seq, precision: (o.precision ?? 'bf16') as 'bf16' | 'fp8' });
}

export async function runExportMegatron(o: ExportMegatronCliOptions): Promise<void> {
  const t0 = performance.now();
  const source = resolveSource({ model: o.model, preset: o.preset });
  const refusal = kitRefusal(source.cfg, source.train);
  if (refusal) throw new MegatronKitError(`cannot be trained through the Megatron kit: ${refusal}`, source.kind === 'preset' ? `--preset ${source.name}` : source.name);
  if (o.gpus === undefined) throw new PlanError('how many GPUs will train it? (e.g. --gpus 1536)', '--gpus');
  if (o.gpu === undefined) throw new PlanError('which GPU? (e.g. --gpu a800-80g; skymoe plan --help lists them)', '--gpu');
  const c = cluster(o.gpu, o.gpus, { gpusPerNode: o.gpusPerNode });
  const s = setupFor(source.cfg, o);
  const name = source.kind === 'preset' ? source.name : source.name.replace(/\/+$/, '');
  process.stderr.write(`export megatron: planning ${name} on ${c.gpus} x ${c.gpu.name}${o.layout ? ` in ${o.layout}` : ''}\n`);
  const plan = trainingPlan(source.cfg, name, c, s, { layout: o.layout, microBatch: o.microBatch });
  process.stderr.write(`export megatron: layout ${plan.chosen.layoutText} (${plan.chosen.bound}-bound)\n`);
  const r = await exportMegatronKit({
    source,
    plan: { cluster: c, setup: s, evaluation: plan.chosen, layoutText: plan.chosen.layoutText },
    out: o.out,
    force: o.force,
    onProgress: (line) => process.stderr.write(`export megatron: ${line}\n`),
  });
  const f = r.kit.predicted;
  console.log(`${r.dir}: Megatron-Core kit for ${source.kind === 'preset' ? `the ${name} preset (from scratch)` : name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  console.log(`  layout    ${r.kit.parallel.layout} on ${c.gpus} x ${c.gpu.name}`);
  console.log(`  predicted ${(f.peak_memory_bytes / 1e9).toFixed(1)} GB per GPU, ${f.tokens_per_gpu_second.toFixed(0)} tokens/s per GPU, MFU ${(100 * f.mfu).toFixed(1)}%`);
  console.log(`  files     ${r.files.join(', ')}`);
  console.log(`  next      ${r.kit.hf ? 'convert.sh, then ' : ''}pretrain.sh (README.md: the steps, and what needs the cluster)`);
}
