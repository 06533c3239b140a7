/**
 * `skymoe export gguf --model DIR --out FILE.gguf --type f32|f16|bf16|q8_0`: a file llama.cpp and Ollama load (architectures llama, qwen3, qwen3moe, olmoe).
 * `skymoe export megatron`: the Megatron-Core training kit (export-megatron.ts).
 */
import { exportGguf, type GgufOutType } from '../export/gguf.js';
import { fmtBytes } from './common.js';
import { type ExportMegatronCliOptions, runExportMegatron } from './export-megatron.js';

export interface ExportCliOptions {
  /** Required by gguf; export megatron takes it or --preset. */
  model?: string;
  out: string;
  type: GgufOutType;
  name?: string;
}

export async function runExport(format: string, o: ExportCliOptions & ExportMegatronCliOptions): Promise<void> {
  if (format === 'megatron') return runExportMegatron(o);
  if (format !== 'gguf') throw new Error(`export: unknown format '${format}' (expected gguf or megatron)`);
  for (const [flag, v] of [['--preset', o.preset], ['--gpus', o.gpus], ['--gpu', o.gpu], ['--layout', o.layout], ['--force', o.force]] as const) {
    if (v !== undefined) throw new Error(`export gguf: ${flag} is an option of export megatron`);
  }
  if (o.model === undefined) throw new Error('export gguf: --model DIR is required');
  const t0 = performance.now();
  const r = await exportGguf(o.model, o.out, {
    type: o.type,
    name: o.name,
    onProgress: (done, total) => process.stderr.write(`\rexport: ${done}/${total} tensors${done === total ? '\n' : ''}`),
  });
  console.log(`${o.model} -> ${o.out}: GGUF v3, ${o.type}, ${r.tensors} tensors, ${fmtBytes(r.bytes)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
