/**
 * What a Megatron kit is made from: a model directory (a training run, one of its checkpoints, or
 * any Hugging Face model directory skymoe reads) or a preset trained from scratch; the training
 * options the kit carries over (the run's, or skymoe's trainer defaults); and what Megatron-Core
 * and the kit's way back through the Mixtral layout cannot express, refused with the reason.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { readConfig } from '../../io/hf.js';
import { configToHF, layoutRefusal, type ModelConfig } from '../../model/config.js';
import { preset } from '../../model/presets.js';
import { DEFAULT_TRAIN } from '../../train/run.js';
import type { TrainOptions } from '../../train/trainer.js';
import { MegatronKitError } from './kit-config.js';

export interface KitSource {
  kind: 'model' | 'preset';
  /** The directory or preset name as given. */
  name: string;
  cfg: ModelConfig;
  /** The Hugging Face model directory holding the weights and tokenizer (null for a preset). */
  modelDir: string | null;
  /** The training options carried into the kit: the run's when the model came from `skymoe train`, else the trainer's defaults. */
  train: TrainOptions;
  run: string | null;
  step: number | null;
  /** The run's coefficient per MoE layer at that checkpoint (state.json), when known. */
  alphaPerLayer: number[] | null;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new MegatronKitError(`not readable JSON: ${(e as Error).message}`, path);
  }
}

/** A run directory's latest checkpoint (RUN/checkpoints/latest.json). */
function latestCheckpoint(runDir: string): string {
  const latestPath = join(runDir, 'checkpoints', 'latest.json');
  const latest = readJson(latestPath);
  if (typeof latest.dir !== 'string' || !/^step-\d+$/.test(latest.dir)) throw new MegatronKitError("field 'dir' must name a step-NNNNNN directory", latestPath);
  return join(runDir, 'checkpoints', latest.dir);
}

/** The run's options on top of the trainer's defaults (controller field by field, as a resume merges them). */
function runOptions(runPath: string): TrainOptions {
  const run = readJson(runPath);
  const o = (run.options ?? {}) as Partial<TrainOptions>;
  return { ...DEFAULT_TRAIN, ...o, controller: { ...DEFAULT_TRAIN.controller, ...(o.controller ?? {}) } };
}

/** The step and per-layer coefficients of a checkpoint's state.json (absent or unreadable: nulls). */
function checkpointState(dir: string): { step: number | null; alpha: number[] | null } {
  const path = join(dir, 'state.json');
  if (!existsSync(path)) return { step: null, alpha: null };
  const s = readJson(path) as { step?: unknown; controller?: { alpha?: unknown } };
  const alpha = Array.isArray(s.controller?.alpha) && s.controller.alpha.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (s.controller.alpha as number[]) : null;
  return { step: Number.isInteger(s.step) ? (s.step as number) : null, alpha };
}

/**
 * Resolve `--model DIR` or `--preset NAME`. DIR may be a training run (its latest checkpoint is
 * used), a run's checkpoint directory (RUN/checkpoints/step-N: the run's options are used), or a
 * model directory (the trainer's defaults are used).
 */
export function resolveSource(o: { model?: string; preset?: string }): KitSource {
  if ((o.model === undefined) === (o.preset === undefined)) throw new MegatronKitError('give the model: --model DIR (a model directory or a skymoe training run) or --preset NAME (trained from scratch), one of them', '--model');
  if (o.preset !== undefined) {
    let cfg: ModelConfig;
    try {
      cfg = preset(o.preset);
    } catch (e) {
      throw new MegatronKitError((e as Error).message, '--preset');
    }
    return { kind: 'preset', name: o.preset, cfg, modelDir: null, train: DEFAULT_TRAIN, run: null, step: null, alphaPerLayer: null };
  }
  const given = o.model!;
  if (!existsSync(given) || !statSync(given).isDirectory()) throw new MegatronKitError('not found (expected a model directory or a skymoe training run)', given);
  let modelDir = given;
  let runPath: string | null = null;
  if (existsSync(join(given, 'run.json')) && !existsSync(join(given, 'config.json'))) {
    if (!existsSync(join(given, 'checkpoints', 'latest.json'))) throw new MegatronKitError('a training run without a checkpoint yet (no checkpoints/latest.json): train it first, or give a model directory', given);
    runPath = join(given, 'run.json');
    modelDir = latestCheckpoint(given);
  } else {
    // RUN/checkpoints/step-N: the run's options are two levels up
    const up = join(dirname(dirname(resolve(given))), 'run.json');
    if (/^step-\d+$/.test(basename(resolve(given))) && basename(dirname(resolve(given))) === 'checkpoints' && existsSync(up)) runPath = up;
  }
  if (!existsSync(join(modelDir, 'config.json'))) throw new MegatronKitError('no config.json: not a model directory (nor a skymoe training run with run.json and checkpoints/)', modelDir);
  const cfg = readConfig(modelDir);
  const state = runPath ? checkpointState(modelDir) : { step: null, alpha: null };
  return { kind: 'model', name: given, cfg, modelDir, train: runPath ? runOptions(runPath) : DEFAULT_TRAIN, run: runPath, step: state.step, alphaPerLayer: state.alpha };
}

/** The model as the Mixtral layout says it: the same weights, without the Skywork-only router settings the kit carries instead. */
export function mixtralTwin(cfg: ModelConfig): ModelConfig {
  return { ...cfg, layout: 'mixtral', logitsNorm: false, gateNormStd: 1, extra: {} };
}

/**
 * Why this model or these training options cannot go through the kit (null: they can). The kit's
 * weights travel in the Hugging Face Mixtral layout (what Megatron-LM's loader_mixtral_hf reads and
 * the way back writes); the router settings Mixtral has no field for travel in skymoe_kit.json.
 */
export function kitRefusal(cfg: ModelConfig, train: TrainOptions): string | null {
  if (cfg.numExperts === 0) return `a dense ${cfg.layout} model: the kit trains MoE models (Megatron-LM's loader_mixtral_hf reads Mixtral MoE checkpoints); a dense model needs no skymoe router`;
  if (cfg.qkNorm !== 'none') return `the ${cfg.layout} layout's q/k norm (${cfg.qkNorm === 'head' ? 'per head' : 'over the whole projection'}): the Mixtral layout and loader_mixtral_hf have none, and this kit carries weights in the Mixtral layout (Megatron-Bridge's Qwen3-MoE and OLMoE bridges read those layouts directly; this kit does not use them)`;
  if (cfg.twoLayerGate) return "the 2-layer gate Linear(H, 8E) -> tanh -> Linear(8E, E) (moe_2layer_gate): Megatron-Core's TopKRouter is one Linear(H, E) (router.weight), and neither its checkpoint nor the Mixtral layout has a place for a second gate layer";
  if (cfg.tieWordEmbeddings) return "tied input and output embeddings (tie_word_embeddings): Megatron-LM's loader_mixtral_hf always unties them (untie_embeddings_and_output_weights = True), so the model would train as a different one";
  if (cfg.headDim * cfg.numHeads !== cfg.hiddenSize) return `head_dim ${cfg.headDim} with ${cfg.numHeads} heads and hidden_size ${cfg.hiddenSize}: loader_mixtral_hf splits q/k/v with kv_channels = hidden_size / num_attention_heads = ${cfg.hiddenSize / cfg.numHeads}`;
  if (cfg.moeInterval !== 1 || cfg.mlpOnlyLayers.length) return `dense layers among the MoE layers (moe_expert_interval ${cfg.moeInterval}${cfg.mlpOnlyLayers.length ? `, mlp_only_layers [${cfg.mlpOnlyLayers}]` : ''}): loader_mixtral_hf makes every layer an MoE layer, and the Mixtral layout has no field for it`;
  const refusal = layoutRefusal(mixtralTwin(cfg), 'mixtral');
  if (refusal) return refusal;
  if (train.controller.kind === 'bias') return "aux-loss-free bias balancing (--aux bias): the kit's router implements the skywork and fixed coefficients; Megatron-Core's --moe-router-enable-expert-bias works with sigmoid scores only";
  if (train.controller.kind === 'skywork' && train.auxLoss !== 'none' && train.capacityFactor === null) return 'the adaptive coefficient (skywork controller) without a capacity (--dropless): it adapts to the token-drop rate, which is always 0 without a capacity factor';
  return null;
}

/** The skymoe model's config.json (its own layout, logit normalization included): the kit's `model` field. */
export function modelConfigJson(cfg: ModelConfig): Record<string, unknown> {
  return configToHF(cfg);
}
