/**
 * The kit's scripts: pretrain.sh (torchrun of Megatron-LM's pretrain_gpt.py, through
 * pretrain_skymoe.py which installs the skymoe router first, with the planner's arguments and the
 * kit's), convert.sh (hf/ -> a Megatron-Core checkpoint pretrain.sh loads) and pretrain_skymoe.py.
 * Every flag is a Megatron-LM flag at MEGATRON_LM_COMMIT (test/export/megatron-args.test.ts
 * checks them against the list extracted from that commit's source).
 *
 * Why convert.sh has two steps (read in Megatron-LM's tools/checkpoint at that commit):
 * convert.py's core saver writes the legacy `torch` format (saver_base.py: `--ckpt-format torch`,
 * "only 'torch' supported for conversion") with layers split evenly over the pipeline, the experts'
 * tensor parallelism equal to TP and each expert as SequentialMLP's local_experts; a legacy
 * checkpoint loads only into that exact layout. So step 1 converts at the plan's TP and EP on a
 * pipeline size that divides the layers, and step 2 loads it in a short Megatron run at that layout
 * and saves it as `torch_dist` (--ckpt-convert-format), which Megatron reshards on load into the
 * planned layout (uneven stages, EP/ETP, grouped GEMM) through --pretrained-checkpoint.
 */
import type { Layout } from '../../parallel/planner/setup.js';
import type { TrainOptions } from '../../train/trainer.js';
import { MEGATRON_LM_COMMIT } from './kit-config.js';

/** torchrun's own flags (torch.distributed.run; the underscore forms work in every torch version). */
export const TORCHRUN_FLAGS = ['--nproc_per_node', '--nnodes', '--node_rank', '--master_addr', '--master_port'];

/** Flags that place the model on the GPUs (the rest describe the model, its router and precision). */
const PARALLEL = /^--(tensor-model-parallel-size|sequence-parallel|pipeline-model-parallel-size|pipeline-model-parallel-layout|decoder-(first|last)-pipeline-num-layers|num-layers-per-virtual-pipeline-stage|micro-batch-size|global-batch-size|use-distributed-optimizer|use-megatron-fsdp|data-parallel-sharding-strategy|overlap-grad-reduce|overlap-param-gather|tp-comm-overlap|recompute-.*|expert-model-parallel-size|expert-tensor-parallel-size|moe-token-dispatcher-type)$/;
const MOE = /^--(num-experts|moe-.*)$/;
const PRECISION = /^--(bf16|fp8-format)$/;

export interface ArgSections {
  model: [string, string][];
  moe: [string, string][];
  parallel: [string, string][];
  precision: [string, string][];
}

/** The planner's arguments, grouped as pretrain.sh lists them. */
export function sections(args: [string, string][]): ArgSections {
  const s: ArgSections = { model: [], moe: [], parallel: [], precision: [] };
  for (const a of args) (PARALLEL.test(a[0]) ? s.parallel : MOE.test(a[0]) ? s.moe : PRECISION.test(a[0]) ? s.precision : s.model).push(a);
  return s;
}

/** `NAME=(\n  --flag value\n  ...\n)`; values are numbers, the planner's quoted strings or shell expansions. */
function bashArray(name: string, args: [string, string][], comment?: string): string {
  const lines = args.map(([f, v]) => `  ${f}${v === '' ? '' : ` ${/^[\w.+-]+$|^".*"$/.test(v) ? v : `"${v}"`}`}`);
  return `${comment ? `# ${comment}\n` : ''}${name}=(\n${lines.join('\n')}\n)`;
}

export interface ConverterLayout {
  tp: number;
  pp: number;
  ep: number;
  /** GPUs of step 2 (tp x pp x ep: data parallel = ep) and how they fill nodes. */
  gpus: number;
  gpusPerNode: number;
}

/**
 * The layout convert.py writes: the plan's TP and EP, the largest pipeline size not above the
 * plan's that divides the layers (convert.py splits layers evenly), and the experts over fewer
 * ranks if the plan's EP would need more GPUs than the cluster has.
 */
export function converterLayout(l: Layout, layers: number, experts: number, gpus: number, gpusPerNode: number): ConverterLayout {
  let pp = Math.min(l.pp, layers);
  while (layers % pp !== 0) pp--;
  let ep = l.ep;
  while (ep > 1 && (l.tp * pp * ep > gpus || experts % ep !== 0)) ep--;
  const world = l.tp * pp * ep;
  return { tp: l.tp, pp, ep, gpus: world, gpusPerNode: Math.min(gpusPerNode, world) };
}

/** The vocabulary rows after convert.py pads it (vocab_size_with_padding: a multiple of 128 x TP, Megatron's default --make-vocab-size-divisible-by). */
export function paddedVocab(vocab: number, tp: number): number {
  const multiple = 128 * tp;
  return Math.ceil(vocab / multiple) * multiple;
}

const header = (what: string, kitName: string) => `#!/usr/bin/env bash
# ${what}
# Written by skymoe export megatron for ${kitName}, against Megatron-LM commit ${MEGATRON_LM_COMMIT}
# (github.com/NVIDIA/Megatron-LM). Settings are variables below: set them in the environment or edit them here.
set -euo pipefail
KIT="$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
: "\${MEGATRON_LM:?set MEGATRON_LM to a Megatron-LM checkout (written against commit ${MEGATRON_LM_COMMIT.slice(0, 12)}; see README.md)}"`;

const LAUNCH = (gpusPerNode: number, nodes: number) => `GPUS_PER_NODE="\${GPUS_PER_NODE:-${gpusPerNode}}"
NNODES="\${NNODES:-${nodes}}"
NODE_RANK="\${NODE_RANK:-0}"            # 0 .. NNODES-1: run this script once on every node
MASTER_ADDR="\${MASTER_ADDR:-localhost}" # the address of node 0
MASTER_PORT="\${MASTER_PORT:-6000}"
LAUNCH=(torchrun --nproc_per_node "$GPUS_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")`;

export interface PretrainInput {
  kitName: string;
  args: ArgSections;
  gpusPerNode: number;
  nodes: number;
  train: TrainOptions;
  /** convert.sh's output is loaded (a kit with weights); false: the model starts from random weights. */
  weights: boolean;
  /** The tokenizer directory inside the kit, or null when the user must name one. */
  tokenizerInKit: string | null;
  /** Where the training defaults come from, e.g. "the run in runs/x" or "skymoe train's defaults". */
  trainFrom: string;
}

/** LR schedule flags for the run's schedule (skymoe's wsd: linear decay over the last 20% of the steps). */
function scheduleArgs(t: TrainOptions): [string, string][] {
  if (t.schedule === 'constant') return [['--lr-decay-style', 'constant']];
  if (t.schedule === 'wsd') return [['--lr-decay-style', 'WSD'], ['--lr-wsd-decay-style', 'linear'], ['--lr-wsd-decay-iters', '"$((TRAIN_ITERS / 5))"']];
  return [['--lr-decay-style', 'cosine']];
}

export function pretrainScript(p: PretrainInput): string {
  const t = p.train;
  const training: [string, string][] = [
    ['--train-iters', '"$TRAIN_ITERS"'],
    ['--lr', '"$LR"'],
    ['--min-lr', '"$MIN_LR"'],
    ['--lr-warmup-iters', '"$WARMUP_ITERS"'],
    ...scheduleArgs(t),
    ['--weight-decay', String(t.weightDecay)],
    ['--adam-beta1', String(t.beta1)],
    ['--adam-beta2', String(t.beta2)],
    ['--clip-grad', String(t.clip)],
    ['--seed', String(t.seed)],
  ];
  const checkpoints: [string, string][] = [['--save', '"$CHECKPOINTS"'], ['--load', '"$CHECKPOINTS"'], ['--save-interval', '"$SAVE_INTERVAL"']];
  if (p.weights) checkpoints.push(['--pretrained-checkpoint', '"$PRETRAINED"']);
  return `${header('Train on Megatron-Core with skymoe\'s router (gating logit normalization, the Skywork aux loss, the adaptive coefficient).', p.kitName)}

# --- data and tokenizer ---
# DATA_PATH: the prefix tools/preprocess_data.py wrote (e.g. /data/corpus_text_document), or
# "w1 prefix1 w2 prefix2" for a blend. MOCK_DATA=1 trains on random tokens instead (a smoke test).
DATA_PATH="\${DATA_PATH:-}"
MOCK_DATA="\${MOCK_DATA:-0}"
SPLIT="\${SPLIT:-99,1,0}"
${p.tokenizerInKit ? `TOKENIZER_MODEL="\${TOKENIZER_MODEL:-$KIT/${p.tokenizerInKit}}"   # a Hugging Face tokenizer directory` : `: "\${TOKENIZER_MODEL:?set TOKENIZER_MODEL to a Hugging Face tokenizer directory (this kit trains from scratch and has none)}"`}

# --- the run (defaults: ${p.trainFrom}; set your own for your scale) ---
: "\${TRAIN_ITERS:?set TRAIN_ITERS to the optimizer steps to train (one step = the global batch of the layout)}"
LR="\${LR:-${t.lr}}"
MIN_LR="\${MIN_LR:-${t.minLr}}"
WARMUP_ITERS="\${WARMUP_ITERS:-${t.warmup}}"
CHECKPOINTS="\${CHECKPOINTS:-$KIT/checkpoints}"  # this run's checkpoints: resumed from when present
SAVE_INTERVAL="\${SAVE_INTERVAL:-1000}"
EVAL_INTERVAL="\${EVAL_INTERVAL:-1000}"
EVAL_ITERS="\${EVAL_ITERS:-10}"
${p.weights ? 'PRETRAINED="${PRETRAINED:-$KIT/megatron/torch_dist}"     # written by convert.sh: the starting weights when CHECKPOINTS has none\n' : '# no starting weights: the model starts from Megatron\'s random initialization (--init-method-std below)\n'}
# --- the cluster (the planned layout needs ${p.gpusPerNode * p.nodes} GPUs) ---
${LAUNCH(p.gpusPerNode, p.nodes)}

${bashArray('MODEL_ARGS', p.args.model, 'the model (skymoe plan)')}

${bashArray('MOE_ARGS', p.args.moe, "the MoE layers; the router and its aux loss are skymoe's (installed by pretrain_skymoe.py from skymoe_kit.json)")}

${bashArray('PARALLEL_ARGS', p.args.parallel, 'the layout skymoe plan chose (README.md: why, and its predicted memory and throughput)')}

${bashArray('PRECISION_ARGS', p.args.precision)}

${bashArray('TRAINING_ARGS', training)}

DATA_ARGS=(--tokenizer-type HuggingFaceTokenizer --tokenizer-model "$TOKENIZER_MODEL" --split "$SPLIT")
if [ "$MOCK_DATA" = 1 ]; then
  DATA_ARGS+=(--mock-data)
else
  : "\${DATA_PATH:?set DATA_PATH to your tokenized data (tools/preprocess_data.py, see README.md), or MOCK_DATA=1}"
  # shellcheck disable=SC2206 # a blend is several words
  DATA_ARGS+=(--data-path $DATA_PATH)
fi

${bashArray('CHECKPOINT_ARGS', checkpoints)}

LOGGING_ARGS=(--log-interval 1 --log-throughput --eval-interval "$EVAL_INTERVAL" --eval-iters "$EVAL_ITERS")

export CUDA_DEVICE_MAX_CONNECTIONS=1  # Megatron's requirement for overlapping TP communication with compute
export PYTHONPATH="$MEGATRON_LM:$KIT\${PYTHONPATH:+:$PYTHONPATH}"
exec "\${LAUNCH[@]}" "$KIT/pretrain_skymoe.py" \\
  "\${MODEL_ARGS[@]}" "\${MOE_ARGS[@]}" "\${PARALLEL_ARGS[@]}" "\${PRECISION_ARGS[@]}" \\
  "\${TRAINING_ARGS[@]}" "\${DATA_ARGS[@]}" "\${CHECKPOINT_ARGS[@]}" "\${LOGGING_ARGS[@]}" "$@"
`;
}

export interface ConvertInput {
  kitName: string;
  /** pretrain.sh's arguments (the model section carries --padded-vocab-size). */
  args: ArgSections;
  converter: ConverterLayout;
}

export function convertScript(c: ConvertInput): string {
  const l = c.converter;
  const resaveParallel: [string, string][] = [
    ['--tensor-model-parallel-size', String(l.tp)],
    ...(l.tp > 1 ? ([['--sequence-parallel', '']] as [string, string][]) : []),
    ['--pipeline-model-parallel-size', String(l.pp)],
    ['--expert-model-parallel-size', String(l.ep)],
    ['--expert-tensor-parallel-size', String(l.tp)],
    ['--micro-batch-size', '1'],
    ['--global-batch-size', String(l.ep)],
  ];
  // convert.py's checkpoint holds SequentialMLP experts: load it without grouped GEMM (torch_dist is the same either way)
  const moe = c.args.moe.filter(([f]) => f !== '--moe-grouped-gemm');
  return `${header("Convert the kit's hf/ (Hugging Face Mixtral layout) into a Megatron-Core checkpoint pretrain.sh starts from.", c.kitName)}
# Step 1: tools/checkpoint/convert.py (loader_mixtral_hf -> saver core), on one machine's CPU,
#         into the legacy torch format at TP ${l.tp}, PP ${l.pp}, EP ${l.ep} (convert.py splits layers evenly).
# Step 2: a Megatron run at that layout (${l.gpus} GPU${l.gpus === 1 ? '' : 's'}) loads it and saves it as torch_dist,
#         which pretrain.sh loads into the planned layout (Megatron reshards torch_dist on load).
# Needs Megatron-LM's Python environment (PyTorch, Transformer Engine, transformers 4.36-4.x:
# loader_mixtral_hf.py checks the minor version >= 36, which 5.x fails).
OUT="\${OUT:-$KIT/megatron}"
LEGACY="$OUT/legacy"
STEP="\${STEP:-all}"   # 1, 2 or all

if [ "$STEP" = 1 ] || [ "$STEP" = all ]; then
  (cd "$MEGATRON_LM" && python tools/checkpoint/convert.py \\
    --model-type GPT --loader mixtral_hf --saver core \\
    --load-dir "$KIT/hf" --save-dir "$LEGACY" --tokenizer-model "$KIT/hf" \\
    --target-tensor-parallel-size ${l.tp} --target-pipeline-parallel-size ${l.pp} --target-expert-parallel-size ${l.ep})
fi

if [ "$STEP" = 2 ] || [ "$STEP" = all ]; then
${LAUNCH(l.gpusPerNode, l.gpus / l.gpusPerNode)
  .split('\n')
  .map((s) => `  ${s}`)
  .join('\n')}
${bashArray('MODEL_ARGS', [...c.args.model, ...moe, ...c.args.precision])
  .split('\n')
  .map((s) => `  ${s}`)
  .join('\n')}
${bashArray('PARALLEL_ARGS', resaveParallel)
  .split('\n')
  .map((s) => `  ${s}`)
  .join('\n')}
  CONVERT_ARGS=(
    --load "$LEGACY" --ckpt-format torch --finetune --no-load-optim --no-load-rng
    --ckpt-convert-format torch_dist --ckpt-convert-save "$OUT" --no-save-optim --no-save-rng
    --mock-data --tokenizer-type HuggingFaceTokenizer --tokenizer-model "$KIT/hf"
    --train-iters 1 --lr 1e-6
  )
  export CUDA_DEVICE_MAX_CONNECTIONS=1
  (cd "$MEGATRON_LM" && "\${LAUNCH[@]}" pretrain_gpt.py "\${MODEL_ARGS[@]}" "\${PARALLEL_ARGS[@]}" "\${CONVERT_ARGS[@]}")
  echo "converted: $OUT/torch_dist (pretrain.sh reads it as PRETRAINED)"
fi
`;
}

/** Megatron-LM's pretrain_gpt.py, run after skymoe_megatron.install() patched the router. */
export function pretrainEntry(): string {
  return `"""Megatron-LM's pretrain_gpt.py with skymoe's router installed (written by skymoe export megatron).

pretrain.sh runs this under torchrun with Megatron's arguments: skymoe_megatron.install() reads
skymoe_kit.json beside this file and patches Megatron-Core's TopKRouter (gating logit
normalization, the kit's aux loss and adaptive per-layer coefficient), then pretrain_gpt.py runs
as if started directly.
"""
import os
import runpy
import sys

KIT = os.path.dirname(os.path.abspath(__file__))
MEGATRON_LM = os.environ.get("MEGATRON_LM", "")
ENTRY = os.path.join(MEGATRON_LM, "pretrain_gpt.py")
if not os.path.isfile(ENTRY):
    sys.exit(f"pretrain_skymoe.py: set MEGATRON_LM to a Megatron-LM checkout with pretrain_gpt.py (got {MEGATRON_LM!r})")
sys.path[:0] = [KIT, MEGATRON_LM]

import skymoe_megatron  # noqa: E402 (after the path is set)

skymoe_megatron.install(KIT)
sys.argv[0] = ENTRY
runpy.run_path(ENTRY, run_name="__main__")
`;
}
