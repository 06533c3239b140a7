/**
 * The kit's weights move between layouts by name: Skywork and Mixtral name every tensor alike
 * (`model.layers.L.block_sparse_moe.gate.weight`, `...experts.E.{w1,w3,w2}.weight`, the attention,
 * norms, embeddings and lm_head), so a tensor is copied byte for byte in its stored dtype and the
 * difference between the layouts lives in config.json and skymoe_kit.json alone. Tokenizer files
 * travel beside the weights.
 */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { StorageDType } from '../../io/dtypes.js';
import { DTYPE_BYTES } from '../../io/dtypes.js';
import { expertTensorNames } from '../../io/layout.js';
import type { TensorToWrite } from '../../io/safetensors.js';
import { INDEX_FILE, openCheckpoint, SINGLE_FILE, writeSharded } from '../../io/sharded.js';
import { IGNORED_TENSORS } from '../../io/weights.js';
import type { ModelConfig } from '../../model/config.js';
import { parameterSpecs } from '../../model/skywork-moe.js';
import { MegatronKitError } from './kit-config.js';

/** Files of a Hugging Face tokenizer (and generation defaults) copied beside the weights when present. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'added_tokens.json', 'vocab.json', 'merges.txt', 'chat_template.jinja', 'generation_config.json'];

const COPYABLE: readonly StorageDType[] = ['F32', 'BF16', 'F16'];

export interface CopyResult {
  files: string[];
  bytes: number;
  tensors: number;
  /** The dtype of the embedding (config.json's torch_dtype). */
  dtype: StorageDType;
}

/**
 * Copy the weights of `cfg` from the checkpoint in `src` to `dst` (sharded like Hugging Face),
 * each tensor's stored bytes unchanged. With `trimVocab`, an embedding or lm_head with more rows
 * than vocab_size (Megatron pads the vocabulary) keeps its first vocab_size rows. Refused: a
 * missing tensor, a wrong shape, a dtype other than F32/BF16/F16 (an FP8 checkpoint), a tensor the
 * config has no place for.
 */
export function copyWeights(src: string, dst: string, cfg: ModelConfig, o: { trimVocab?: boolean; onProgress?: (done: number, total: number) => void } = {}): CopyResult {
  const reader = openCheckpoint(src);
  const where = reader.indexPath ?? join(src, SINGLE_FILE);
  try {
    const tensors: TensorToWrite[] = [];
    const used = new Set<string>();
    for (const spec of parameterSpecs(cfg)) {
      const files = expertTensorNames(spec.name, cfg.numExperts);
      const shape = files.length === 1 ? spec.shape : spec.shape.slice(1);
      for (const name of files) {
        if (!reader.has(name)) throw new MegatronKitError(`missing tensor '${name}' (shape [${shape}])`, where);
        used.add(name);
        const info = reader.info(name);
        if (!COPYABLE.includes(info.dtype)) throw new MegatronKitError(`tensor '${name}' is ${info.dtype}: Megatron trains from F32, BF16 or F16 weights (export from the model before quantization)`, where);
        const vocabRows = (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') && o.trimVocab && info.shape.length === 2 && info.shape[0]! > shape[0]! && info.shape[1] === shape[1];
        if (!vocabRows && (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))) throw new MegatronKitError(`tensor '${name}' has shape [${info.shape}], the config needs [${shape}]`, where);
        const bytes = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[info.dtype];
        // a padded vocabulary's first rows are the real ones: a row-major prefix of the stored bytes
        tensors.push({ name, dtype: info.dtype, shape: [...shape], data: () => (vocabRows ? reader.readRaw(name).slice(0, bytes) : reader.readRaw(name)) });
      }
    }
    const extra = reader.names().filter((n) => !used.has(n) && !IGNORED_TENSORS.test(n));
    if (extra.length) throw new MegatronKitError(`tensors this ${cfg.layout} config has no place for: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''}`, where);
    let done = 0;
    const total = tensors.length;
    const counted = tensors.map((t) => ({
      ...t,
      data: () => {
        const d = (t.data as () => Uint8Array)();
        o.onProgress?.(++done, total);
        return d;
      },
    }));
    const r = writeSharded(dst, counted, { metadata: { format: 'pt' } });
    const embed = tensors.find((t) => t.name === 'model.embed_tokens.weight');
    return { files: r.files, bytes: r.totalSize, tensors: total, dtype: embed?.dtype ?? 'F32' };
  } finally {
    reader.close();
  }
}

/** Copy the tokenizer files present in `src` to `dst`; the names copied. */
export function copyTokenizerFiles(src: string, dst: string): string[] {
  const copied: string[] = [];
  for (const f of TOKENIZER_FILES) {
    if (!existsSync(join(src, f))) continue;
    copyFileSync(join(src, f), join(dst, f));
    copied.push(f);
  }
  return copied;
}

/** Whether `dir` holds weights skymoe can open (a single file or a sharded index). */
export function hasWeights(dir: string): boolean {
  return existsSync(join(dir, SINGLE_FILE)) || existsSync(join(dir, INDEX_FILE));
}

export const TORCH_DTYPE: Record<string, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };
