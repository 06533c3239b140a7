/**
 * Write a checkpoint with random weights straight to disk, tensor by tensor (no model in memory):
 * a preset's config, optionally with more layers, experts or width, in the Skywork or Mixtral
 * layout, as F32 or BF16, sharded like Hugging Face (5 GB shards), with a tokenizer trained on the
 * built-in corpus. Big checkpoints (larger than the 4 GiB heap) for loading and decode benchmarks.
 *
 *   node dist/bench/make-checkpoint.js --preset bench --dtype bf16 --out /tmp/bench-bf16
 *   node dist/bench/make-checkpoint.js --preset bench --layers 24 --experts 16 --dtype bf16 --out /tmp/big   # ~5.5 GB
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../src/io/hf.js';
import { configToHF, type ModelConfig, validateConfig } from '../src/model/config.js';
import { countParams } from '../src/model/params.js';
import { preset } from '../src/model/presets.js';
import { parameterSpecs } from '../src/model/skywork-moe.js';
import { expertTensorNames } from '../src/io/layout.js';
import { type TensorToWrite } from '../src/io/safetensors.js';
import { writeSharded } from '../src/io/sharded.js';
import { saveTokenizer, trainBpe } from '../src/io/tokenizer/index.js';
import { defaultCorpus } from '../src/train/corpus.js';
import { bf16Bytes } from '../src/quant/fp8.js';
import { quantizeCheckpoint } from '../src/quant/quantize.js';

export interface MakeCheckpointOptions {
  preset: string;
  out: string;
  dtype: 'f32' | 'bf16';
  layers?: number;
  experts?: number;
  /** Key/value heads (GQA; default the preset's). */
  kvHeads?: number;
  hidden?: number;
  ffn?: number;
  layout?: 'skywork' | 'mixtral';
  /** Gating logit normalization (default: the preset's; Mixtral never). */
  logitsNorm?: boolean;
  seed?: number;
  /** Std of the matrices (default 0.05: logits with resolvable argmax gaps). */
  std?: number;
}

/** xorshift32 normals (Box-Muller): fast and reproducible. */
function normals(n: number, seed: number, std: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u())) * std, a = 2 * Math.PI * u();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

export async function makeCheckpoint(o: MakeCheckpointOptions, log: (m: string) => void = () => {}): Promise<ModelConfig> {
  const base = preset(o.preset);
  const layout = o.layout ?? base.layout;
  const cfg: ModelConfig = {
    ...base,
    layout,
    numLayers: o.layers ?? base.numLayers,
    numExperts: o.experts ?? base.numExperts,
    numKvHeads: o.kvHeads ?? base.numKvHeads,
    hiddenSize: o.hidden ?? base.hiddenSize,
    intermediateSize: o.ffn ?? base.intermediateSize,
    logitsNorm: layout === 'mixtral' ? false : (o.logitsNorm ?? base.logitsNorm),
  };
  cfg.headDim = cfg.hiddenSize / cfg.numHeads;
  validateConfig(cfg);
  mkdirSync(o.out, { recursive: true });
  const tok = trainBpe(defaultCorpus().documents, { vocabSize: cfg.vocabSize });
  if (tok.vocabSize > cfg.vocabSize) throw new Error(`tokenizer has ${tok.vocabSize} tokens for vocab ${cfg.vocabSize}`);
  await saveTokenizer(o.out, tok, { modelMaxLength: cfg.maxPositions });
  const dtype = o.dtype === 'bf16' ? 'BF16' : 'F32';
  const std = o.std ?? 0.05;
  let seed = o.seed ?? 1;
  const tensors: TensorToWrite[] = [];
  for (const spec of parameterSpecs(cfg)) {
    const files = expertTensorNames(spec.name, cfg.numExperts);
    const shape = files.length === 1 ? spec.shape : spec.shape.slice(1);
    const n = shape.reduce((a, b) => a * b, 1);
    for (const name of files) {
      const s = seed++;
      const data = () => {
        const v = spec.kind === 'norm' ? new Float32Array(n).fill(1) : normals(n, s, /\.gate\.weight$/.test(name) ? 1 : std);
        return dtype === 'BF16' ? bf16Bytes(v) : v;
      };
      tensors.push({ name, dtype, shape, data });
    }
  }
  const t0 = performance.now();
  let lastPath = '';
  writeSharded(o.out, tensors, {
    metadata: { format: 'pt' },
    onProgress: (path, written, total) => {
      if (path !== lastPath || written === total) log(`  ${path}: ${(written / 1e9).toFixed(2)} of ${(total / 1e9).toFixed(2)} GB`);
      lastPath = path;
    },
  });
  writeJsonAtomic(join(o.out, 'config.json'), { ...configToHF(cfg), torch_dtype: o.dtype === 'bf16' ? 'bfloat16' : 'float32' });
  const c = countParams(cfg);
  log(`wrote ${o.out}: ${(c.total / 1e9).toFixed(2)}B parameters (${(c.active / 1e9).toFixed(2)}B active), ${o.dtype}, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return cfg;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\/dist\//, 'dist/'))) {
  const out = arg('out');
  if (!out) {
    console.error('usage: node dist/bench/make-checkpoint.js --out DIR [--preset bench] [--dtype bf16|f32] [--layers N] [--experts E] [--hidden H] [--ffn F] [--layout skywork|mixtral]');
    process.exit(2);
  }
  if (existsSync(join(out, 'config.json'))) console.error(`note: overwriting ${out}`);
  const num = (n: string) => (arg(n) === undefined ? undefined : Number(arg(n)));
  await makeCheckpoint(
    { preset: arg('preset') ?? 'bench', out, dtype: (arg('dtype') as 'f32' | 'bf16') ?? 'bf16', layers: num('layers'), experts: num('experts'), hidden: num('hidden'), ffn: num('ffn'), layout: arg('layout') as 'skywork' | 'mixtral' | undefined },
    (m) => console.error(m),
  );
}

/**
 * The benchmark model in DIR/f32 (written once with random weights) and its bf16/FP8 conversions
 * in DIR/<dtype> (quantize), each made only when missing: shared by bench:decode and bench:serve.
 */
export async function ensureBenchModels(dir: string, dtypes: readonly string[], log: (m: string) => void): Promise<void> {
  const f32 = join(dir, 'f32');
  if (!existsSync(join(f32, 'config.json'))) {
    log(`writing the bench model to ${f32} (once)`);
    await makeCheckpoint({ preset: 'bench', layout: 'mixtral', dtype: 'f32', out: f32, seed: 7 }, log);
  }
  for (const to of dtypes) {
    if (to !== 'f32' && !existsSync(join(dir, to, 'config.json'))) {
      log(`quantize --to ${to}`);
      quantizeCheckpoint(f32, join(dir, to), { to: to as 'bf16' | 'fp8' });
    }
  }
}
