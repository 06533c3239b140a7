/**
 * Model configuration: the Hugging Face `config.json` fields of Skywork-MoE (SPEC section 1), the
 * Mixtral names for the same things, and the dense Llama layout, validated with errors that name
 * the field and what was expected. Inside skymoe one normalized `ModelConfig` is used.
 */
import { z } from 'zod';

/** Which checkpoint layout a model reads and writes. */
export type Layout = 'skywork' | 'mixtral' | 'llama';

/** The normalized model description used by the engine. */
export interface ModelConfig {
  layout: Layout;
  vocabSize: number;
  hiddenSize: number;
  /** FFN width: per expert for MoE layers, of the MLP for dense layers. */
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** Experts per MoE layer (0: a dense model). */
  numExperts: number;
  /** Experts per token. */
  topK: number;
  /** Layer i (0-based) is MoE iff (i + 1) % moeInterval == 0 (SPEC section 1). */
  moeInterval: number;
  /** Gating logit normalization (report section 4.1) and its lambda. */
  logitsNorm: boolean;
  gateNormStd: number;
  /** Linear(H, 8E) -> tanh -> Linear(8E, E) instead of one Linear(H, E). */
  twoLayerGate: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  initializerRange: number;
  /** Mixtral's router_aux_loss_coef, kept for round trips. */
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

const llamaSchema = z.looseObject({
  ...common,
  architectures: z.array(z.literal('LlamaForCausalLM')).optional(),
  model_type: z.literal('llama'),
});

function describeIssue(issue: z.core.$ZodIssue, raw: Record<string, unknown>): string {
  const field = issue.path.join('.') || '(root)';
  const got = issue.path.length ? JSON.stringify(issue.path.reduce<unknown>((o, k) => (o as Record<PropertyKey, unknown>)?.[k as PropertyKey], raw)) : typeof raw;
  return `field '${field}': ${issue.message} (got ${got ?? 'nothing'})`;
}

function parseWith<T>(schema: z.ZodType<T>, raw: Record<string, unknown>, file?: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new ConfigError(r.error.issues.map((i) => describeIssue(i, raw)).join('; '), file);
  return r.data;
}

const KNOWN = new Set([
  ...Object.keys(common), 'architectures', 'model_type', 'num_experts', 'moe_expert_interval', 'moe_use_logits_norm', 'moe_gate_norm_std',
  'moe_2layer_gate', 'moe_use_skywork_gating', 'moe_feature_no_mul_topk', 'num_experts_per_tok', 'num_local_experts', 'router_aux_loss_coef',
]);

/** Parse a Hugging Face config.json object (Skywork, Mixtral or Llama layout). */
export function configFromHF(raw: unknown, file?: string): ModelConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('expected a JSON object', file);
  const o = raw as Record<string, unknown>;
  const mt = o.model_type;
  // Fields that change the computation in ways skymoe does not implement: refuse rather than
  // silently compute something else.
  for (const [field, ok] of [
    ['rope_scaling', (v: unknown) => v === null || v === undefined],
    ['attention_bias', (v: unknown) => v !== true],
    ['mlp_bias', (v: unknown) => v !== true],
    ['sliding_window', (v: unknown) => v === null || v === undefined],
    ['tie_word_embeddings', (v: unknown) => v === undefined || typeof v === 'boolean'],
  ] as const) {
    if (!ok(o[field])) throw new ConfigError(`field '${field}': ${JSON.stringify(o[field])} is not supported by skymoe (expected ${field === 'tie_word_embeddings' ? 'a boolean' : field.endsWith('bias') ? 'false' : 'null'})`, file);
  }
  checkQuantization(o.quantization_config, file);
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!KNOWN.has(k)) extra[k] = v;
  let layout: Layout;
  let base: z.infer<typeof llamaSchema>;
  let numExperts = 0, topK = 0, moeInterval = 1, logitsNorm = false, gateNormStd = 1, twoLayerGate = false;
  let routerAuxLossCoef: number | undefined;
  if (mt === 'skywork' || mt === 'skywork_moe') {
    const c = parseWith(skyworkSchema, o, file);
    if (new Set(c.num_experts).size !== 1) throw new ConfigError(`field 'num_experts': layers with different expert counts ${JSON.stringify(c.num_experts)} are not supported`, file);
    layout = 'skywork';
    base = c as unknown as typeof base;
    numExperts = c.num_experts[0]!;
    topK = c.num_experts_per_tok ?? 2; // SPEC: top-2, not in the released config
    moeInterval = c.moe_expert_interval ?? 1;
    logitsNorm = c.moe_use_logits_norm ?? false;
    gateNormStd = c.moe_gate_norm_std ?? 1;
    twoLayerGate = c.moe_2layer_gate ?? false;
  } else if (mt === 'mixtral') {
    const c = parseWith(mixtralSchema, o, file);
    layout = 'mixtral';
    base = c as unknown as typeof base;
    numExperts = c.num_local_experts;
    topK = c.num_experts_per_tok;
    routerAuxLossCoef = c.router_aux_loss_coef;
  } else if (mt === 'llama') {
    base = parseWith(llamaSchema, o, file);
    layout = 'llama';
  } else {
    throw new ConfigError(`field 'model_type': expected 'skywork', 'skywork_moe', 'mixtral' or 'llama' (got ${JSON.stringify(mt)})`, file);
  }
  const heads = base.num_attention_heads;
  const kvHeads = base.num_key_value_heads ?? heads;
  const headDim = base.head_dim ?? base.hidden_size / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new ConfigError(`field 'hidden_size': ${base.hidden_size} / ${heads} heads must give an even integer head dim`, file);
  if (heads % kvHeads !== 0) throw new ConfigError(`field 'num_key_value_heads': ${heads} attention heads are not a multiple of ${kvHeads}`, file);
  if (numExperts && (topK < 1 || topK > numExperts)) throw new ConfigError(`field 'num_experts_per_tok': top-k ${topK} must be in [1, ${numExperts}]`, file);
  const eos = Array.isArray(base.eos_token_id) ? base.eos_token_id[0] : base.eos_token_id;
  const cfg: ModelConfig = {
    layout,
    vocabSize: base.vocab_size,
    hiddenSize: base.hidden_size,
    intermediateSize: base.intermediate_size,
    numLayers: base.num_hidden_layers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    maxPositions: base.max_position_embeddings,
    ropeTheta: base.rope_theta ?? 10000,
    rmsNormEps: base.rms_norm_eps ?? 1e-6,
    numExperts,
    topK,
    moeInterval,
    logitsNorm,
    gateNormStd,
    twoLayerGate,
    tieWordEmbeddings: base.tie_word_embeddings ?? false,
    bosTokenId: base.bos_token_id ?? 1,
    eosTokenId: eos ?? 2,
    padTokenId: base.pad_token_id ?? 0,
    initializerRange: base.initializer_range ?? 0.02,
    extra,
  };
  if (routerAuxLossCoef !== undefined) cfg.routerAuxLossCoef = routerAuxLossCoef;
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
  if (typeof qc !== 'object' || Array.isArray(qc)) bad('', `expected an object, got ${JSON.stringify(qc)}`);
  const q = qc as Record<string, unknown>;
  if (q.quant_method !== 'fp8') bad('.quant_method', `${JSON.stringify(q.quant_method)} is not supported by skymoe (expected "fp8": F8_E4M3 weights with a weight_scale)`);
  if (q.activation_scheme !== undefined && q.activation_scheme !== 'dynamic' && q.activation_scheme !== 'static') bad('.activation_scheme', `expected "dynamic" or "static", got ${JSON.stringify(q.activation_scheme)}`);
  if (q.weight_block_size !== undefined && q.weight_block_size !== null) bad('.weight_block_size', `block-wise FP8 scales ${JSON.stringify(q.weight_block_size)} are not supported (per-tensor and per-row scales are)`);
}

/** Checks that tie fields together (also run on presets and programmatic configs). */
export function validateConfig(c: ModelConfig, file?: string): void {
  const bad = (field: string, msg: string) => {
    throw new ConfigError(`field '${field}': ${msg}`, file);
  };
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === 'number' && !Number.isFinite(v)) bad(k, `expected a finite number, got ${v}`);
  }
  if (c.layout === 'llama' && c.numExperts !== 0) bad('layout', 'a llama-layout model is dense (numExperts 0)');
  if (c.layout !== 'llama' && c.numExperts < 1) bad('num_experts', 'an MoE layout needs at least one expert');
  if (c.logitsNorm && c.numExperts < 2) bad('moe_use_logits_norm', 'logit normalization divides by the std over experts: it needs at least 2 experts');
  if (c.numHeads * c.headDim !== c.hiddenSize) bad('num_attention_heads', `${c.numHeads} heads x head dim ${c.headDim} != hidden_size ${c.hiddenSize}`);
  for (const [f, id] of [['bos_token_id', c.bosTokenId], ['eos_token_id', c.eosTokenId], ['pad_token_id', c.padTokenId]] as const) {
    if (id >= c.vocabSize) bad(f, `${id} is outside the vocabulary (${c.vocabSize})`);
  }
}

/** Whether layer i (0-based) is an MoE layer. */
export function isMoeLayer(c: ModelConfig, i: number): boolean {
  return c.numExperts > 0 && (i + 1) % c.moeInterval === 0;
}

/** The Hugging Face config.json object for a config in its layout. */
export function configToHF(c: ModelConfig): Record<string, unknown> {
  const common = {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    max_position_embeddings: c.maxPositions,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    hidden_act: 'silu',
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    initializer_range: c.initializerRange,
    torch_dtype: 'float32',
  };
  // skymoe saves f32/bf16/f16 weights: a source checkpoint's FP8 quantization does not carry over.
  const { quantization_config: _q, ...extra } = c.extra ?? {};
  switch (c.layout) {
    case 'skywork':
      return {
        ...extra,
        architectures: ['SkyworkForCausalLM'],
        model_type: 'skywork',
        ...common,
        num_experts: Array(c.numLayers).fill(c.numExperts).slice(0, 1),
        moe_expert_interval: c.moeInterval,
        moe_use_logits_norm: c.logitsNorm,
        moe_gate_norm_std: c.gateNormStd,
        moe_2layer_gate: c.twoLayerGate,
        moe_use_skywork_gating: false,
        moe_feature_no_mul_topk: true,
        num_experts_per_tok: c.topK,
      };
    case 'mixtral':
      return {
        ...extra,
        architectures: ['MixtralForCausalLM'],
        model_type: 'mixtral',
        ...common,
        num_local_experts: c.numExperts,
        num_experts_per_tok: c.topK,
        router_aux_loss_coef: c.routerAuxLossCoef ?? 0.02,
      };
    case 'llama':
      return { ...extra, architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common };
  }
}
