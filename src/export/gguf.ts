/**
 * Export a checkpoint to GGUF for llama.cpp / Ollama (SPEC section 9). Skywork, Mixtral, Llama and
 * Mistral checkpoints use architecture `llama` (Mixtral-style MoE uses it too); Qwen3, Qwen3-MoE and
 * OLMoE use llama.cpp's `qwen3`, `qwen3moe` and `olmoe`, with their q/k norms as
 * `blk.N.attn_q_norm` / `attn_k_norm` (per head for Qwen3, over the projection for OLMoE). MoE
 * layers have the router `blk.N.ffn_gate_inp` (F32) and the experts stacked into `ffn_gate_exps` /
 * `ffn_up_exps` / `ffn_down_exps` (gate, up, down projections); the tokenizer goes as llama.cpp's
 * byte-level BPE ("gpt2" with the gpt-2, llama-bpe or qwen2 pre-tokenizer) or SentencePiece-style
 * BPE ("llama", scores from the merge order), see gguf-vocab.ts.
 * For the `llama` architecture, q_proj and k_proj rows are permuted from the Hugging Face
 * rotate-half order to llama.cpp's interleaved RoPE pairs, as llama.cpp's own HF converter does;
 * `qwen3`, `qwen3moe` and `olmoe` use llama.cpp's NeoX RoPE, which is rotate-half: no permutation.
 * Norms and the router stay F32; the other matrices are F32, F16, BF16 or Q8_0.
 *
 * Refused, never exported as a different model: gating logit normalization (llama.cpp has no
 * equivalent), the 2-layer gate, models mixing dense and MoE layers, top-k weights renormalized
 * where llama.cpp's architecture does not (OLMoE) or not renormalized where it does (Qwen3-MoE),
 * and OLMoE with grouped-query attention (llama.cpp sizes its k norm by the embedding length).
 * Tensors are read, converted and written one at a time; the file is written atomically.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, writeFully } from '../io/atomic.js';
import { encodeBf16, encodeF16 } from '../io/dtypes.js';
import { GGML_TYPES, ggmlBytes, type GgmlTypeName, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufValueType, quantizeQ8_0, Q8_0_BLOCK } from '../io/gguf.js';
import { readConfig } from '../io/hf.js';
import { expertTensorNames } from '../io/layout.js';
import { openCheckpoint, type ShardedReader } from '../io/sharded.js';
import { readRealValues } from '../io/weights.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import { isMoeLayer, type Layout, type ModelConfig } from '../model/config.js';
import { moeParamNames, parameterSpecs } from '../model/skywork-moe.js';
import { ggufTokenizerKvs, type Kv } from './gguf-vocab.js';

export class ExportError extends Error {
  override name = 'ExportError';
}

export type GgufOutType = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const GGUF_OUT_TYPES: readonly GgufOutType[] = ['f32', 'f16', 'bf16', 'q8_0'];

const TYPE_OF: Record<GgufOutType, GgmlTypeName> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0' };
/** llama_ftype of the file (general.file_type). */
const FILE_TYPE: Record<GgufOutType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

export interface GgufExportOptions {
  type: GgufOutType;
  /** general.name (default: the directory name). */
  name?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface GgufExportResult {
  tensors: number;
  bytes: number;
}


/** llama.cpp's architecture for each layout, and whether it uses interleaved (llama) RoPE pairs. */
const ARCH: Record<Layout, { arch: string; interleavedRope: boolean }> = {
  skywork: { arch: 'llama', interleavedRope: true },
  mixtral: { arch: 'llama', interleavedRope: true },
  llama: { arch: 'llama', interleavedRope: true },
  mistral: { arch: 'llama', interleavedRope: true },
  qwen3: { arch: 'qwen3', interleavedRope: false },
  qwen3_moe: { arch: 'qwen3moe', interleavedRope: false },
  olmoe: { arch: 'olmoe', interleavedRope: false },
};

/** The GGUF `general.architecture` of a layout. */
export function ggufArchitecture(layout: Layout): string {
  return ARCH[layout].arch;
}

/** Why a config cannot be exported faithfully, or null. */
export function ggufRefusal(cfg: ModelConfig): string | null {
  const arch = ARCH[cfg.layout].arch;
  if (cfg.logitsNorm) return 'the model uses gating logit normalization (moe_use_logits_norm), which GGUF and llama.cpp cannot express: exported, it would compute a different model. Export a model without it (Mixtral layout), or serve it with skymoe';
  if (cfg.twoLayerGate) return 'the model has a 2-layer gate, which llama.cpp cannot express';
  if (cfg.numExperts > 0 && cfg.moeInterval !== 1) return `MoE every ${cfg.moeInterval} layers (${cfg.layout === 'qwen3_moe' ? 'decoder_sparse_step' : 'moe_expert_interval'}) mixes dense and MoE layers, which llama.cpp's ${arch} architecture cannot express`;
  if (cfg.numExperts > 0 && cfg.mlpOnlyLayers.length) return `mlp_only_layers [${cfg.mlpOnlyLayers}] mixes dense and MoE layers, which llama.cpp's ${arch} architecture cannot express`;
  // llama.cpp's MoE graphs fix the top-k weighting per architecture: llama and qwen3moe renormalize, olmoe does not.
  if (cfg.numExperts > 0 && cfg.normTopK !== (arch !== 'olmoe')) return `the model ${cfg.normTopK ? 'renormalizes' : 'does not renormalize'} its top-k weights (norm_topk_prob ${cfg.normTopK}), llama.cpp's ${arch} architecture always ${arch === 'olmoe' ? 'leaves them as they are' : 'renormalizes them'}`;
  // llama.cpp's olmoe loads attn_k_norm with embedding_length weights: the full-projection k norm of an MHA model only
  if (arch === 'olmoe' && cfg.numKvHeads !== cfg.numHeads) return `the model has ${cfg.numKvHeads} key/value heads for ${cfg.numHeads} query heads; llama.cpp's olmoe architecture expects the k norm over embedding_length (${cfg.hiddenSize}) weights, i.e. no grouped-query attention`;
  if (cfg.moeIntermediateSize !== cfg.intermediateSize && cfg.numExperts > 0 && arch !== 'qwen3moe') return `the expert width ${cfg.moeIntermediateSize} differs from the MLP width ${cfg.intermediateSize}, which llama.cpp's ${arch} architecture cannot express`;
  return null;
}

/** HF rotate-half rows of q_proj / k_proj -> llama.cpp's interleaved pairs (per head: row j*D/2 + i -> 2i + j). */
export function permuteRopeRows(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols, D = rows / heads, half = D / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) out.set(w.subarray((h * D + j * half + i) * cols, (h * D + j * half + i + 1) * cols), (h * D + 2 * i + j) * cols);
  return out;
}

interface Plan {
  name: string;
  /** ggml dims, innermost first */
  ne: number[];
  type: GgmlTypeName;
  /** Values in row-major order over the reversed ne. */
  values: () => Float32Array;
}

function encode(type: GgmlTypeName, v: Float32Array): Uint8Array {
  switch (type) {
    case 'F32': return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    case 'F16': {
      const u = encodeF16(v);
      return new Uint8Array(u.buffer, u.byteOffset, u.byteLength);
    }
    case 'BF16': {
      const u = encodeBf16(v);
      return new Uint8Array(u.buffer, u.byteOffset, u.byteLength);
    }
    case 'Q8_0': return quantizeQ8_0(v);
  }
}

function plan(reader: ShardedReader, cfg: ModelConfig, out: GgmlTypeName, where: string): Plan[] {
  const H = cfg.hiddenSize;
  const permute = ARCH[cfg.layout].interleavedRope;
  // the real values: an FP8 checkpoint's weight_scale applied (GGUF stores plain values)
  const read = (n: string) => readRealValues(reader, n, where).values;
  const matrix = (shape: readonly number[]): GgmlTypeName => (out === 'Q8_0' && shape[shape.length - 1]! % Q8_0_BLOCK !== 0 ? 'F16' : out);
  const plans: Plan[] = [];
  const add = (name: string, shape: readonly number[], type: GgmlTypeName, values: () => Float32Array) => plans.push({ name, ne: [...shape].reverse(), type, values });
  add('token_embd.weight', [cfg.vocabSize, H], matrix([cfg.vocabSize, H]), () => read('model.embed_tokens.weight'));
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`, b = `blk.${l}`;
    const qd = cfg.numHeads * cfg.headDim, kvd = cfg.numKvHeads * cfg.headDim;
    const rope = (name: string, heads: number) => (permute ? permuteRopeRows(read(name), heads, H) : read(name));
    add(`${b}.attn_norm.weight`, [H], 'F32', () => read(`${p}.input_layernorm.weight`));
    add(`${b}.attn_q.weight`, [qd, H], matrix([qd, H]), () => rope(`${p}.self_attn.q_proj.weight`, cfg.numHeads));
    add(`${b}.attn_k.weight`, [kvd, H], matrix([kvd, H]), () => rope(`${p}.self_attn.k_proj.weight`, cfg.numKvHeads));
    add(`${b}.attn_v.weight`, [kvd, H], matrix([kvd, H]), () => read(`${p}.self_attn.v_proj.weight`));
    add(`${b}.attn_output.weight`, [H, qd], matrix([H, qd]), () => read(`${p}.self_attn.o_proj.weight`));
    if (cfg.qkNorm !== 'none') {
      const head = cfg.qkNorm === 'head';
      add(`${b}.attn_q_norm.weight`, [head ? cfg.headDim : qd], 'F32', () => read(`${p}.self_attn.q_norm.weight`));
      add(`${b}.attn_k_norm.weight`, [head ? cfg.headDim : kvd], 'F32', () => read(`${p}.self_attn.k_norm.weight`));
    }
    add(`${b}.ffn_norm.weight`, [H], 'F32', () => read(`${p}.post_attention_layernorm.weight`));
    if (isMoeLayer(cfg, l)) {
      const m = moeParamNames(cfg, l);
      const E = cfg.numExperts, F = cfg.moeIntermediateSize;
      add(`${b}.ffn_gate_inp.weight`, [E, H], 'F32', () => read(m.gate));
      for (const [w, gg] of [[m.w1, 'ffn_gate_exps'], [m.w3, 'ffn_up_exps'], [m.w2, 'ffn_down_exps']] as const) {
        const shape = w === m.w2 ? [E, H, F] : [E, F, H];
        add(`${b}.${gg}.weight`, shape, matrix(shape), () => {
          const files = expertTensorNames(w, E);
          const per = shape[1]! * shape[2]!;
          const v = new Float32Array(E * per);
          files.forEach((f, e) => v.set(read(f), e * per));
          return v;
        });
      }
    } else {
      const F = cfg.intermediateSize;
      add(`${b}.ffn_gate.weight`, [F, H], matrix([F, H]), () => read(`${p}.mlp.gate_proj.weight`));
      add(`${b}.ffn_up.weight`, [F, H], matrix([F, H]), () => read(`${p}.mlp.up_proj.weight`));
      add(`${b}.ffn_down.weight`, [H, F], matrix([H, F]), () => read(`${p}.mlp.down_proj.weight`));
    }
  }
  add('output_norm.weight', [H], 'F32', () => read('model.norm.weight'));
  if (!cfg.tieWordEmbeddings) add('output.weight', [cfg.vocabSize, H], matrix([cfg.vocabSize, H]), () => read('lm_head.weight'));
  return plans;
}

/** Serialize key-value metadata and tensor infos (offsets relative to the data section). */
function header(kvs: Kv[], infos: { name: string; ne: number[]; type: GgmlTypeName; offset: number }[]): Uint8Array {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    u64(b.length);
    parts.push(b);
  };
  const value = (t: GgufValueType, v: unknown, et?: GgufValueType) => {
    const b = Buffer.alloc(8);
    switch (t) {
      case GgufValueType.UINT32: return u32(v as number);
      case GgufValueType.INT32: b.writeInt32LE(v as number); return parts.push(b.subarray(0, 4));
      case GgufValueType.FLOAT32: b.writeFloatLE(v as number); return parts.push(b.subarray(0, 4));
      case GgufValueType.BOOL: return parts.push(Buffer.of(v ? 1 : 0));
      case GgufValueType.STRING: return str(v as string);
      case GgufValueType.ARRAY: {
        const arr = v as unknown[];
        u32(et!);
        u64(arr.length);
        for (const x of arr) value(et!, x);
        return;
      }
      default: throw new ExportError(`GGUF writer: value type ${t} not written by skymoe`);
    }
  };
  u32(GGUF_MAGIC);
  u32(GGUF_VERSION);
  u64(infos.length);
  u64(kvs.length);
  for (const [k, t, v, et] of kvs) {
    str(k);
    u32(t);
    value(t, v, et);
  }
  for (const t of infos) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(GGML_TYPES[t.type]);
    u64(t.offset);
  }
  return Buffer.concat(parts);
}

/**
 * Write `out` (.gguf) from a Hugging Face model directory with tokenizer.json.
 * @example await exportGguf('runs/demo/best-model', 'demo.gguf', { type: 'q8_0' });
 */
export async function exportGguf(dir: string, out: string, o: GgufExportOptions): Promise<GgufExportResult> {
  if (!GGUF_OUT_TYPES.includes(o.type)) throw new ExportError(`--type ${String(o.type)}: expected one of ${GGUF_OUT_TYPES.join(', ')}`);
  const cfg = readConfig(dir);
  const refusal = ggufRefusal(cfg);
  if (refusal) throw new ExportError(`${join(dir, 'config.json')}: cannot export to GGUF: ${refusal}`);
  if (!existsSync(join(dir, 'tokenizer.json')) && !existsSync(join(dir, 'tokenizer.model'))) {
    throw new ExportError(`${dir}: no tokenizer.json or tokenizer.model (GGUF carries the tokenizer)`);
  }
  const tok = await loadTokenizer(dir);
  if (tok.vocabSize > cfg.vocabSize) throw new ExportError(`${dir}: the tokenizer has ${tok.vocabSize} tokens, the model's vocab_size is ${cfg.vocabSize}`);
  const vocab = ggufTokenizerKvs(tok, cfg.vocabSize, { bos: cfg.bosTokenId, eos: cfg.eosTokenId, pad: cfg.padTokenId });
  if (!Array.isArray(vocab)) throw new ExportError(`${tok.file ?? dir}: cannot export the tokenizer to GGUF: ${vocab.refusal}`);

  const A = ARCH[cfg.layout].arch;
  const kvs: Kv[] = [
    ['general.architecture', GgufValueType.STRING, A],
    ['general.name', GgufValueType.STRING, o.name ?? dir.replace(/\/+$/, '').split('/').pop()!],
    ['general.file_type', GgufValueType.UINT32, FILE_TYPE[o.type]],
    ['general.alignment', GgufValueType.UINT32, GGUF_DEFAULT_ALIGNMENT],
    [`${A}.vocab_size`, GgufValueType.UINT32, cfg.vocabSize],
    [`${A}.context_length`, GgufValueType.UINT32, cfg.maxPositions],
    [`${A}.embedding_length`, GgufValueType.UINT32, cfg.hiddenSize],
    [`${A}.block_count`, GgufValueType.UINT32, cfg.numLayers],
    [`${A}.feed_forward_length`, GgufValueType.UINT32, cfg.intermediateSize],
    [`${A}.attention.head_count`, GgufValueType.UINT32, cfg.numHeads],
    [`${A}.attention.head_count_kv`, GgufValueType.UINT32, cfg.numKvHeads],
    // llama.cpp's default head dim is embedding_length / head_count: say it when it differs (and always for Qwen3, as its converter does)
    ...(cfg.headDim * cfg.numHeads !== cfg.hiddenSize || A === 'qwen3' || A === 'qwen3moe'
      ? ([
          [`${A}.attention.key_length`, GgufValueType.UINT32, cfg.headDim],
          [`${A}.attention.value_length`, GgufValueType.UINT32, cfg.headDim],
        ] as Kv[])
      : []),
    [`${A}.rope.dimension_count`, GgufValueType.UINT32, cfg.headDim],
    [`${A}.rope.freq_base`, GgufValueType.FLOAT32, cfg.ropeTheta],
    [`${A}.attention.layer_norm_rms_epsilon`, GgufValueType.FLOAT32, cfg.rmsNormEps],
    ...(cfg.numExperts > 0
      ? ([
          [`${A}.expert_count`, GgufValueType.UINT32, cfg.numExperts],
          [`${A}.expert_used_count`, GgufValueType.UINT32, cfg.topK],
          ...(A === 'qwen3moe' ? ([[`${A}.expert_feed_forward_length`, GgufValueType.UINT32, cfg.moeIntermediateSize]] as Kv[]) : []),
        ] as Kv[])
      : []),
    ...vocab,
  ];

  const reader = openCheckpoint(dir);
  try {
    // Every tensor the model needs is there with the shape the config says, before writing.
    for (const spec of parameterSpecs(cfg)) {
      const files = expertTensorNames(spec.name, cfg.numExperts);
      const shape = files.length === 1 ? spec.shape : spec.shape.slice(1);
      for (const f of files) {
        if (!reader.has(f)) throw new ExportError(`${dir}: missing tensor '${f}'`);
        const s = reader.info(f).shape;
        if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) throw new ExportError(`${dir}: tensor '${f}' has shape [${s}], the config needs [${shape}]`);
      }
    }
    const plans = plan(reader, cfg, TYPE_OF[o.type], reader.indexPath ?? join(dir, 'model.safetensors'));
    const align = (n: number) => Math.ceil(n / GGUF_DEFAULT_ALIGNMENT) * GGUF_DEFAULT_ALIGNMENT;
    let offset = 0;
    const infos = plans.map((p) => {
      const info = { name: p.name, ne: p.ne, type: p.type, offset };
      offset = align(offset + ggmlBytes(p.type, p.ne.reduce((a, b) => a * b, 1)));
      return info;
    });
    const head = header(kvs, infos);
    const dataStart = align(head.length);
    let bytes = 0;
    writeFileAtomic(out, (fd) => {
      writeFully(fd, head);
      writeFully(fd, new Uint8Array(dataStart - head.length));
      let pos = dataStart;
      plans.forEach((p, i) => {
        const data = encode(p.type, p.values());
        const at = dataStart + infos[i]!.offset;
        if (at > pos) writeFully(fd, new Uint8Array(at - pos));
        writeFully(fd, data);
        pos = at + data.length;
        o.onProgress?.(i + 1, plans.length);
      });
      bytes = pos;
    });
    return { tensors: plans.length, bytes };
  } finally {
    reader.close();
  }
}
