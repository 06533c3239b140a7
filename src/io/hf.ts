/**
 * Hugging Face model directories: config.json + safetensors (single or sharded) in the Skywork,
 * Mixtral, Llama, Mistral, Qwen3, Qwen3-MoE or OLMoE layout. Loading is io/weights.ts (stacked f32
 * experts for training, or the stored per-expert tensors, memory-mapped, for inference); saving
 * splits experts into the layout's per-expert names (`...block_sparse_moe.experts.<e>.{w1,w3,w2}.weight`,
 * `...mlp.experts.<e>.{gate,up,down}_proj.weight`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { ConfigError, configFromHF, configToHF, layoutRefusal, type ModelConfig } from '../model/config.js';
import type { TensorParallelOps } from '../model/shard.js';
import { expertValues, paramValues, SkyworkMoE } from '../model/skywork-moe.js';
import * as T from '../tensor/index.js';
import { writeFileAtomic, writeFully } from './atomic.js';
import type { StorageDType } from './dtypes.js';
import { type TensorToWrite, storedBytes } from './safetensors.js';
import { expertTensorNames } from './layout.js';
import { TokenizerError } from './tokenizer/errors.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';
import { INDEX_FILE, openCheckpoint, SINGLE_FILE, writeSharded } from './sharded.js';
import { type LoadOptions, type LoadReport, loadParams } from './weights.js';

/** Read and validate `dir/config.json`. */
export function readConfig(dir: string): ModelConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new ConfigError('not found (expected a Hugging Face model directory with config.json)', path);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`not valid JSON: ${(e as Error).message}`, path);
  }
  return configFromHF(raw, path);
}

/**
 * Load a whole model directory (config.json + weights). The default dtype 'f32' gives a trainable
 * model in the heap; { dtype: 'auto' } keeps each weight in its stored dtype and, on the native
 * backend, reads it in place from the memory-mapped files (see io/weights.ts).
 */
export function loadModel(dir: string, backend: Backend = T.currentBackend(), opts: LoadOptions = {}): SkyworkMoE {
  return loadModelWithReport(dir, backend, opts).model;
}

/**
 * loadModel, also saying where the weights went (mapped or heap bytes, by dtype). With `tp`, one
 * tensor-parallel rank's model: only its slices are read (see io/weights.ts).
 */
export function loadModelWithReport(dir: string, backend: Backend = T.currentBackend(), opts: Omit<LoadOptions, 'shard'> & { tp?: TensorParallelOps } = {}): { model: SkyworkMoE; report: LoadReport } {
  const cfg = readConfig(dir);
  const { tp, ...load } = opts;
  const { params, report } = loadParams(dir, cfg, backend, { dtype: 'f32', ...load, shard: tp?.shard });
  try {
    return { model: SkyworkMoE.fromParams(cfg, params, backend, tp), report };
  } catch (e) {
    for (const p of params.values()) p.dispose();
    throw e;
  }
}

export interface SaveOptions {
  /** Storage dtype of the weights (default F32). */
  dtype?: Extract<StorageDType, 'F32' | 'BF16' | 'F16'>;
  /** Largest shard in bytes (default 5 GB, as Hugging Face). */
  maxShardBytes?: number;
  /** Save in another layout than the config's, when it can say the same model (skywork <-> mixtral, llama <-> mistral). */
  layout?: ModelConfig['layout'];
}

const TORCH_DTYPE = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' } as const;

/** The tensors of a model in file order and file names (experts split), produced lazily. */
export function checkpointTensors(model: SkyworkMoE, dtype: StorageDType = 'F32'): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const [name, t] of model.params) {
    const files = expertTensorNames(name, model.config.numExperts);
    if (files.length === 1) out.push({ name, dtype, shape: [...t.shape], data: () => paramValues(t) });
    else files.forEach((file, e) => out.push({ name: file, dtype, shape: t.shape.slice(1), data: () => expertValues(t, e) }));
  }
  return out;
}

/** Write config.json and the weights (sharded when large) into dir. */
export function saveModel(model: SkyworkMoE, dir: string, opts: SaveOptions = {}): { files: string[]; bytes: number } {
  const dtype = opts.dtype ?? 'F32';
  const cfg: ModelConfig = { ...model.config, layout: opts.layout ?? model.config.layout };
  const refusal = layoutRefusal(model.config, cfg.layout);
  if (refusal) throw new ConfigError(`cannot save this ${model.config.layout} model in the ${cfg.layout} layout: ${refusal}`);
  const tensors = checkpointTensors(model, dtype);
  const r = writeSharded(dir, tensors, { maxShardBytes: opts.maxShardBytes, metadata: { format: 'pt' } });
  const hf = { ...configToHF(cfg), torch_dtype: TORCH_DTYPE[dtype] };
  writeJsonAtomic(join(dir, 'config.json'), hf);
  writeJsonAtomic(join(dir, 'generation_config.json'), { bos_token_id: cfg.bosTokenId, eos_token_id: cfg.eosTokenId, pad_token_id: cfg.padTokenId });
  return { files: r.files, bytes: tensors.reduce((s, t) => s + storedBytes(t), 0) };
}

export function writeJsonAtomic(path: string, value: unknown): void {
  const bytes = new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
  writeFileAtomic(path, (fd) => writeFully(fd, bytes));
}

/** What `skymoe inspect DIR` reports about the stored tensors. */
export function describeCheckpoint(dir: string): { files: string[]; tensors: number; bytesByDtype: Record<string, number>; elements: number } {
  const reader = openCheckpoint(dir);
  try {
    const bytesByDtype: Record<string, number> = {};
    let elements = 0;
    for (const n of reader.names()) {
      const i = reader.info(n);
      bytesByDtype[i.dtype] = (bytesByDtype[i.dtype] ?? 0) + i.byteLength;
      elements += i.shape.reduce((a, b) => a * b, 1);
    }
    return { files: reader.indexPath ? [INDEX_FILE, ...reader.shardFiles()] : [SINGLE_FILE], tensors: reader.names().length, bytesByDtype, elements };
  } finally {
    reader.close();
  }
}

/**
 * Refuse a tokenizer whose ids reach past the model's embedding: an id >= vocab_size would read
 * another row (or fail deep in a kernel). A tokenizer smaller than the model's vocabulary (a
 * padded embedding, as Qwen's) is fine.
 */
export function checkTokenizerFitsModel(tok: Tokenizer, cfg: ModelConfig, dir = '.'): void {
  if (tok.vocabSize <= cfg.vocabSize) return;
  const id = tok.vocabSize - 1;
  throw new TokenizerError(`token id ${id} (${JSON.stringify(tok.idToToken(id))}) is outside the model's vocab_size ${cfg.vocabSize} (${join(dir, 'config.json')}): the tokenizer does not belong to this model`, tok.file ?? join(dir, 'tokenizer.json'));
}
