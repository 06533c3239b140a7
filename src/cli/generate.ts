/** `skymoe generate --model DIR --prompt "..."`: stream tokens as they come. */
import type { BackendName } from '../backend/backend.js';
import { generateTokens } from '../infer/generate.js';
import { checkTokenizerFitsModel, readConfig } from '../io/hf.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import type { LoadDType } from '../io/weights.js';
import { loadForInference, useBackend } from './common.js';

export interface GenerateCliOptions {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP?: number;
  topK?: number;
  seed: number;
  dtype?: LoadDType;
  backend?: BackendName;
  threads?: number;
}

export async function runGenerate(o: GenerateCliOptions): Promise<void> {
  const be = await useBackend(o);
  const tok = await loadTokenizer(o.model);
  checkTokenizerFitsModel(tok, readConfig(o.model), o.model);
  const model = loadForInference(o.model, be, o.dtype);
  const prompt = tok.encodePrompt(o.prompt);
  const stream = tok.decodeStream();
  process.stdout.write(o.prompt);
  const t0 = performance.now();
  let n = 0;
  const it = generateTokens(model, prompt, { maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed });
  let r = it.next();
  while (!r.done) {
    process.stdout.write(stream.push(r.value.id));
    n++;
    r = it.next();
  }
  process.stdout.write(stream.end() + '\n');
  const s = (performance.now() - t0) / 1000;
  process.stderr.write(`[${n} tokens in ${s.toFixed(2)} s, ${(n / s).toFixed(1)} tokens/s, stopped by ${r.value.reason}]\n`);
  model.dispose();
  await be.dispose();
}
