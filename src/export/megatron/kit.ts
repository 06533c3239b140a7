/**
 * `skymoe export megatron`: a directory that trains a skymoe model on Megatron-Core with the
 * report's router techniques, in the layout `skymoe plan` chose (see kit-config.ts for
 * skymoe_kit.json, scripts.ts for the scripts, readme.ts for the kit's README).
 *
 *   KIT/skymoe_kit.json     the router and aux-loss settings, the model config, the layout, predictions
 *   KIT/hf/                 the weights in the Mixtral layout, config.json, tokenizer (a model; absent for a preset)
 *   KIT/skymoe_megatron/    the plugin (a copy of python/skymoe_megatron)
 *   KIT/convert.sh          hf/ -> Megatron torch_dist (a model only)
 *   KIT/pretrain.sh         torchrun with the planner's arguments and the kit's
 *   KIT/pretrain_skymoe.py  install() the plugin, then Megatron-LM's pretrain_gpt.py
 *   KIT/to_hf.py            the way back: Megatron torch_dist -> Hugging Face Mixtral safetensors
 *   KIT/README.md
 *
 * The kit is built in a temporary directory beside --out and renamed into place: an interrupted
 * export leaves no partial kit, and an existing kit is replaced only with `force`.
 */
import { chmodSync, cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeJsonAtomic } from '../../io/hf.js';
import { loadTokenizer } from '../../io/tokenizer/index.js';
import { configToHF } from '../../model/config.js';
import { shapeOf } from '../../parallel/planner/flops.js';
import type { Cluster } from '../../parallel/planner/gpus.js';
import { megatronArgs } from '../../parallel/planner/megatron.js';
import type { TrainingSetup } from '../../parallel/planner/setup.js';
import type { Evaluation } from '../../parallel/planner/step.js';
import { type KitConfig, KIT_FILE, KIT_FORMAT, KIT_VERSION, MEGATRON_LM_COMMIT, MegatronKitError } from './kit-config.js';
import { checkOutDir, writeDirAtomically } from './out-dir.js';
import { kitReadme } from './readme.js';
import { convertScript, converterLayout, paddedVocab, pretrainEntry, pretrainScript, sections } from './scripts.js';
import { type KitSource, kitRefusal, mixtralTwin, modelConfigJson } from './source.js';
import { copyTokenizerFiles, copyWeights, TORCH_DTYPE } from './weights.js';

const ROOT = new URL('../../../../', import.meta.url);

/** The plugin package and the way-back script shipped with skymoe (package.json "files": python). */
export const PLUGIN_DIR = fileURLToPath(new URL('python/skymoe_megatron/', ROOT));
export const TO_HF_SCRIPT = fileURLToPath(new URL('python/to_hf.py', ROOT));

function skymoeVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The layout the kit trains in: `skymoe plan`'s choice (cli/plan.ts trainingPlan) and its predictions. */
export interface KitPlan {
  cluster: Cluster;
  setup: TrainingSetup;
  evaluation: Evaluation;
  layoutText: string;
}

export interface ExportMegatronOptions {
  source: KitSource;
  plan: KitPlan;
  out: string;
  /** Replace an existing non-empty --out. */
  force?: boolean;
  /** One line per stage of the export (the CLI prints them). */
  onProgress?: (line: string) => void;
  /** Where the plugin package and to_hf.py are (default: the ones shipped with skymoe). */
  pluginDir?: string;
  toHfScript?: string;
}

export interface ExportMegatronResult {
  dir: string;
  kit: KitConfig;
  files: string[];
}

/** What the plugin adds of the planner's "what Megatron-Core has no flag for". */
const PLUGIN_ADDS = /gating logit normalization|adaptive auxiliary-loss coefficient|Skywork's aux loss form/;

/** Copy a directory tree without Python caches. */
function copyTree(src: string, dst: string): void {
  cpSync(src, dst, { recursive: true, filter: (p) => !/(^|[\\/])(__pycache__|.*\.pyc)$/.test(p) });
}

/**
 * Write the kit. Refused before anything is written: what kitRefusal names, an --out in use, a
 * model without a tokenizer, a missing plugin package.
 * @example
 * ```ts
 * const r = exportMegatronKit({ source: resolveSource({ preset: 'skywork-moe-146b' }), plan, out: 'kit-146b' });
 * r.files; // ['README.md', 'pretrain.sh', ...]
 * ```
 */
export async function exportMegatronKit(o: ExportMegatronOptions): Promise<ExportMegatronResult> {
  const { source: src, plan } = o;
  const cfg = src.cfg, t = src.train;
  const say = o.onProgress ?? (() => {});
  const refusal = kitRefusal(cfg, t);
  if (refusal) throw new MegatronKitError(`cannot be trained through the Megatron kit: ${refusal}`, src.kind === 'preset' ? `--preset ${src.name}` : src.name);
  const pluginDir = o.pluginDir ?? PLUGIN_DIR, toHf = o.toHfScript ?? TO_HF_SCRIPT;
  if (!existsSync(join(pluginDir, '__init__.py'))) throw new MegatronKitError('the skymoe_megatron plugin package is missing from this installation (expected __init__.py there)', pluginDir);
  if (!existsSync(toHf)) throw new MegatronKitError('the way-back script is missing from this installation', toHf);
  const out = resolve(o.out);
  checkOutDir(out, o.force ?? false);
  if (src.modelDir && !existsSync(join(src.modelDir, 'tokenizer.json')) && !existsSync(join(src.modelDir, 'tokenizer.model'))) {
    throw new MegatronKitError("no tokenizer (tokenizer.json or tokenizer.model): Megatron's HuggingFaceTokenizer and the data preprocessing need the model's own", src.modelDir);
  }

  const { cluster: c, setup: s, evaluation: e } = plan;
  const l = e.layout;
  const m = shapeOf(cfg, src.name);
  const converter = src.modelDir ? converterLayout(l, cfg.numLayers, cfg.numExperts, c.gpus, c.gpusPerNode) : null;
  // Megatron pads the vocabulary to a multiple of 128 x TP (convert.py at the converter's TP, which is the plan's):
  // the model's own vocab_size, padded, whatever the tokenizer's size, so the way back finds the kit's model
  const padded = paddedVocab(cfg.vocabSize, l.tp);
  const exported = megatronArgs(m, s, l, cfg, { auxLossCoeff: t.controller.alpha, capacityFactor: t.capacityFactor, dropPolicy: t.dropPolicy === 'position' ? 'position' : 'probs' });
  // the plugin computes the aux loss (its form and per-layer coefficient): Megatron adds none of its own
  const args: [string, string][] = exported.args.filter(([f]) => f !== '--moe-aux-loss-coeff').map(([f, v]) => [f, f === '--moe-router-load-balancing-type' ? 'none' : v]);
  if (t.zLossCoef > 0) args.push(['--moe-z-loss-coeff', String(t.zLossCoef)]);
  args.push(['--padded-vocab-size', String(padded)]);
  const grouped = sections(args);
  const mixtralConfig = configToHF(mixtralTwin(cfg));

  let kit!: KitConfig;
  const files = await writeDirAtomically(out, async (tmp) => {
    let hf: KitConfig['hf'] = null;
    if (src.modelDir) {
      const hfDir = join(tmp, 'hf');
      say(`hf/: copying the weights of ${src.modelDir} into the Mixtral layout`);
      const copied = copyWeights(src.modelDir, hfDir, cfg, { onProgress: (done, total) => (done === total || done % 50 === 0) && say(`hf/: ${done}/${total} tensors`) });
      const hfConfig = { ...mixtralConfig, torch_dtype: TORCH_DTYPE[copied.dtype] };
      writeJsonAtomic(join(hfDir, 'config.json'), hfConfig);
      const tokFiles = copyTokenizerFiles(src.modelDir, hfDir);
      if (!tokFiles.includes('generation_config.json')) writeJsonAtomic(join(hfDir, 'generation_config.json'), { bos_token_id: cfg.bosTokenId, eos_token_id: cfg.eosTokenId, pad_token_id: cfg.padTokenId });
      const tok = await loadTokenizer(hfDir);
      if (tok.vocabSize > cfg.vocabSize) throw new MegatronKitError(`the tokenizer has ${tok.vocabSize} tokens, more than the model's vocab_size ${cfg.vocabSize}`, src.modelDir);
      say(`hf/: ${copied.tensors} tensors (${copied.dtype}, ${(copied.bytes / 1e6).toFixed(1)} MB), config.json (MixtralForCausalLM), ${tokFiles.join(', ')}`);
      hf = { dir: 'hf', layout: 'mixtral', config: hfConfig, padded_vocab_size: padded };
    }

    kit = {
      format: KIT_FORMAT,
      version: KIT_VERSION,
      router: { num_experts: cfg.numExperts, top_k: cfg.topK, logits_norm: cfg.logitsNorm, gate_norm_std: cfg.gateNormStd, norm_topk_prob: cfg.normTopK },
      aux_loss: {
        type: t.auxLoss,
        controller: { kind: t.controller.kind as 'skywork' | 'fixed', alpha: t.controller.alpha, xi: t.controller.xi, alpha_max: t.controller.alphaMax, beta: t.controller.beta },
        capacity_factor: t.capacityFactor,
        drop_policy: t.dropPolicy,
        z_loss_coeff: t.zLossCoef,
      },
      model: modelConfigJson(cfg),
      hf,
      mixtral_config: mixtralConfig,
      skymoe_version: skymoeVersion(),
      megatron_lm_commit: MEGATRON_LM_COMMIT,
      created_at: new Date().toISOString(),
      source: { kind: src.kind, name: src.name, run: src.run, step: src.step, alpha_per_layer: src.alphaPerLayer },
      parallel: {
        gpus: c.gpus, gpu: c.gpu.name, gpus_per_node: c.gpusPerNode, layout: plan.layoutText,
        tp: l.tp, pp: l.pp, dp: l.dp, vp: l.vp, ep: l.ep, etp: l.etp, expert_placement: l.expert, stages: l.stages, recompute: l.recompute,
        micro_batch: l.microBatch, global_batch: s.globalBatch, seq: s.seq, zero: s.zero, precision: s.precision,
      },
      predicted: { peak_memory_bytes: e.peakMemory, memory_capacity_bytes: c.gpu.memoryBytes, tokens_per_gpu_second: e.tokensPerGpuSecond, mfu: e.mfu, step_seconds: e.time.step },
      megatron: { args, added_by_plugin: exported.missing.filter((x) => PLUGIN_ADDS.test(x.feature)).map((x) => x.feature), notes: exported.notes },
    };
    writeJsonAtomic(join(tmp, KIT_FILE), kit);

    copyTree(pluginDir, join(tmp, 'skymoe_megatron'));
    copyTree(toHf, join(tmp, 'to_hf.py'));
    const kitName = src.kind === 'preset' ? `the ${src.name} preset` : src.name;
    const script = (name: string, text: string) => {
      writeFileSync(join(tmp, name), text);
      chmodSync(join(tmp, name), 0o755);
    };
    script('pretrain.sh', pretrainScript({ kitName, args: grouped, gpusPerNode: c.gpusPerNode, nodes: c.gpus / c.gpusPerNode, train: t, weights: hf !== null, tokenizerInKit: hf ? 'hf' : null, trainFrom: src.run ? `the skymoe run ${src.run}` : "skymoe train's defaults" }));
    script('pretrain_skymoe.py', pretrainEntry());
    if (converter) script('convert.sh', convertScript({ kitName, args: grouped, converter }));
    const left = exported.missing.filter((x) => !PLUGIN_ADDS.test(x.feature)).map((x) => `${x.feature}: ${x.add}`);
    writeFileSync(join(tmp, 'README.md'), kitReadme({ kit, converter, notes: exported.notes, left }));
    say(`skymoe_kit.json, skymoe_megatron/, pretrain.sh, pretrain_skymoe.py${converter ? ', convert.sh' : ''}, to_hf.py, README.md`);
  });
  return { dir: out, kit, files };
}
