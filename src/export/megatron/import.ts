/**
 * `skymoe import megatron`: the way back. A Hugging Face Mixtral-layout export of the model trained
 * on Megatron-Core (the kit's to_hf.py, or any exporter that writes MixtralForCausalLM weights),
 * plus the kit's skymoe_kit.json, becomes a skymoe model directory again: the weights byte for byte
 * (a padded vocabulary trimmed to vocab_size), config.json in the model's own layout with the
 * settings the Mixtral layout cannot say (gating logit normalization and its lambda) restored from
 * the kit, and the tokenizer.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkTokenizerFitsModel, readConfig, writeJsonAtomic } from '../../io/hf.js';
import { loadTokenizer } from '../../io/tokenizer/index.js';
import { configFromHF, ConfigError, type ModelConfig } from '../../model/config.js';
import { KIT_FILE, MegatronKitError, readKit } from './kit-config.js';
import { checkOutDir, writeDirAtomically } from './out-dir.js';
import { copyTokenizerFiles, copyWeights, hasWeights, TORCH_DTYPE } from './weights.js';

export interface ImportMegatronOptions {
  /** The Hugging Face export of the trained model (Mixtral layout). */
  hf: string;
  /** The kit the model was trained with. */
  kit: string;
  out: string;
  /** A tokenizer directory (default: the export's, else the kit's hf/). */
  tokenizer?: string;
  force?: boolean;
  onProgress?: (line: string) => void;
}

export interface ImportMegatronResult {
  dir: string;
  config: ModelConfig;
  files: string[];
  /** Embedding rows dropped (Megatron's vocabulary padding). */
  trimmedRows: number;
}

/** The fields an export must agree on with the kit's model (the ones that shape the tensors or the routing). */
function checkSameModel(exp: ModelConfig, cfg: ModelConfig, where: string): void {
  const pairs: [string, number, number][] = [
    ['hidden_size', exp.hiddenSize, cfg.hiddenSize],
    ['num_hidden_layers', exp.numLayers, cfg.numLayers],
    ['num_attention_heads', exp.numHeads, cfg.numHeads],
    ['num_key_value_heads', exp.numKvHeads, cfg.numKvHeads],
    ['intermediate_size', exp.intermediateSize, cfg.moeIntermediateSize],
    ['num_local_experts', exp.numExperts, cfg.numExperts],
    ['num_experts_per_tok', exp.topK, cfg.topK],
  ];
  for (const [field, got, want] of pairs) if (got !== want) throw new MegatronKitError(`field '${field}' is ${got}, the kit's model has ${want}: not the model this kit trained`, where);
  if (exp.vocabSize < cfg.vocabSize) throw new MegatronKitError(`field 'vocab_size' is ${exp.vocabSize}, fewer than the kit's model's ${cfg.vocabSize}`, where);
}

/**
 * Write the skymoe model directory. Refused before anything is written: a kit or export that does
 * not read, an export of another model, an --out in use; the directory is built beside --out and
 * renamed into place.
 * @example
 * ```ts
 * await importMegatron({ hf: 'kit/trained-hf', kit: 'kit', out: 'model' }); // then: skymoe generate --model model
 * ```
 */
export async function importMegatron(o: ImportMegatronOptions): Promise<ImportMegatronResult> {
  const say = o.onProgress ?? (() => {});
  const kit = readKit(o.kit);
  const kitPath = join(o.kit, KIT_FILE);
  let cfg: ModelConfig;
  try {
    cfg = configFromHF(kit.model, `${kitPath} (model)`);
  } catch (e) {
    throw new MegatronKitError((e as ConfigError).message, '--kit');
  }
  if (!existsSync(o.hf) || !statSync(o.hf).isDirectory()) throw new MegatronKitError('not found (expected the Hugging Face export of the trained model)', '--hf');
  const exp = readConfig(o.hf);
  const expPath = join(o.hf, 'config.json');
  if (exp.layout !== 'mixtral') throw new MegatronKitError(`a ${exp.layout}-layout model: expected the Mixtral layout (MixtralForCausalLM) that the kit trains and to_hf.py writes`, expPath);
  checkSameModel(exp, cfg, expPath);
  if (!hasWeights(o.hf)) throw new MegatronKitError('no model.safetensors or model.safetensors.index.json', o.hf);
  const tokSrc = [o.tokenizer, o.hf, kit.hf ? join(o.kit, kit.hf.dir) : undefined].find((d): d is string => d !== undefined && (existsSync(join(d, 'tokenizer.json')) || existsSync(join(d, 'tokenizer.model'))));
  if (o.tokenizer !== undefined && tokSrc !== o.tokenizer) throw new MegatronKitError('no tokenizer.json or tokenizer.model there', '--tokenizer');
  if (!tokSrc) throw new MegatronKitError('no tokenizer in the export or the kit: give --tokenizer DIR (the one the Megatron run used)', '--tokenizer');

  const out = resolve(o.out);
  checkOutDir(out, o.force ?? false);
  let copied!: ReturnType<typeof copyWeights>;
  const files = await writeDirAtomically(out, async (tmp) => {
    say(`weights: ${o.hf} -> ${cfg.layout} layout`);
    copied = copyWeights(o.hf, tmp, cfg, { trimVocab: true });
    writeJsonAtomic(join(tmp, 'config.json'), { ...kit.model, torch_dtype: TORCH_DTYPE[copied.dtype] });
    const tokFiles = copyTokenizerFiles(tokSrc, tmp);
    if (!tokFiles.includes('generation_config.json')) writeJsonAtomic(join(tmp, 'generation_config.json'), { bos_token_id: cfg.bosTokenId, eos_token_id: cfg.eosTokenId, pad_token_id: cfg.padTokenId });
    checkTokenizerFitsModel(await loadTokenizer(tmp), cfg, tmp);
    say(`${copied.tensors} tensors (${copied.dtype}), config.json (${cfg.layout}${cfg.logitsNorm ? `, logit normalization lambda ${cfg.gateNormStd}` : ''}), tokenizer from ${tokSrc}`);
  });
  return { dir: out, config: cfg, files, trimmedRows: exp.vocabSize - cfg.vocabSize };
}
