/**
 * `quantize`: a checkpoint directory re-encoded to FP8 in the layout of Skywork-MoE-Base-FP8 and
 * vLLM's "fp8" method (SPEC section 8), or to bf16.
 *
 * FP8: every projection matrix (attention q/k/v/o, experts w1/w2/w3, dense MLPs) becomes
 * F8_E4M3 with an F32 `weight_scale` (real value = stored x scale): one per tensor, the scale of
 * an expert's w1 and w3 (gate_proj and up_proj) shared (the fused gate/up projection vLLM builds from them needs one); or
 * one per row with `perRow` (scale shape [rows, 1]: skymoe reads it, but vLLM's "fp8" method reads
 * only per-tensor scales; its channel-wise FP8 is the compressed-tensors format). Embeddings, the
 * router, norms and lm_head are kept BF16. config.json gains
 * `quantization_config: {quant_method: "fp8", activation_scheme: "dynamic"}`.
 * Tensors are read, converted and written one at a time (a model larger than memory works).
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { stageFileAtomic, type StagedFile, withPath, writeFully } from '../io/atomic.js';
import { readConfig } from '../io/hf.js';
import { CheckpointError, expertTensorNames } from '../io/layout.js';
import { parameterSpecs } from '../model/skywork-moe.js';
import { type TensorToWrite } from '../io/safetensors.js';
import { openCheckpoint, writeSharded } from '../io/sharded.js';
import { bf16Bytes, dequantizeFp8, E4M3_MAX, encodeFp8At, quantizationError, quantizeFp8, type QuantizationError } from './fp8.js';
import { decodeBf16 } from '../io/dtypes.js';

export type QuantizeTarget = 'fp8' | 'bf16';

export interface QuantizeOptions {
  to: QuantizeTarget;
  /** FP8 with one scale per output row instead of per tensor. */
  perRow?: boolean;
  /** Measure each tensor's error (it costs a decode per tensor). */
  report?: boolean;
  maxShardBytes?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface TensorQuantization extends QuantizationError {
  name: string;
  dtype: string;
}

export interface QuantizeResult {
  files: string[];
  bytes: number;
  sourceBytes: number;
  tensors: TensorQuantization[];
}

/** Names quantized to FP8: the 2-D projections; not embeddings, lm_head, the router or norms. */
export function isFp8Target(name: string, shape: readonly number[]): boolean {
  if (shape.length !== 2) return false;
  if (/(^|\.)(embed_tokens|lm_head)\.weight$/.test(name)) return false;
  if (/\.block_sparse_moe\.gate(\.\d)?\.weight$/.test(name) || /\.mlp\.gate\.weight$/.test(name)) return false;
  return /\.weight$/.test(name);
}

/** The partner whose scale an expert's gate (w1, gate_proj) or up (w3, up_proj) projection shares. */
const PARTNER: Record<string, string> = { w1: 'w3', w3: 'w1', gate_proj: 'up_proj', up_proj: 'gate_proj' };
function partnerOf(name: string): string | null {
  const m = /^(.*\.experts\.\d+\.)(w1|w3|gate_proj|up_proj)\.weight$/.exec(name);
  return m ? `${m[1]}${PARTNER[m[2]!]}.weight` : null;
}

function amaxOf(v: Float32Array): number {
  let a = 0;
  for (const x of v) a = Math.max(a, Math.abs(x));
  return a;
}

export function quantizeCheckpoint(src: string, out: string, o: QuantizeOptions): QuantizeResult {
  if (o.to !== 'fp8' && o.to !== 'bf16') throw new CheckpointError(`--to ${String(o.to)}: expected fp8 or bf16`, src);
  const cfgPath = join(src, 'config.json');
  const model = readConfig(src); // validated, errors name config.json and the field
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  if (cfg.quantization_config !== undefined && cfg.quantization_config !== null) throw new CheckpointError(`already quantized (quantization_config ${JSON.stringify(cfg.quantization_config)}): quantize the original checkpoint`, cfgPath);
  const reader = openCheckpoint(src);
  const where = reader.indexPath ?? join(src, 'model.safetensors');
  const tensors: TensorQuantization[] = [];
  try {
    // every tensor the config needs, at its shape, before anything is written
    for (const spec of parameterSpecs(model)) {
      const files = expertTensorNames(spec.name, model.numExperts);
      const shape = files.length === 1 ? spec.shape : spec.shape.slice(1);
      for (const f of files) {
        if (!reader.has(f)) throw new CheckpointError(`missing tensor '${f}' (shape [${shape}]) for this config`, where);
        const got = reader.info(f).shape;
        if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) throw new CheckpointError(`tensor '${f}' has shape [${got}], the config needs [${shape}]`, where);
      }
    }
    const names = reader.names().filter((n) => !/(^|\.)rotary_emb\.inv_freq$/.test(n));
    for (const n of names) {
      const d = reader.info(n).dtype;
      if (!['F32', 'F16', 'BF16'].includes(d)) throw new CheckpointError(`tensor '${n}' is ${d}; quantize reads F32, F16 or BF16 checkpoints`, where);
    }
    /** The tensor's values, refusing NaN and infinities (they would wreck a tensor's scale and write NaN codes). */
    const finite = (name: string): Float32Array => {
      const v = reader.readF32(name);
      const bad = v.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new CheckpointError(`tensor '${name}' has a non-finite value (${v[bad]}) at element ${bad}: not quantized`, where);
      return v;
    };
    const sourceBytes = names.reduce((s, n) => s + reader.info(n).byteLength, 0);
    // Expert w1/w3 share a scale: their absolute maxima come first (one extra read of those tensors).
    const amax = new Map<string, number>();
    if (o.to === 'fp8' && !o.perRow) for (const n of names) if (partnerOf(n)) amax.set(n, amaxOf(finite(n)));
    const record = (name: string, dtype: string, exact: Float32Array, approx: Float32Array) => {
      if (o.report) tensors.push({ name, dtype, ...quantizationError(exact, approx) });
    };
    let done = 0;
    const toWrite: TensorToWrite[] = [];
    for (const name of names) {
      const info = reader.info(name);
      const shape = info.shape;
      const progress = () => o.onProgress?.(++done, names.length);
      if (o.to === 'fp8' && isFp8Target(name, shape)) {
        const [rows, cols] = shape as [number, number];
        // scale chosen once, bytes produced when the writer asks (one tensor in memory at a time)
        let cached: { codes: Uint8Array; scale: number | Float32Array } | null = null;
        const quantize = () => {
          if (cached) return cached;
          const v = finite(name);
          const partner = partnerOf(name);
          let q: { codes: Uint8Array; scale: number | Float32Array };
          if (partner && !o.perRow) {
            const a = Math.max(amax.get(name)!, amax.get(partner) ?? 0);
            const s = a > 0 && Number.isFinite(a) ? a / E4M3_MAX : 1;
            q = { codes: encodeFp8At(v, s), scale: s };
          } else q = quantizeFp8(v, rows, cols, o.perRow);
          record(name, 'F8_E4M3', v, dequantizeFp8(q, rows, cols));
          cached = q;
          progress();
          return q;
        };
        toWrite.push({ name, dtype: 'F8_E4M3', shape, data: () => quantize().codes });
        toWrite.push({
          name: `${name}_scale`,
          dtype: 'F32',
          shape: o.perRow ? [rows, 1] : [],
          data: () => {
            const s = quantize().scale;
            const r = typeof s === 'number' ? Float32Array.of(s) : s;
            cached = null;
            return r;
          },
        });
      } else {
        toWrite.push({
          name,
          dtype: 'BF16',
          shape,
          data: () => {
            const v = finite(name);
            const b = bf16Bytes(v);
            if (o.report) record(name, 'BF16', v, decodeBf16(new Uint16Array(b.buffer, b.byteOffset, b.length / 2)));
            progress();
            return b;
          },
        });
      }
    }
    const hf: Record<string, unknown> = { ...cfg, torch_dtype: 'bfloat16' };
    if (o.to === 'fp8') {
      hf.quantization_config = { quant_method: 'fp8', activation_scheme: 'dynamic' };
      if (hf.model_type === 'skywork') hf.model_type = 'skywork_moe'; // as the released Skywork-MoE-Base-FP8
    }
    const json = new TextEncoder().encode(`${JSON.stringify(hf, null, 2)}\n`);
    // config.json and the tokenizer files are staged (written under temp names) before the weights
    // and renamed into place after them; renames need no space, so a full disk leaves the previous
    // output in `out` (or nothing), not new weights beside an old config, and no file of this run.
    const created = !existsSync(out);
    mkdirSync(out, { recursive: true });
    const staged: StagedFile[] = [];
    let r: ReturnType<typeof writeSharded>;
    try {
      staged.push(stageFileAtomic(join(out, 'config.json'), (fd) => writeFully(fd, json)));
      for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'tokenizer.model']) {
        const from = join(src, f);
        if (!existsSync(from)) continue;
        let bytes: Uint8Array;
        try {
          bytes = readFileSync(from);
        } catch (e) {
          throw withPath(e, from);
        }
        staged.push(stageFileAtomic(join(out, f), (fd) => writeFully(fd, bytes)));
      }
      r = writeSharded(out, toWrite, { maxShardBytes: o.maxShardBytes, metadata: { format: 'pt' } });
    } catch (e) {
      for (const f of staged) f.abort();
      if (created) rmSync(out, { recursive: true, force: true }); // made by this call, holding nothing else
      throw e;
    }
    for (const f of staged) f.commit();
    return { files: r.files, bytes: r.totalSize, sourceBytes, tensors };
  } finally {
    reader.close();
  }
}
