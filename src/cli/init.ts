/** `skymoe init --preset tiny --out DIR`: random weights in the HF layout, with a tokenizer trained on the corpus. */
import os from 'node:os';
import type { BackendName } from '../backend/backend.js';
import { saveModel } from '../io/hf.js';
import { saveTokenizer, trainBpe } from '../io/tokenizer/index.js';
import { countParams, formatCount } from '../model/params.js';
import { preset } from '../model/presets.js';
import { SkyworkMoE } from '../model/skywork-moe.js';
import { loadCorpus } from '../train/corpus.js';
import { fmtBytes, useBackend } from './common.js';

export interface InitOptions {
  preset: string;
  out: string;
  seed: number;
  dtype: 'F32' | 'BF16';
  corpus?: string[];
  backend?: BackendName;
  threads?: number;
}

export async function runInit(o: InitOptions): Promise<void> {
  const cfg = preset(o.preset);
  const counts = countParams(cfg);
  const need = counts.total * 4;
  if (need > Math.min(os.totalmem() * 0.6, 3.5e9)) {
    throw new Error(`preset '${o.preset}' has ${formatCount(counts.total)} parameters (${fmtBytes(need)} in fp32): too large to initialize on this machine; use 'skymoe inspect --preset ${o.preset}' or 'skymoe plan' for it`);
  }
  const be = await useBackend(o);
  const corpus = loadCorpus(o.corpus ?? []);
  process.stderr.write(`training a ${cfg.vocabSize}-token BPE tokenizer on ${corpus.name} (${fmtBytes(corpus.bytes)})...\n`);
  const tok = trainBpe(corpus.documents, { vocabSize: cfg.vocabSize });
  const model = SkyworkMoE.create(cfg, { seed: o.seed, backend: be });
  const r = saveModel(model, o.out, { dtype: o.dtype });
  await saveTokenizer(o.out, tok, { modelMaxLength: cfg.maxPositions });
  console.log(`wrote ${o.out}: ${cfg.layout} model '${o.preset}', ${formatCount(counts.total)} parameters (${formatCount(counts.active)} active), ${o.dtype}, ${fmtBytes(r.bytes)} in ${r.files.length} file(s), tokenizer of ${tok.vocabSize} tokens`);
  model.dispose();
  await be.dispose();
}
