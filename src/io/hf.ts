/**
 * Hugging Face model directories: config.json + safetensors (single or sharded) in the Skywork,
 * Mixtral or Llama layout. Experts are stacked on load ([E, out, in] per layer) and split into
 * the per-expert names `...block_sparse_moe.experts.<e>.{w1,w3,w2}.weight` on save.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { ConfigError, configFromHF, configToHF, type ModelConfig } from '../model/config.js';
import { parameterSpecs, SkyworkMoE } from '../model/skywork-moe.js';
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import { writeFileAtomic, writeFully } from './atomic.js';
import type { StorageDType } from './dtypes.js';
import { type TensorToWrite, storedBytes } from './safetensors.js';
import { INDEX_FILE, openCheckpoint, type ShardedReader, SINGLE_FILE, writeSharded } from './sharded.js';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** Tensors of a checkpoint that carry no weights and are ignored on load. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

const STACKED = /^(model\.layers\.\d+\.block_sparse_moe\.experts)\.(w1|w3|w2)$/;

/** The file names a stacked internal name maps to: one per expert. */
export function expertTensorNames(stackedName: string, numExperts: number): string[] {
  const m = STACKED.exec(stackedName);
  if (!m) return [stackedName];
  return Array.from({ length: numExperts }, (_, e) => `${m[1]}.${e}.${m[2]}.weight`);
}

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

function checkpointPath(dir: string, reader: ShardedReader): string {
  return reader.indexPath ?? join(dir, SINGLE_FILE);
}

/** Load tensors named as the model expects (experts stacked) onto a backend. */
export function loadWeights(dir: string, cfg: ModelConfig, backend: Backend): Map<string, Tensor> {
  const reader = openCheckpoint(dir);
  const where = checkpointPath(dir, reader);
  const out = new Map<string, Tensor>();
  try {
    const used = new Set<string>();
    for (const spec of parameterSpecs(cfg)) {
      const files = expertTensorNames(spec.name, cfg.numExperts);
      const t = T.keep(T.empty(spec.shape, 'f32', backend));
      out.set(spec.name, t);
      const perFile = files.length === 1 ? spec.shape : spec.shape.slice(1);
      files.forEach((name, e) => {
        if (!reader.has(name)) throw new CheckpointError(`missing tensor '${name}' (shape [${perFile}])`, where);
        const info = reader.info(name);
        if (info.shape.length !== perFile.length || info.shape.some((d, i) => d !== perFile[i])) {
          throw new CheckpointError(`tensor '${name}' has shape [${info.shape}], the config needs [${perFile}]`, where);
        }
        const data = reader.readF32(name);
        if (files.length === 1) t.assign(data);
        else {
          const v = t.rowsView(e, e + 1);
          v.assign(data);
          v.dispose();
        }
        used.add(name);
      });
    }
    // Some exports of tied models still carry lm_head.weight (a copy of the embedding).
    const extra = reader.names().filter((n) => !used.has(n) && !IGNORED.test(n) && !(cfg.tieWordEmbeddings && n === 'lm_head.weight'));
    if (extra.length) throw new CheckpointError(`unexpected tensors for a ${cfg.layout} model with this config: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''}`, where);
    return out;
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  } finally {
    reader.close();
  }
}

/** Load a whole model directory (config.json + weights). */
export function loadModel(dir: string, backend: Backend = T.currentBackend()): SkyworkMoE {
  const cfg = readConfig(dir);
  return SkyworkMoE.fromParams(cfg, loadWeights(dir, cfg, backend), backend);
}

export interface SaveOptions {
  /** Storage dtype of the weights (default F32). */
  dtype?: Extract<StorageDType, 'F32' | 'BF16' | 'F16'>;
  /** Largest shard in bytes (default 5 GB, as Hugging Face). */
  maxShardBytes?: number;
  /** Save in another layout than the config's (skywork <-> mixtral; both MoE). */
  layout?: ModelConfig['layout'];
}

const TORCH_DTYPE = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' } as const;

/** The tensors of a model in file order and file names (experts split), produced lazily. */
export function checkpointTensors(model: SkyworkMoE, dtype: StorageDType = 'F32'): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const [name, t] of model.params) {
    const files = expertTensorNames(name, model.config.numExperts);
    if (files.length === 1) out.push({ name, dtype, shape: [...t.shape], data: () => t.toFloat32() });
    else
      files.forEach((file, e) =>
        out.push({
          name: file,
          dtype,
          shape: t.shape.slice(1),
          data: () => {
            const v = t.rowsView(e, e + 1);
            const d = v.toFloat32();
            v.dispose();
            return d;
          },
        }),
      );
  }
  return out;
}

/** Write config.json and the weights (sharded when large) into dir. */
export function saveModel(model: SkyworkMoE, dir: string, opts: SaveOptions = {}): { files: string[]; bytes: number } {
  const dtype = opts.dtype ?? 'F32';
  const cfg: ModelConfig = { ...model.config, layout: opts.layout ?? model.config.layout };
  if ((cfg.layout === 'llama') !== (model.config.layout === 'llama')) {
    throw new ConfigError(`cannot save a ${model.config.layout} model in the ${cfg.layout} layout (MoE and dense layouts differ)`);
  }
  if (cfg.layout === 'mixtral' && (cfg.logitsNorm || cfg.twoLayerGate || cfg.moeInterval !== 1)) {
    throw new ConfigError('cannot save in the Mixtral layout: its config.json has no fields for gating logit normalization, a 2-layer gate or moe_expert_interval, so the model would reload as a different one (use the skywork layout)');
  }
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
