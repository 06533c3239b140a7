/**
 * skymoe_kit.json, the contract between `skymoe export megatron`, the kit's Python plugin
 * (python/skymoe_megatron/kit.py reads `router`, `aux_loss` and `model`) and `skymoe import
 * megatron` (reads `model` and `hf`). The fields the plugin reads keep their names and meaning
 * across versions; the rest (parallel layout, predictions, provenance) is information for people.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

export const KIT_FILE = 'skymoe_kit.json';
export const KIT_FORMAT = 'skymoe-megatron-kit';
export const KIT_VERSION = 1;

/**
 * The Megatron-LM commit whose source the kit's scripts were written against: the flags of
 * pretrain.sh and convert.sh are checked against test/fixtures/megatron-lm-args.txt, extracted
 * from this commit by scripts/megatron-arg-names.py.
 */
export const MEGATRON_LM_COMMIT = 'd98e8a64ddf34856e74b24714e3bedb2f5a39553';

/** A refusal or a bad input of the Megatron kit, naming the flag, file or field at fault. */
export class MegatronKitError extends Error {
  override name = 'MegatronKitError';
  constructor(
    message: string,
    /** The flag, file or field at fault (e.g. '--gpus', 'KIT/skymoe_kit.json'). */
    readonly where?: string,
  ) {
    super(where ? `${where}: ${message}` : message);
  }
}

const finite = z.number().refine(Number.isFinite, 'expected a finite number');
const positive = finite.refine((x) => x > 0, 'expected a number > 0');
const nonNegative = finite.refine((x) => x >= 0, 'expected a number >= 0');

const routerSchema = z.object({
  num_experts: z.number().int().positive(),
  top_k: z.number().int().positive(),
  /** Gating logit normalization (report section 4.1): logits / (std(logits) / gate_norm_std). */
  logits_norm: z.boolean(),
  gate_norm_std: positive,
  /** Renormalize the k selected gate probabilities to sum to 1. */
  norm_topk_prob: z.boolean(),
});

const controllerSchema = z.object({
  /** skywork: the adaptive per-layer coefficient (report eqs. 7-9); fixed: alpha throughout. */
  kind: z.enum(['skywork', 'fixed']),
  alpha: nonNegative,
  xi: positive,
  alpha_max: nonNegative,
  beta: nonNegative.refine((x) => x <= 1, 'expected a number in [0, 1]'),
});

const auxLossSchema = z.looseObject({
  /** skywork: sum_j (1/E - mean_i p_ij)^2 (report eq. 4); switch: E sum_j f_j P_j; none. */
  type: z.enum(['skywork', 'switch', 'none']),
  controller: controllerSchema,
  /** capacity = ceil(capacity_factor * tokens * k / E) per expert; null: dropless. */
  capacity_factor: positive.nullable(),
  drop_policy: z.enum(['probability', 'position']),
});

/** Where the kit's Hugging Face weights are (null for a kit that trains from scratch). */
const hfSchema = z.looseObject({
  dir: z.string(),
  /** The layout hf/ is written in (what Megatron-LM's loader reads). */
  layout: z.literal('mixtral'),
  /** hf/config.json. */
  config: z.record(z.string(), z.unknown()),
  /** Megatron's embedding rows after convert.py pads the vocabulary (trimmed again on import). */
  padded_vocab_size: z.number().int().positive(),
});

export const kitSchema = z.looseObject({
  format: z.literal(KIT_FORMAT),
  version: z.literal(KIT_VERSION),
  router: routerSchema,
  aux_loss: auxLossSchema,
  /** The skymoe model's Hugging Face config.json, in its own layout (skywork: logit normalization included). */
  model: z.record(z.string(), z.unknown()),
  hf: hfSchema.nullable(),
});

export type KitRouter = z.infer<typeof routerSchema>;
export type KitAuxLoss = z.infer<typeof auxLossSchema>;
export type KitHf = z.infer<typeof hfSchema>;

/** The predicted figures of the planned layout (skymoe plan's step model). */
export interface KitPrediction {
  peak_memory_bytes: number;
  memory_capacity_bytes: number;
  tokens_per_gpu_second: number;
  mfu: number;
  step_seconds: number;
}

/** What `skymoe export megatron` writes; `kitSchema` checks the part `skymoe import megatron` reads. */
export interface KitConfig {
  format: typeof KIT_FORMAT;
  version: typeof KIT_VERSION;
  router: KitRouter;
  aux_loss: KitAuxLoss & { z_loss_coeff: number };
  model: Record<string, unknown>;
  hf: KitHf | null;
  /** The model's config.json in the Mixtral layout: what to_hf.py writes beside the trained weights. */
  mixtral_config: Record<string, unknown>;
  skymoe_version: string;
  megatron_lm_commit: string;
  created_at: string;
  source: {
    /** A model directory (possibly a training run's checkpoint), or a preset trained from scratch. */
    kind: 'model' | 'preset';
    name: string;
    /** The run.json whose options the kit took, when the model came from `skymoe train`. */
    run: string | null;
    step: number | null;
    /** The run's per-MoE-layer coefficients at that checkpoint (the plugin starts from `aux_loss.controller.alpha`). */
    alpha_per_layer: number[] | null;
  };
  parallel: {
    gpus: number;
    gpu: string;
    gpus_per_node: number;
    layout: string;
    tp: number;
    pp: number;
    dp: number;
    vp: number;
    ep: number;
    etp: number;
    expert_placement: string;
    stages: number[];
    recompute: string[];
    micro_batch: number;
    global_batch: number;
    seq: number;
    zero: number;
    precision: string;
  };
  predicted: KitPrediction;
  /** The Megatron-Core arguments of pretrain.sh's model and layout, and what the plugin adds. */
  megatron: { args: [string, string][]; added_by_plugin: string[]; notes: string[] };
}

/** Read and check KIT/skymoe_kit.json (the fields import needs; the rest is kept as read). */
export function readKit(kitDir: string): KitConfig {
  const path = join(kitDir, KIT_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new MegatronKitError(err.code === 'ENOENT' ? `not found (is ${kitDir} a kit written by skymoe export megatron?)` : `not valid JSON: ${err.message}`, path);
  }
  const r = kitSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new MegatronKitError(`field '${i.path.join('.') || '(top level)'}': ${i.message}`, path);
  }
  return r.data as unknown as KitConfig;
}
