/** The kit's README.md: the layout and its predicted figures, the steps, what was verified and what needs a cluster. */
import type { KitConfig } from './kit-config.js';
import { MEGATRON_LM_COMMIT } from './kit-config.js';
import type { ConverterLayout } from './scripts.js';

const gb = (b: number) => `${(b / 1e9).toFixed(1)} GB`;

export interface ReadmeInput {
  kit: KitConfig;
  converter: ConverterLayout | null;
  /** The planner's notes and the features left for the user (beyond what the plugin adds). */
  notes: string[];
  left: string[];
}

export function kitReadme(r: ReadmeInput): string {
  const k = r.kit, p = k.parallel, f = k.predicted;
  const weights = k.hf !== null;
  const ctl = k.aux_loss.controller;
  const lines: string[] = [];
  const push = (...s: string[]) => lines.push(...s);
  push(`# Megatron-Core training kit: ${k.source.name}`, '');
  push(`Written by \`skymoe export megatron\` (skymoe ${k.skymoe_version}) on ${k.created_at.slice(0, 10)}, against Megatron-LM commit`);
  push(`[\`${MEGATRON_LM_COMMIT.slice(0, 12)}\`](https://github.com/NVIDIA/Megatron-LM/commit/${MEGATRON_LM_COMMIT}). ${weights ? `It continues training the model in \`${k.source.name}\`${k.source.step !== null ? ` (step ${k.source.step})` : ''}.` : `It trains the \`${k.source.name}\` preset from scratch (random initialization: there are no weights to convert).`}`, '');
  push('| file | what |', '|---|---|');
  push('| `skymoe_kit.json` | the router and aux-loss settings the plugin reads, the skymoe model config (for the way back), the layout and its predictions |');
  if (weights) push('| `hf/` | the weights in the Hugging Face Mixtral layout (what Megatron-LM\'s `loader_mixtral_hf` reads), with the tokenizer |');
  push('| `skymoe_megatron/` | the plugin: `install()` patches Megatron-Core\'s `TopKRouter` (its README states the Megatron-Core versions) |');
  if (weights) push('| `convert.sh` | `hf/` -> a Megatron-Core `torch_dist` checkpoint (`megatron/torch_dist`) |');
  push('| `pretrain.sh` | torchrun of `pretrain_skymoe.py` with the planned layout; edit the variables at the top |');
  push('| `pretrain_skymoe.py` | `skymoe_megatron.install()`, then Megatron-LM\'s `pretrain_gpt.py` |');
  push('| `to_hf.py` | the way back: a trained `torch_dist` checkpoint -> Hugging Face Mixtral safetensors for `skymoe import megatron` |', '');

  push('## The layout', '');
  push(`\`skymoe plan\` chose \`${p.layout}\` for ${p.gpus} x ${p.gpu} (${p.gpus_per_node} per node), sequences of ${p.seq} tokens, a global batch of ${p.global_batch} sequences (${((p.global_batch * p.seq) / 1e6).toFixed(2)}M tokens), ${p.precision}, ${p.zero === 1 ? 'ZeRO-1 (distributed optimizer)' : `ZeRO-${p.zero}`}:`, '');
  push('| | |', '|---|---|');
  push(`| tensor / pipeline / data parallel | ${p.tp} / ${p.pp}${p.vp > 1 ? ` (x${p.vp} virtual)` : ''} / ${p.dp} |`);
  push(`| experts | ${p.expert_placement.toUpperCase()}: expert parallel ${p.ep}, expert tensor parallel ${p.etp} |`);
  push(`| layers per pipeline stage | ${p.stages.join(', ')} |`);
  push(`| recomputation per stage | ${p.recompute.join(', ')} |`);
  push(`| micro-batch | ${p.micro_batch} |`, '');
  push('Predicted by skymoe\'s step model (docs/planner.md: validated against the published runs, e.g. Skywork-MoE\'s 690 tokens/GPU/s on 1536 A800):', '');
  push('| | |', '|---|---|');
  push(`| peak memory per GPU | ${gb(f.peak_memory_bytes)} of ${gb(f.memory_capacity_bytes)} |`);
  push(`| tokens/s per GPU | ${f.tokens_per_gpu_second.toFixed(0)} |`);
  push(`| MFU (bf16 peak) | ${(100 * f.mfu).toFixed(1)}% |`);
  push(`| step time | ${f.step_seconds.toFixed(2)} s |`, '');
  for (const n of r.notes) push(`- note: ${n}`);
  if (r.notes.length) push('');

  push('## The router (what Megatron-Core has no flag for; the plugin adds it)', '');
  push(`- ${k.router.num_experts} experts, top-${k.router.top_k}, softmax over all experts in fp32${k.router.norm_topk_prob ? ', the k weights renormalized to sum to 1' : ''}.`);
  push(k.router.logits_norm ? `- gating logit normalization (report section 4.1): logits / (std(logits) / ${k.router.gate_norm_std}) before the softmax (the Mixtral layout has no field for it: it lives in \`skymoe_kit.json\`, and \`skymoe import megatron\` restores it).` : '- no gating logit normalization.');
  push(`- aux loss: ${k.aux_loss.type === 'skywork' ? 'Skywork\'s sum_j (1/E - mean_i g_ij)^2 (report eq. 4)' : k.aux_loss.type === 'switch' ? 'the Switch form E sum_j f_j P_j' : 'none'}, weighted ${ctl.kind === 'skywork' ? `by the adaptive per-layer coefficient (report eqs. 7-9: xi ${ctl.xi}, alpha_max ${ctl.alpha_max}, beta ${ctl.beta}, starting at ${ctl.alpha}), updated after every step from each layer's token-drop rate over the data-parallel group` : `by ${ctl.alpha}`}.`);
  push(`- capacity: ${k.aux_loss.capacity_factor === null ? 'none (dropless)' : `factor ${k.aux_loss.capacity_factor}, an over-full expert drops by ${k.aux_loss.drop_policy}`}.${k.aux_loss.z_loss_coeff > 0 ? ` Router z-loss ${k.aux_loss.z_loss_coeff} (Megatron's --moe-z-loss-coeff).` : ''}`);
  push('- `pretrain.sh` passes `--moe-router-load-balancing-type none`: the plugin computes the aux loss itself, so Megatron adds none of its own.', '');
  if (r.left.length) {
    push('Not added by the plugin (add these yourself, or accept the difference):', '');
    for (const x of r.left) push(`- ${x}`);
    push('');
  }

  push('## Steps', '');
  push(`1. A Megatron-LM checkout and its environment (PyTorch, Transformer Engine, transformers): \`export MEGATRON_LM=/path/to/Megatron-LM\`. The scripts were written against commit \`${MEGATRON_LM_COMMIT.slice(0, 12)}\`; the plugin's README states the Megatron-Core versions it supports.`);
  push(`2. Tokenize your data with the kit's tokenizer${weights ? ' (`hf/`)' : ` (this kit has none: choose one of at most ${k.model.vocab_size} tokens, the model's vocab_size, and set TOKENIZER_MODEL; \`--padded-vocab-size\` keeps the embedding at the model's size so the way back finds the kit's model)`}:`, '');
  push('   ```', '   KIT=$(pwd)   # this kit', `   cd $MEGATRON_LM && python tools/preprocess_data.py --input corpus.jsonl --output-prefix /data/corpus \\`, `     --tokenizer-type HuggingFaceTokenizer --tokenizer-model ${weights ? '$KIT/hf' : '$TOKENIZER_MODEL'} --workers 32 --append-eod`, '   ```', '');
  if (weights) {
    const c = r.converter!;
    push(`3. \`./convert.sh\`: step 1 runs Megatron-LM's \`tools/checkpoint/convert.py --loader mixtral_hf --saver core\` on one machine (CPU) into the legacy format at TP ${c.tp}, PP ${c.pp}, EP ${c.ep}; step 2 loads that in a Megatron run on ${c.gpus} GPU${c.gpus === 1 ? '' : 's'} (set NNODES, NODE_RANK, MASTER_ADDR per node as for training) and saves \`megatron/torch_dist\`, which Megatron reshards into the planned layout on load. \`STEP=1\` or \`STEP=2\` runs one of them.`);
  } else push('3. Nothing to convert: training starts from random weights.');
  push(`4. On each of the ${p.gpus / p.gpus_per_node} nodes: \`DATA_PATH=/data/corpus_text_document TRAIN_ITERS=... NODE_RANK=i MASTER_ADDR=node0 ./pretrain.sh\` (\`MOCK_DATA=1\` for a smoke test on random tokens). Checkpoints go to \`checkpoints/\`; a restart resumes from them${weights ? '; the first start loads `megatron/torch_dist` (`--pretrained-checkpoint`)' : ''}.`);
  push('5. The way back, in the kit directory: `python to_hf.py --load checkpoints --out trained-hf` (needs PyTorch and Megatron-LM\'s `tools/checkpoint/dist_checkpoint_io.py`, found through MEGATRON_LM; CPU only) writes the trained weights in the Hugging Face Mixtral layout. Megatron-LM\'s convert.py has no Hugging Face saver for GPT models, and Megatron-Bridge had no Mixtral bridge on its main branch when this was written (one is on a feature branch); either of those exports, when you have one, works the same in the next step.');
  push('6. `skymoe import megatron --hf trained-hf --kit . --out model` gives a skymoe model directory again (the original layout, logit normalization restored): `skymoe generate`, `serve`, `quantize` read it.', '');

  push('## What was verified, and what needs a GPU cluster', '');
  push(`Verified by skymoe's tests (docs/megatron.md names them): the kit's files are complete;${weights ? " `hf/` holds the model's tensors byte for byte, and `hf/` read back with `skymoe_kit.json` gives the original model's logits bit for bit;" : ''} every flag in the scripts is a flag of Megatron-LM at the commit above (extracted from its \`arguments.py\`, \`tools/checkpoint/\` and \`tools/preprocess_data.py\`); the scripts parse (\`bash -n\`); \`to_hf.py\` turns a Megatron-Core state dict of the model (in the key forms a checkpoint carries, the layout checked against Megatron-LM's own loader_mixtral_hf) back into these weights exactly; the plugin's router math equals skymoe's under PyTorch.`);
  push(`Not verified (needs GPUs and a Megatron-LM installation): ${weights ? 'convert.sh, ' : ''}pretrain.sh and to_hf.py running against Megatron-LM (to_hf.py's reading of a real torch_dist checkpoint through Megatron's dist_checkpoint_io included), the predicted memory and throughput on this cluster, and training quality.`);
  return `${lines.join('\n')}\n`;
}
