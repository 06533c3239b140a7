/** `skymoe export gguf --model DIR --out FILE.gguf --type f32|f16|bf16|q8_0`: a file llama.cpp and Ollama load (architectures llama, qwen3, qwen3moe, olmoe). */
import { exportGguf, type GgufOutType } from '../export/gguf.js';
import { fmtBytes } from './common.js';

export interface ExportCliOptions {
  model: string;
  out: string;
  type: GgufOutType;
  name?: string;
}

export async function runExport(format: string, o: ExportCliOptions): Promise<void> {
  if (format !== 'gguf') throw new Error(`export: unknown format '${format}' (expected gguf)`);
  const t0 = performance.now();
  const r = await exportGguf(o.model, o.out, {
    type: o.type,
    name: o.name,
    onProgress: (done, total) => process.stderr.write(`\rexport: ${done}/${total} tensors${done === total ? '\n' : ''}`),
  });
  console.log(`${o.model} -> ${o.out}: GGUF v3, ${o.type}, ${r.tensors} tensors, ${fmtBytes(r.bytes)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
