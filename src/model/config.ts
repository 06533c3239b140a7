/**
 * Model configuration: the Hugging Face `config.json` fields of each layout skymoe reads and
 * writes (Skywork-MoE, SPEC section 1; Mixtral; dense Llama and Mistral; Qwen3 dense and
 * Qwen3-MoE; OLMoE), validated with errors that name the field and what was expected. Inside
 * skymoe one normalized `ModelConfig` is used; what a layout fixes (its tensor names, whether
 * q/k are normalized and how) is in LAYOUTS.
 */
import { z } from 'zod';

/** Which checkpoint layout a model reads and writes (one per Hugging Face architecture). */
export type Layout = 'skywork' | 'mixtral' | 'llama' | 'mistral' | 'qwen3' | 'qwen3_moe' | 'olmoe';

/**
 * RMSNorm of the queries and keys after their projection, before RoPE: none; 'head' per head over
 * the head dim (Qwen3: weights [D]); 'full' over the whole projection (OLMoE: weights [H*D] and
 * [Hkv*D]).
 */
export type QkNorm = 'none' | 'head' | 'full';

/** What a layout fixes: its architecture name, MoE or dense, its q/k norm, the names of its MoE tensors. */
export interface LayoutInfo {
  architecture: string;
  moe: boolean;
  qkNorm: QkNorm;
  /** The MoE block of layer L: `model.layers.L.<moeBlock>` holds `gate.weight` and `experts.<e>.<proj>.weight`. */
  moeBlock: 'block_sparse_moe' | 'mlp';
  /** The expert projections as the files name them: gate (w1), up (w3), down (w2). */
  expertProjections: readonly [gate: string, up: string, down: string];
}

const MIXTRAL_EXPERTS = ['w1', 'w3', 'w2'] as const;
const QWEN_EXPERTS = ['gate_proj', 'up_proj', 'down_proj'] as const;

export const LAYOUTS: Readonly<Record<Layout, LayoutInfo>> = {
  skywork: { architecture: 'SkyworkForCausalLM', moe: true, qkNorm: 'none', moeBlock: 'block_sparse_moe', expertProjections: MIXTRAL_EXPERTS },
  mixtral: { architecture: 'MixtralForCausalLM', moe: true, qkNorm: 'none', moeBlock: 'block_sparse_moe', expertProjections: MIXTRAL_EXPERTS },
  llama: { architecture: 'LlamaForCausalLM', moe: false, qkNorm: 'none', moeBlock: 'block_sparse_moe', expertProjections: MIXTRAL_EXPERTS },
  mistral: { architecture: 'MistralForCausalLM', moe: false, qkNorm: 'none', moeBlock: 'block_sparse_moe', expertProjections: MIXTRAL_EXPERTS },
  qwen3: { architecture: 'Qwen3ForCausalLM', moe: false, qkNorm: 'head', moeBlock: 'mlp', expertProjections: QWEN_EXPERTS },
  qwen3_moe: { architecture: 'Qwen3MoeForCausalLM', moe: true, qkNorm: 'head', moeBlock: 'mlp', expertProjections: QWEN_EXPERTS },
  olmoe: { architecture: 'OlmoeForCausalLM', moe: true, qkNorm: 'full', moeBlock: 'mlp', expertProjections: QWEN_EXPERTS },
};

export const LAYOUT_NAMES = Object.keys(LAYOUTS) as Layout[];

/** The normalized model description used by the engine. */
export interface ModelConfig {
  layout: Layout;
  vocabSize: number;
  hiddenSize: number;
  /** FFN width of the dense MLP layers (every layer of a dense model). */
  intermediateSize: number;
  /** FFN width of one expert (Qwen3-MoE's moe_intermediate_size; the other layouts have one width for both). */
  moeIntermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** RMSNorm of q and k before RoPE (fixed by the layout: see QkNorm). */
  qkNorm: QkNorm;
  /** Experts per MoE layer (0: a dense model). */
  numExperts: number;
  /** Experts per token. */
  topK: number;
  /**
   * Layer i (0-based) is MoE iff (i + 1) % moeInterval == 0 (SPEC section 1: Skywork's
   * moe_expert_interval; Qwen3-MoE's decoder_sparse_step has the same meaning) and i is not in
   * mlpOnlyLayers.
   */
  moeInterval: number;
  /** Layers that keep a dense MLP whatever moeInterval says (Qwen3-MoE's mlp_only_layers). */
  mlpOnlyLayers: number[];
  /** Renormalize the top-k gate probabilities to sum to 1 (Qwen3-MoE and OLMoE's norm_topk_prob; always on for Skywork and Mixtral). */
  normTopK: boolean;
  /** Gating logit normalization (report section 4.1) and its lambda. */
  logitsNorm: boolean;
  gateNormStd: number;
  /** Linear(H, 8E) -> tanh -> Linear(8E, E) instead of one Linear(H, E). */
  twoLayerGate: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  /** Every end-of-sequence id when config.json lists several (Llama-3.1: end_of_text, eom, eot); the first is eosTokenId. */
  eosTokenIds?: number[];
  /**
   * bos/eos/pad_token_id as config.json gave them (null, a list, or absent keys left out), so a
   * save writes them back as they were rather than the numbers skymoe uses in their place.
   */
  givenTokenIds?: Partial<Record<'bos_token_id' | 'eos_token_id' | 'pad_token_id', number | number[] | null>>;
  initializerRange: number;
  /** router_aux_loss_coef of Mixtral, Qwen3-MoE and OLMoE, kept for round trips. */
  routerAuxLossCoef?: number;
  /** Fields of the original config.json we do not interpret, written back on save. */
  extra?: Record<string, unknown>;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
  }
}

/**
 * A value read from config.json, as JSON text for a message. A value nested too deeply to print (a
 * hostile file) is described in words, so the ConfigError naming the file and field is what the
 * caller sees rather than a RangeError escaping from JSON.stringify.
 */
function jsonText(v: unknown): string {
  try {
    return String(JSON.stringify(v));
  } catch {
    return Array.isArray(v) ? 'a deeply nested array' : 'a deeply nested object';
  }
}

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

/** Fields every layout shares (HF names). */
const common = {
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.optional(),
  max_position_embeddings: posInt,
  rope_theta: z.number().positive().optional(),
  rms_norm_eps: z.number().positive().optional(),
  hidden_act: z.literal('silu').optional(),
  tie_word_embeddings: z.boolean().optional(),
  bos_token_id: nonNegInt.nullable().optional(),
  eos_token_id: z.union([nonNegInt, z.array(nonNegInt)]).nullable().optional(),
  pad_token_id: nonNegInt.nullable().optional(),
  initializer_range: z.number().positive().optional(),
  head_dim: posInt.optional(),
};

/** Routed-expert fields of Qwen3-MoE and OLMoE (HF defaults: norm_topk_prob false). */
const routed = {
  num_experts: posInt,
  num_experts_per_tok: posInt,
  norm_topk_prob: z.boolean().optional(),
  router_aux_loss_coef: z.number().nonnegative().optional(),
  output_router_logits: z.boolean().optional(),
};

const skyworkSchema = z.looseObject({
  ...common,
  architectures: z.array(z.literal('SkyworkForCausalLM')).optional(),
  model_type: z.enum(['skywork', 'skywork_moe']),
  num_experts: z.array(posInt).min(1),
  moe_expert_interval: posInt.optional(),
  moe_use_logits_norm: z.boolean().optional(),
  moe_gate_norm_std: z.number().positive().optional(),
  moe_2layer_gate: z.boolean().optional(),
  moe_use_skywork_gating: z.literal(false).optional(),
  moe_feature_no_mul_topk: z.boolean().optional(),
  num_experts_per_tok: posInt.optional(),
});

const mixtralSchema = z.looseObject({
  ...common,
  architectures: z.array(z.literal('MixtralForCausalLM')).optional(),
  model_type: z.literal('mixtral'),
  num_local_experts: posInt,
  num_experts_per_tok: posInt,
  router_aux_loss_coef: z.number().nonnegative().optional(),
});

// Llama-2's pretraining_tp > 1 splits the projections into slices whose results are concatenated
// or summed: the same function (HF modeling_llama), so any value is accepted and written back.
const llamaSchema = z.looseObject({
  ...common,
  architectures: z.array(z.literal('LlamaForCausalLM')).optional(),
  model_type: z.literal('llama'),
  pretraining_tp: posInt.optional(),
});

const mistralSchema = z.looseObject({
  ...common,
  architectures: z.array(z.literal('MistralForCausalLM')).optional(),
  model_type: z.literal('mistral'),
});

// Qwen3 configs carry sliding_window and max_window_layers; without use_sliding_window HF ignores both.
const qwenAttention = {
  use_sliding_window: z.literal(false, { error: 'sliding-window attention is not implemented by skymoe (expected false)' }).optional(),
  sliding_window: posInt.nullable().optional(),
  max_window_layers: nonNegInt.optional(),
  layer_types: z.array(z.literal('full_attention', { error: "only 'full_attention' layers are implemented by skymoe" })).optional(),
};

const qwen3Schema = z.looseObject({
  ...common,
  ...qwenAttention,
  architectures: z.array(z.literal('Qwen3ForCausalLM')).optional(),
  model_type: z.literal('qwen3'),
});

const qwen3MoeSchema = z.looseObject({
  ...common,
  ...qwenAttention,
  ...routed,
  architectures: z.array(z.literal('Qwen3MoeForCausalLM')).optional(),
  model_type: z.literal('qwen3_moe'),
  moe_intermediate_size: posInt,
  decoder_sparse_step: posInt.optional(),
  mlp_only_layers: z.array(nonNegInt).nullable().optional(),
});

const olmoeSchema = z.looseObject({
  ...common,
  ...routed,
  architectures: z.array(z.literal('OlmoeForCausalLM')).optional(),
  model_type: z.literal('olmoe'),
  clip_qkv: z.null({ error: 'clipping q/k/v is not implemented by skymoe (expected null)' }).optional(),
});

function describeIssue(issue: z.core.$ZodIssue, raw: Record<string, unknown>): string {
  const field = issue.path.join('.') || '(root)';
  const got = issue.path.length ? jsonText(issue.path.reduce<unknown>((o, k) => (o as Record<PropertyKey, unknown>)?.[k as PropertyKey], raw)) : typeof raw;
  return `field '${field}': ${issue.message} (got ${got ?? 'nothing'})`;
}

function parseWith<T>(schema: z.ZodType<T>, raw: Record<string, unknown>, file?: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new ConfigError(r.error.issues.map((i) => describeIssue(i, raw)).join('; '), file);
  return r.data;
}

/** Fields turned into ModelConfig fields (written back from them); everything else is kept in `extra`. */
const KNOWN = new Set([
  ...Object.keys(common), 'architectures', 'model_type', 'num_experts', 'moe_expert_interval', 'moe_use_logits_norm', 'moe_gate_norm_std',
  'moe_2layer_gate', 'moe_use_skywork_gating', 'moe_feature_no_mul_topk', 'num_experts_per_tok', 'num_local_experts', 'router_aux_loss_coef',
  'moe_intermediate_size', 'norm_topk_prob', 'decoder_sparse_step', 'mlp_only_layers', 'clip_qkv',
]);

const MODEL_TYPES = ['skywork', 'skywork_moe', 'mixtral', 'llama', 'mistral', 'qwen3', 'qwen3_moe', 'olmoe'];

/** What the layout-specific fields say, before the shared ones are read. */
type LayoutFields = Pick<ModelConfig, 'layout' | 'numExperts' | 'topK' | 'moeInterval' | 'mlpOnlyLayers' | 'normTopK' | 'logitsNorm' | 'gateNormStd' | 'twoLayerGate' | 'routerAuxLossCoef'> & {
  /** Qwen3-MoE's moe_intermediate_size (the other layouts: intermediate_size). */
  moeIntermediateSize?: number;
  /** head_dim when config.json has none (HF's default for the architecture). */
  defaultHeadDim: (hidden: number, heads: number) => number;
  /** The layout computes with hidden / heads whatever head_dim says (Skywork, OLMoE). */
  headDimFixed: boolean;
};

const DENSE: Omit<LayoutFields, 'layout'> = {
  numExperts: 0, topK: 0, moeInterval: 1, mlpOnlyLayers: [], normTopK: true, logitsNorm: false, gateNormStd: 1, twoLayerGate: false,
  defaultHeadDim: (h, n) => h / n, headDimFixed: false,
};

type Base = z.infer<typeof llamaSchema>;

function layoutFields(o: Record<string, unknown>, file?: string): { base: Base; f: LayoutFields } {
  const mt = o.model_type;
  const as = (c: unknown) => c as Base;
  switch (mt) {
    case 'skywork':
    case 'skywork_moe': {
      const c = parseWith(skyworkSchema, o, file);
      if (new Set(c.num_experts).size !== 1) throw new ConfigError(`field 'num_experts': layers with different expert counts ${JSON.stringify(c.num_experts)} are not supported`, file);
      return {
        base: as(c),
        f: {
          ...DENSE, layout: 'skywork', numExperts: c.num_experts[0]!, topK: c.num_experts_per_tok ?? 2, // SPEC: top-2, not in the released config
          moeInterval: c.moe_expert_interval ?? 1, logitsNorm: c.moe_use_logits_norm ?? false, gateNormStd: c.moe_gate_norm_std ?? 1,
          twoLayerGate: c.moe_2layer_gate ?? false, headDimFixed: true,
        },
      };
    }
    case 'mixtral': {
      const c = parseWith(mixtralSchema, o, file);
      return { base: as(c), f: { ...DENSE, layout: 'mixtral', numExperts: c.num_local_experts, topK: c.num_experts_per_tok, routerAuxLossCoef: c.router_aux_loss_coef } };
    }
    case 'llama':
      return { base: parseWith(llamaSchema, o, file), f: { ...DENSE, layout: 'llama' } };
    case 'mistral':
      return { base: as(parseWith(mistralSchema, o, file)), f: { ...DENSE, layout: 'mistral' } };
    case 'qwen3':
      // Qwen3Config's head_dim defaults to 128, not hidden / heads.
      return { base: as(parseWith(qwen3Schema, o, file)), f: { ...DENSE, layout: 'qwen3', defaultHeadDim: () => 128 } };
    case 'qwen3_moe': {
      const c = parseWith(qwen3MoeSchema, o, file);
      return {
        base: as(c),
        f: {
          ...DENSE, layout: 'qwen3_moe', numExperts: c.num_experts, topK: c.num_experts_per_tok, moeInterval: c.decoder_sparse_step ?? 1,
          mlpOnlyLayers: c.mlp_only_layers ?? [], normTopK: c.norm_topk_prob ?? false, moeIntermediateSize: c.moe_intermediate_size, routerAuxLossCoef: c.router_aux_loss_coef,
        },
      };
    }
    case 'olmoe': {
      const c = parseWith(olmoeSchema, o, file);
      return {
        base: as(c),
        f: { ...DENSE, layout: 'olmoe', numExperts: c.num_experts, topK: c.num_experts_per_tok, normTopK: c.norm_topk_prob ?? false, routerAuxLossCoef: c.router_aux_loss_coef, headDimFixed: true },
      };
    }
    default:
      throw new ConfigError(`field 'model_type': expected one of ${MODEL_TYPES.map((t) => `'${t}'`).join(', ')} (got ${jsonText(mt)})`, file);
  }
}

/** rope_parameters (newer transformers): only the plain RoPE is implemented; its rope_theta is used. */
function ropeParametersTheta(v: unknown, file?: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const p = v as Record<string, unknown>;
  if (typeof v !== 'object' || Array.isArray(v) || (p.rope_type ?? p.type ?? 'default') !== 'default') {
    throw new ConfigError(`field 'rope_parameters': ${jsonText(v)} is not supported by skymoe (only rope_type 'default': plain RoPE without scaling)`, file);
  }
  if (p.rope_theta !== undefined && !(typeof p.rope_theta === 'number' && p.rope_theta > 0)) throw new ConfigError(`field 'rope_parameters.rope_theta': expected a positive number, got ${jsonText(p.rope_theta)}`, file);
  return p.rope_theta as number | undefined;
}

/** Parse a Hugging Face config.json object (any layout of LAYOUTS). */
export function configFromHF(raw: unknown, file?: string): ModelConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('expected a JSON object', file);
  const o = raw as Record<string, unknown>;
  const qwen = o.model_type === 'qwen3' || o.model_type === 'qwen3_moe';
  // Fields that change the computation in ways skymoe does not implement: refuse rather than
  // silently compute something else. Qwen3 configs carry a sliding_window that HF ignores unless
  // use_sliding_window is true (their schema refuses that).
  for (const [field, ok, expected] of [
    ['rope_scaling', (v: unknown) => v === null || v === undefined, 'null'],
    ['attention_bias', (v: unknown) => v !== true, 'false'],
    ['mlp_bias', (v: unknown) => v !== true, 'false'],
    ['use_sliding_window', (v: unknown) => v !== true, 'false: sliding-window attention is not implemented'],
    ['sliding_window', (v: unknown) => qwen || v === null || v === undefined, 'null: sliding-window attention is not implemented'],
    ['tie_word_embeddings', (v: unknown) => v === undefined || typeof v === 'boolean', 'a boolean'],
  ] as const) {
    if (!ok(o[field])) throw new ConfigError(`field '${field}': ${jsonText(o[field])} is not supported by skymoe (expected ${expected})`, file);
  }
  const ropeTheta = ropeParametersTheta(o.rope_parameters, file);
  checkQuantization(o.quantization_config, file);
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (KNOWN.has(k)) continue;
    // Kept to be written back on save: a value JSON cannot write (nested too deeply) is refused
    // here, naming the field, rather than failing as a RangeError when a checkpoint is saved.
    try {
      JSON.stringify(v);
    } catch {
      throw new ConfigError(`field '${k}': ${jsonText(v)} cannot be written back to config.json`, file);
    }
    extra[k] = v;
  }
  const { base, f } = layoutFields(o, file);
  const heads = base.num_attention_heads;
  const kvHeads = base.num_key_value_heads ?? heads;
  const headDim = f.headDimFixed ? base.hidden_size / heads : (base.head_dim ?? f.defaultHeadDim(base.hidden_size, heads));
  if (f.headDimFixed && base.head_dim !== undefined && base.head_dim !== headDim) {
    throw new ConfigError(`field 'head_dim': ${base.head_dim} differs from hidden_size / num_attention_heads = ${headDim}, which the ${f.layout} layout always uses`, file);
  }
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ConfigError(base.head_dim !== undefined ? `field 'head_dim': ${headDim} must be even (RoPE rotates pairs)` : `field 'hidden_size': ${base.hidden_size} / ${heads} heads must give an even integer head dim`, file);
  }
  if (heads % kvHeads !== 0) throw new ConfigError(`field 'num_key_value_heads': ${heads} attention heads are not a multiple of ${kvHeads}`, file);
  if (f.numExperts && (f.topK < 1 || f.topK > f.numExperts)) throw new ConfigError(`field 'num_experts_per_tok': top-k ${f.topK} must be in [1, ${f.numExperts}]`, file);
  const eos = Array.isArray(base.eos_token_id) ? base.eos_token_id[0] : base.eos_token_id;
  const cfg: ModelConfig = {
    layout: f.layout,
    vocabSize: base.vocab_size,
    hiddenSize: base.hidden_size,
    intermediateSize: base.intermediate_size,
    moeIntermediateSize: f.moeIntermediateSize ?? base.intermediate_size,
    numLayers: base.num_hidden_layers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    maxPositions: base.max_position_embeddings,
    ropeTheta: base.rope_theta ?? ropeTheta ?? 10000,
    rmsNormEps: base.rms_norm_eps ?? 1e-6,
    qkNorm: LAYOUTS[f.layout].qkNorm,
    numExperts: f.numExperts,
    topK: f.topK,
    moeInterval: f.moeInterval,
    mlpOnlyLayers: f.mlpOnlyLayers,
    normTopK: f.normTopK,
    logitsNorm: f.logitsNorm,
    gateNormStd: f.gateNormStd,
    twoLayerGate: f.twoLayerGate,
    tieWordEmbeddings: base.tie_word_embeddings ?? false,
    bosTokenId: base.bos_token_id ?? 1,
    eosTokenId: eos ?? 2,
    padTokenId: base.pad_token_id ?? 0,
    ...(Array.isArray(base.eos_token_id) && base.eos_token_id.length > 1 ? { eosTokenIds: [...base.eos_token_id] } : {}),
    // Only when writing the plain ids back would change the file: a null, a list or an absent id.
    ...(TOKEN_ID_FIELDS.some((k) => typeof o[k] !== 'number')
      ? { givenTokenIds: Object.fromEntries(TOKEN_ID_FIELDS.filter((k) => k in o).map((k) => [k, o[k] as number | number[] | null])) }
      : {}),
    initializerRange: base.initializer_range ?? 0.02,
    extra,
  };
  if (f.routerAuxLossCoef !== undefined) cfg.routerAuxLossCoef = f.routerAuxLossCoef;
  validateConfig(cfg, file);
  return cfg;
}

/**
 * `quantization_config`: FP8 weights (vLLM's "fp8" method: F8_E4M3 tensors with a `weight_scale`
 * per tensor or per row) are read; other methods, and block-wise scales, would compute something
 * else and are refused. Activations are computed in f32 either way (a static scheme's input scales
 * are not needed).
 */
function checkQuantization(qc: unknown, file?: string): void {
  if (qc === undefined || qc === null) return;
  const bad = (field: string, msg: string) => {
    throw new ConfigError(`field 'quantization_config${field}': ${msg}`, file);
  };
  if (typeof qc !== 'object' || Array.isArray(qc)) bad('', `expected an object, got ${jsonText(qc)}`);
  const q = qc as Record<string, unknown>;
  if (q.quant_method !== 'fp8') bad('.quant_method', `${jsonText(q.quant_method)} is not supported by skymoe (expected "fp8": F8_E4M3 weights with a weight_scale)`);
  if (q.activation_scheme !== undefined && q.activation_scheme !== 'dynamic' && q.activation_scheme !== 'static') bad('.activation_scheme', `expected "dynamic" or "static", got ${jsonText(q.activation_scheme)}`);
  if (q.weight_block_size !== undefined && q.weight_block_size !== null) bad('.weight_block_size', `block-wise FP8 scales ${jsonText(q.weight_block_size)} are not supported (per-tensor and per-row scales are)`);
}

/** Checks that tie fields together (also run on presets and programmatic configs): can this model be computed? */
/** The RoPE cos/sin tables are built for every position at load: at most this many bytes. */
const MAX_ROPE_TABLE_BYTES = 2 ** 30;

/** [HF field, value, largest accepted] for the sizes of a config. */
const SIZE_LIMITS = (c: ModelConfig): [string, number, number][] => [
  ['vocab_size', c.vocabSize, 2 ** 31 - 1],
  ['hidden_size', c.hiddenSize, 2 ** 20],
  ['intermediate_size', c.intermediateSize, 2 ** 22],
  ['moe_intermediate_size', c.moeIntermediateSize, 2 ** 22],
  ['num_hidden_layers', c.numLayers, 10_000],
  ['num_attention_heads', c.numHeads, 2 ** 16],
  ['num_key_value_heads', c.numKvHeads, 2 ** 16],
  ['head_dim', c.headDim, 2 ** 16],
  [c.layout === 'qwen3_moe' || c.layout === 'olmoe' ? 'num_experts' : 'num_local_experts', c.numExperts, 2 ** 16],
  ['max_position_embeddings', c.maxPositions, 2 ** 24],
];

export function validateConfig(c: ModelConfig, file?: string): void {
  const bad = (field: string, msg: string) => {
    throw new ConfigError(`field '${field}': ${msg}`, file);
  };
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === 'number' && !Number.isFinite(v)) bad(k, `expected a finite number, got ${v}`);
  }
  // Upper bounds far above any published model, checked before anything is allocated: a typo
  // (hidden_size 1e9) is named here, not minutes later as a heap that cannot grow to 1.9 TiB.
  for (const [field, v, max] of SIZE_LIMITS(c)) {
    if (v > max) bad(field, `${v} is larger than any model (at most ${max})`);
  }
  const ropeBytes = c.maxPositions * (c.headDim / 2) * 2 * 4;
  if (ropeBytes > MAX_ROPE_TABLE_BYTES) bad('max_position_embeddings', `${c.maxPositions} positions need ${(ropeBytes / 2 ** 30).toFixed(1)} GiB of RoPE tables at head dim ${c.headDim} (skymoe builds them whole; at most ${(MAX_ROPE_TABLE_BYTES / 2 ** 30).toFixed(0)} GiB)`);
  const info = LAYOUTS[c.layout];
  if (!info) bad('layout', `expected one of ${LAYOUT_NAMES.join(', ')}, got ${JSON.stringify(c.layout)}`);
  if (!info.moe && c.numExperts !== 0) bad('layout', `a ${c.layout}-layout model is dense (numExperts 0)`);
  if (info.moe && c.numExperts < 1) bad('num_experts', 'an MoE layout needs at least one expert');
  if (c.logitsNorm && c.numExperts < 2) bad('moe_use_logits_norm', 'logit normalization divides by the std over experts: it needs at least 2 experts');
  if (!Number.isInteger(c.headDim) || c.headDim < 2 || c.headDim % 2 !== 0) bad('head_dim', `${c.headDim} must be an even positive integer (RoPE rotates pairs)`);
  if (!['none', 'head', 'full'].includes(c.qkNorm)) bad('qkNorm', `expected 'none', 'head' or 'full', got ${JSON.stringify(c.qkNorm)}`);
  if (!Number.isInteger(c.moeInterval) || c.moeInterval < 1) bad(c.layout === 'qwen3_moe' ? 'decoder_sparse_step' : 'moe_expert_interval', `expected a positive integer, got ${c.moeInterval}`);
  if (!Number.isInteger(c.moeIntermediateSize) || c.moeIntermediateSize < 1) bad('moe_intermediate_size', `expected a positive integer, got ${c.moeIntermediateSize}`);
  const seen = new Set<number>();
  for (const l of c.mlpOnlyLayers) {
    if (!Number.isInteger(l) || l < 0 || l >= c.numLayers) bad('mlp_only_layers', `layer ${l} is not a layer of this model (0..${c.numLayers - 1})`);
    if (seen.has(l)) bad('mlp_only_layers', `layer ${l} is listed twice`);
    seen.add(l);
  }
  for (const id of c.eosTokenIds ?? []) if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) bad('eos_token_id', `${id} is outside the vocabulary (${c.vocabSize})`);
  for (const [f, id] of [['bos_token_id', c.bosTokenId], ['eos_token_id', c.eosTokenId], ['pad_token_id', c.padTokenId]] as const) {
    if (id >= c.vocabSize) bad(f, `${id} is outside the vocabulary (${c.vocabSize})`);
  }
}

/**
 * Why a config cannot be written in `layout` so that it reloads as the same model (null: it can).
 * A layout's config.json has fields for some features and not others, and its q/k norm and
 * tensor names are fixed.
 */
export function layoutRefusal(c: ModelConfig, layout: Layout): string | null {
  const to = LAYOUTS[layout];
  if (!to) return `unknown layout ${JSON.stringify(layout)} (expected one of ${LAYOUT_NAMES.join(', ')})`;
  const from = LAYOUTS[c.layout];
  if (to.moe !== c.numExperts > 0) return `the ${layout} layout is ${to.moe ? 'MoE' : 'dense'}, this model is ${c.numExperts > 0 ? 'MoE' : 'dense'}`;
  if (to.qkNorm !== c.qkNorm) return `the ${layout} layout has ${to.qkNorm === 'none' ? 'no q/k norm' : `a ${to.qkNorm === 'head' ? 'per-head' : 'full-projection'} q/k norm`}, this model has ${c.qkNorm === 'none' ? 'none' : `a ${c.qkNorm === 'head' ? 'per-head' : 'full-projection'} one`}`;
  if (from && from.moeBlock !== to.moeBlock && c.numExperts > 0) return `the ${layout} layout names its experts differently (${to.moeBlock}) from this ${c.layout} model (${from.moeBlock})`;
  const cannot = (what: string) => `the ${layout} layout's config.json has no field for ${what}, so the model would reload as a different one`;
  if (c.logitsNorm && layout !== 'skywork') return cannot('gating logit normalization');
  if (c.twoLayerGate && layout !== 'skywork') return cannot('a 2-layer gate');
  if (c.numExperts > 0 && c.moeInterval !== 1 && layout !== 'skywork' && layout !== 'qwen3_moe') return cannot(`MoE every ${c.moeInterval} layers (moe_expert_interval / decoder_sparse_step)`);
  if (c.numExperts > 0 && c.mlpOnlyLayers.length && layout !== 'qwen3_moe') return cannot('dense layers among MoE layers (mlp_only_layers)');
  if (c.numExperts > 0 && !c.normTopK && layout !== 'qwen3_moe' && layout !== 'olmoe') return cannot('un-renormalized top-k weights (norm_topk_prob false)');
  if (c.numExperts > 0 && c.moeIntermediateSize !== c.intermediateSize && layout !== 'qwen3_moe') return cannot(`an expert width (${c.moeIntermediateSize}) other than the MLP width (${c.intermediateSize})`);
  if (c.numExperts === 0 && c.moeIntermediateSize !== c.intermediateSize) return `a dense model's moeIntermediateSize (${c.moeIntermediateSize}) must equal its intermediateSize (${c.intermediateSize})`;
  if ((layout === 'skywork' || layout === 'olmoe') && c.headDim * c.numHeads !== c.hiddenSize) return `the ${layout} layout computes with head dim hidden_size / num_attention_heads = ${c.hiddenSize / c.numHeads}, this model has ${c.headDim}`;
  return null;
}

/** Whether layer i (0-based) is an MoE layer (SPEC section 1; HF Qwen3MoeDecoderLayer). */
export function isMoeLayer(c: ModelConfig, i: number): boolean {
  return c.numExperts > 0 && !c.mlpOnlyLayers.includes(i) && (i + 1) % c.moeInterval === 0;
}

const TOKEN_ID_FIELDS = ['bos_token_id', 'eos_token_id', 'pad_token_id'] as const;

/** The ids generation stops at by default: every eos id of the config. */
export function stopTokenIds(c: ModelConfig): number[] {
  return c.eosTokenIds && c.eosTokenIds[0] === c.eosTokenId ? [...c.eosTokenIds] : [c.eosTokenId];
}

/**
 * bos/eos/pad_token_id for config.json: as the file gave them (null, absent, a list) while the
 * ids skymoe derived from them are unchanged; the ids themselves otherwise.
 */
function tokenIdFields(c: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const current = { bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId, pad_token_id: c.padTokenId };
  const defaults = { bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 };
  const eos = stopTokenIds(c);
  for (const k of TOKEN_ID_FIELDS) {
    const given = c.givenTokenIds;
    const value = k === 'eos_token_id' && eos.length > 1 ? eos : current[k];
    if (given === undefined) {
      out[k] = value;
      continue;
    }
    const raw = given[k];
    const derived = raw === undefined || raw === null ? defaults[k] : Array.isArray(raw) ? raw[0] : raw;
    if (derived !== current[k]) out[k] = value;
    else if (k in given) out[k] = raw;
    // absent from the file and unchanged: left out, as it was
  }
  return out;
}

/**
 * The Hugging Face config.json object for a config in its layout (see layoutRefusal for what a
 * layout can say; saveModel checks it first).
 */
export function configToHF(c: ModelConfig): Record<string, unknown> {
  const standardHeadDim = c.headDim * c.numHeads === c.hiddenSize;
  const common = {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    // Qwen3 configs always say it (Qwen3's default is 128, not hidden / heads); others when it differs.
    ...(c.layout === 'qwen3' || c.layout === 'qwen3_moe' || !standardHeadDim ? { head_dim: c.headDim } : {}),
    max_position_embeddings: c.maxPositions,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    hidden_act: 'silu',
    tie_word_embeddings: c.tieWordEmbeddings,
    ...tokenIdFields(c),
    initializer_range: c.initializerRange,
    torch_dtype: 'float32',
  };
  // skymoe saves f32/bf16/f16 weights: a source checkpoint's FP8 quantization does not carry over,
  // and torch_dtype says what is saved (kept in its place, so a second save writes the same file).
  const { quantization_config: _q, torch_dtype: _t, ...extra } = c.extra ?? {};
  const head = { ...extra, architectures: [LAYOUTS[c.layout].architecture], model_type: c.layout as string };
  switch (c.layout) {
    case 'skywork':
      return {
        ...head,
        ...common,
        num_experts: [c.numExperts],
        moe_expert_interval: c.moeInterval,
        moe_use_logits_norm: c.logitsNorm,
        moe_gate_norm_std: c.gateNormStd,
        moe_2layer_gate: c.twoLayerGate,
        moe_use_skywork_gating: false,
        moe_feature_no_mul_topk: true,
        num_experts_per_tok: c.topK,
      };
    case 'mixtral':
      return { ...head, ...common, num_local_experts: c.numExperts, num_experts_per_tok: c.topK, router_aux_loss_coef: c.routerAuxLossCoef ?? 0.02 };
    case 'llama':
    case 'mistral':
    case 'qwen3':
      return { ...head, ...common };
    case 'qwen3_moe':
      return {
        ...head,
        ...common,
        num_experts: c.numExperts,
        num_experts_per_tok: c.topK,
        moe_intermediate_size: c.moeIntermediateSize,
        norm_topk_prob: c.normTopK,
        decoder_sparse_step: c.moeInterval,
        mlp_only_layers: c.mlpOnlyLayers,
        router_aux_loss_coef: c.routerAuxLossCoef ?? 0.001,
      };
    case 'olmoe':
      return { ...head, ...common, num_experts: c.numExperts, num_experts_per_tok: c.topK, norm_topk_prob: c.normTopK, clip_qkv: null, router_aux_loss_coef: c.routerAuxLossCoef ?? 0.01 };
  }
}
