/** `skymoe import megatron --hf DIR --kit KIT --out MODEL`: a model trained with the Megatron kit becomes a skymoe model directory again. */
import { importMegatron } from '../export/megatron/import.js';

export interface ImportCliOptions {
  hf: string;
  kit: string;
  out: string;
  tokenizer?: string;
  force?: boolean;
}

export async function runImport(format: string, o: ImportCliOptions): Promise<void> {
  if (format !== 'megatron') throw new Error(`import: unknown format '${format}' (expected megatron)`);
  const t0 = performance.now();
  const r = await importMegatron({ ...o, onProgress: (line) => process.stderr.write(`import megatron: ${line}\n`) });
  const c = r.config;
  console.log(`${o.hf} + ${o.kit} -> ${r.dir}: ${c.layout} model, ${c.numExperts} experts top-${c.topK}${c.logitsNorm ? `, logit normalization (lambda ${c.gateNormStd}) restored` : ''}${r.trimmedRows > 0 ? `, ${r.trimmedRows} padded vocabulary rows dropped` : ''} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  console.log(`  files  ${r.files.join(', ')}`);
  console.log(`  next   skymoe generate --model ${o.out} --prompt "..."  |  skymoe serve --model ${o.out}`);
}
