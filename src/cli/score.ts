/** `skymoe score --model DIR --text "..." [--logits FILE]`: per-token log-probs and perplexity. */
import type { BackendName } from '../backend/backend.js';
import { writeSafetensors } from '../io/safetensors.js';
import type { LoadDType } from '../io/weights.js';
import { checkTokenizerFitsModel, readConfig } from '../io/hf.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import { logSoftmax } from '../infer/sample.js';
import * as T from '../tensor/index.js';
import { loadForInference, useBackend } from './common.js';

export async function runScore(o: { model: string; text: string; logits?: string; dtype?: LoadDType; backend?: BackendName; threads?: number }): Promise<void> {
  const be = await useBackend(o);
  const tok = await loadTokenizer(o.model);
  checkTokenizerFitsModel(tok, readConfig(o.model), o.model);
  const model = loadForInference(o.model, be, o.dtype);
  const V = model.config.vocabSize;
  const ids = tok.encodePrompt(o.text);
  if (ids.length > model.config.maxPositions) throw new Error(`score: ${ids.length} tokens exceed the model's ${model.config.maxPositions} positions`);
  const logits = T.noGrad(() => T.tidy(() => model.forward(T.tensor(Int32Array.from(ids), [1, ids.length], 'i32', be)).logits.toFloat32()));
  console.log('pos  token               logprob');
  let total = 0;
  for (let t = 1; t < ids.length; t++) {
    const lp = logSoftmax(logits.subarray((t - 1) * V, t * V))[ids[t]!]!;
    total += lp;
    console.log(`${String(t).padStart(3)}  ${JSON.stringify(tok.decode([ids[t]!])).padEnd(18).slice(0, 18)}  ${lp.toFixed(4)}`);
  }
  const n = ids.length - 1;
  console.log(`tokens ${n}  mean logprob ${(total / Math.max(1, n)).toFixed(4)}  perplexity ${Math.exp(-total / Math.max(1, n)).toFixed(3)}`);
  if (o.logits) {
    writeSafetensors(o.logits, [
      { name: 'logits', dtype: 'F32', shape: [ids.length, V], data: logits },
      { name: 'input_ids', dtype: 'I64', shape: [ids.length], data: BigInt64Array.from(ids, (x) => BigInt(x)) },
    ]);
    console.log(`wrote ${o.logits} (logits [${ids.length}, ${V}] F32, input_ids [${ids.length}] I64)`);
  }
  model.dispose();
  await be.dispose();
}
