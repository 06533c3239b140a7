#!/usr/bin/env node
/** The `skymoe` command line: one file per command, each thin (parse, validate, call, print). */
import { Command, Option } from 'commander';
import { applyCompute, backendOption, computeOption, dtypeOption, nonNegInt, number, positiveInt, threadsOption, tpExpertsOption, tpOption } from './common.js';
import { runDoctor } from './doctor.js';
import { runGenerate } from './generate.js';
import { runInit } from './init.js';
import { runInspect } from './inspect.js';
import { runScore } from './score.js';
import { runServe } from './serve.js';
import { runChat } from './chat.js';
import { runSelfcheck } from './selfcheck.js';
import { runTrain } from './train.js';
import { runUpcycle } from './upcycle.js';
import { runAdvise } from './advise.js';
import { runDemoCli } from './demo.js';
import { runExperiment } from './experiment.js';
import { runReport } from './report.js';
import { runPlan } from './plan.js';
import { runQuantize } from './quantize.js';
import { runExport } from './export.js';
import { runImport } from './import.js';
import { runTokenizerChat, runTokenizerConvert, runTokenizerEncode } from './tokenizer.js';

const program = new Command();
program.name('skymoe').description('Skywork-MoE in TypeScript: train, upcycle, advise, plan, quantize, export, import, generate, serve, chat, score, report').version('0.1.0');

program
  .command('selfcheck')
  .description("check the backend's kernels against the js reference")
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (o) => {
    if (!(await runSelfcheck(o))) process.exitCode = 1;
  });

program.command('doctor').description('show which backends, SIMD flavours and thread counts work on this machine').action(runDoctor);

program
  .command('init')
  .description('write a model with random weights in the Hugging Face layout, with a tokenizer trained on the corpus')
  .requiredOption('--preset <name>', 'tiny, demo, small, skywork-moe-146b, or a -dense twin')
  .requiredOption('--out <dir>', 'output directory')
  .option('--seed <n>', 'random seed', nonNegInt, 0)
  .addOption(new Option('--dtype <dtype>', 'storage dtype').choices(['F32', 'BF16']).default('F32'))
  .option('--corpus <paths...>', 'tokenizer training text: .txt/.jsonl files or folders (default: Moby Dick)')
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runInit);

program
  .command('inspect')
  .description('config summary, total and active parameters, stored dtypes and bytes')
  .argument('[dir]', 'a Hugging Face model directory')
  .option('--preset <name>', 'inspect a preset instead')
  .action(runInspect);

program
  .command('score')
  .description('per-token log-probabilities and perplexity of a text')
  .requiredOption('--model <dir>', 'model directory')
  .requiredOption('--text <text>', 'the text to score')
  .option('--logits <file>', 'also write the raw logits [T, V] (F32) and input_ids [T] (I64) to a safetensors file')
  .addOption(dtypeOption())
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runScore);

program
  .command('generate')
  .description('generate text, streaming tokens as they come')
  .requiredOption('--model <dir>', 'model directory')
  .requiredOption('--prompt <text>', 'the prompt')
  .option('--max-tokens <n>', 'tokens to generate at most', positiveInt, 64)
  .option('--temperature <t>', 'sampling temperature (0: greedy)', number, 0.8)
  .option('--top-p <p>', 'nucleus sampling threshold', number)
  .option('--top-k <k>', 'sample among the k most likely tokens', nonNegInt)
  .option('--seed <n>', 'sampling seed', nonNegInt, 0)
  .addOption(dtypeOption())
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(tpOption())
  .addOption(tpExpertsOption())
  .action(runGenerate);

program
  .command('serve')
  .description('an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics) on the continuous-batching engine')
  .requiredOption('--model <dir>', 'model directory (with its tokenizer)')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <n>', 'port to listen on (0: any free port)', nonNegInt, 8000)
  .option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1 routes (default: SKYMOE_API_KEY, else none)')
  .option('--served-model-name <name>', "the model's name in the API (default: the directory's name)")
  .addOption(dtypeOption())
  .addOption(backendOption())
  .addOption(threadsOption())
  .option('--kv-cache-gb <g>', 'memory for the KV cache in GiB (default 1; with --tp, of all ranks together)', number)
  .option('--max-num-seqs <n>', 'sequences decoded together at most (default 64)', positiveInt)
  .option('--max-queue <n>', 'requests waiting for a place in the batch at most; more are refused with 429 (default 256)', nonNegInt)
  .addOption(tpOption())
  .addOption(tpExpertsOption())
  .addOption(computeOption())
  .action(async (o) => {
    await applyCompute(o);
    await runServe(o);
  });

program
  .command('chat')
  .description('chat in the terminal on the serving engine: the model\'s chat template, streamed replies, /reset, Ctrl-C stops a reply')
  .requiredOption('--model <dir>', 'model directory (with its tokenizer)')
  .option('--system <text>', 'a system message that starts the conversation (kept by /reset)')
  .option('--max-tokens <n>', 'tokens per reply at most', positiveInt, 512)
  .option('--temperature <t>', 'sampling temperature (0: greedy)', number, 0.7)
  .option('--top-p <p>', 'nucleus sampling threshold', number, 0.9)
  .option('--seed <n>', 'sampling seed (default: a fresh one per reply)', nonNegInt)
  .addOption(dtypeOption())
  .addOption(backendOption())
  .addOption(threadsOption())
  .option('--kv-cache-gb <g>', 'memory for the KV cache in GiB (default 1; with --tp, of all ranks together)', number)
  .addOption(tpOption())
  .addOption(tpExpertsOption())
  .addOption(computeOption())
  .action(async (o) => {
    await applyCompute(o);
    await runChat(o);
  });

program
  .command('quantize')
  .description('re-encode a checkpoint to FP8 (E4M3 + weight_scale, the Skywork-MoE-Base-FP8 / vLLM layout) or bf16')
  .requiredOption('--model <dir>', 'model directory (F32, F16 or BF16 weights)')
  .addOption(new Option('--to <dtype>', 'target').choices(['fp8', 'bf16']).makeOptionMandatory())
  .requiredOption('--out <dir>', 'output directory')
  .option('--per-row', "FP8 with one scale per output row instead of per tensor (read by skymoe; vLLM's fp8 method reads per-tensor scales only)")
  .option('--report', 'print the quantization error of every tensor')
  .action(runQuantize);

program
  .command('export')
  .description("write a model in another engine's format: gguf (llama.cpp, Ollama), megatron (a Megatron-Core training kit with skymoe's router, in the layout skymoe plan chooses)")
  .argument('<format>', 'gguf | megatron')
  .option('--model <dir>', 'model directory (with tokenizer.json); megatron: also a skymoe training run or one of its checkpoints')
  .requiredOption('--out <path>', 'gguf: the output file (.gguf); megatron: the kit directory')
  .addOption(new Option('--type <type>', 'gguf: tensor type of the matrices (norms and router stay f32)').choices(['f32', 'f16', 'bf16', 'q8_0']).default('f16'))
  .option('--name <text>', 'gguf: general.name (default: the directory name)')
  .option('--preset <name>', 'megatron: train a preset from scratch instead of --model')
  .option('--gpus <n>', 'megatron: GPUs that will train it', positiveInt)
  .option('--gpu <kind>', 'megatron: the GPU, as in skymoe plan (a800-80g, h100-sxm, ...)')
  .option('--gpus-per-node <n>', 'megatron: GPUs per node (default: the usual server)', positiveInt)
  .option('--layout <spec>', "megatron: the layout in skymoe plan's notation, e.g. tp=4,pp=12,dp=32,expert=edp (default: the planner's choice)")
  .option('--seq <n>', "megatron: tokens per sequence (default 4096, at most the model's positions)", positiveInt)
  .option('--global-batch-tokens <n>', 'megatron: global batch in tokens (default 2048 sequences)', positiveInt)
  .option('--micro-batch <n>', 'megatron: fix the micro-batch size', positiveInt)
  .addOption(new Option('--precision <p>', 'megatron: training compute (default bf16)').choices(['bf16', 'fp8']))
  .option('--force', 'megatron: replace a non-empty --out')
  .action(runExport);

program
  .command('import')
  .description('bring a model back from another engine: megatron (the Hugging Face Mixtral export of a model trained with the Megatron kit, plus the kit)')
  .argument('<format>', 'megatron')
  .requiredOption('--hf <dir>', "the trained model in the Hugging Face Mixtral layout (the kit's to_hf.py writes it)")
  .requiredOption('--kit <dir>', 'the kit it was trained with (skymoe export megatron)')
  .requiredOption('--out <dir>', 'the skymoe model directory to write')
  .option('--tokenizer <dir>', "tokenizer directory (default: the export's, else the kit's hf/)")
  .option('--force', 'replace a non-empty --out')
  .action(runImport);

program
  .command('train')
  .description('train a model on text with the report\'s techniques (adaptive aux loss, logit normalization); resumable')
  .option('--preset <name>', 'start from a preset with random weights (default tiny)')
  .option('--model <dir>', 'start from a model directory (HF layout, with tokenizer)')
  .option('--corpus <paths...>', '.txt/.jsonl files or folders (default: Moby Dick, built in)')
  .option('--out <dir>', 'run directory for a new run (metrics.jsonl, checkpoints/)')
  .option('--resume <dir>', 'continue the run in this directory from its latest checkpoint')
  .option('--steps <n>', 'optimizer steps (default 200)', positiveInt)
  .option('--batch <n>', 'sequences per micro-batch (default 8)', positiveInt)
  .option('--seq <n>', 'tokens per sequence (default 128)', positiveInt)
  .option('--accum <n>', 'micro-batches per step (default 1)', positiveInt)
  .option('--lr <x>', 'peak learning rate (default 3e-3)', number)
  .option('--min-lr <x>', 'final learning rate (default 3e-4)', number)
  .option('--warmup <n>', 'warmup steps (default 20)', nonNegInt)
  .addOption(new Option('--schedule <kind>', 'LR schedule (default cosine)').choices(['cosine', 'constant', 'wsd']))
  .option('--weight-decay <x>', 'AdamW decoupled weight decay on matrices (default 0.1)', number)
  .option('--clip <x>', 'global gradient-norm clip, 0 = off (default 1)', number)
  .option('--seed <n>', 'seed of init and data sampling (default 0)', nonNegInt)
  .option('--eval-every <n>', 'validation every n steps (default 50)', nonNegInt)
  .option('--eval-batches <n>', 'validation batches (default 8)', positiveInt)
  .option('--save-every <n>', 'checkpoint every n steps (default 100; always at the end)', nonNegInt)
  .option('--keep <n>', 'checkpoints kept (default 2)', positiveInt)
  .option('--capacity-factor <x>', 'expert capacity factor (default 1.25)', number)
  .option('--dropless', 'no capacity limit (no drops)')
  .addOption(new Option('--drop-policy <p>', 'which assignments an over-full expert drops first (default probability)').choices(['probability', 'position']))
  .addOption(new Option('--aux <kind>', 'aux-loss controller (default skywork)').choices(['skywork', 'fixed', 'bias', 'none']))
  .addOption(new Option('--aux-loss <form>', 'load-balancing loss weighted by the controller (default skywork eq. 4)').choices(['skywork', 'switch']))
  .option('--alpha <x>', 'fixed coefficient, or initial alpha of the adaptive controller (default 0.01)', number)
  .option('--xi <x>', 'adaptive controller xi (default 0.2)', number)
  .option('--alpha-max <x>', 'adaptive controller alpha_max (default 0.01)', number)
  .option('--beta <x>', 'adaptive controller EMA beta (default 0.99)', number)
  .option('--bias-rate <x>', 'aux-loss-free bias update rate (default 1e-3)', number)
  .option('--z-loss <x>', 'router z-loss coefficient (default 0: off)', number)
  .option('--val-fraction <x>', 'held-out fraction of the corpus (default 0.05)', number, 0.05)
  .option('--layout <spec>', 'ranks as worker threads, in the planner\'s notation: tp=T,pp=P,dp=D[,expert=edp|etp][,stages=3+1][,recompute=none|selective|full, or one per stage] (--accum a multiple of D)')
  .option('--zero <0|1>', 'with --layout dp=N: 1 shards AdamW\'s moments over the ranks (ZeRO-1, the default), 0 replicates them', number)
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runTrain);

program
  .command('upcycle')
  .description('turn a dense checkpoint into an MoE one, each expert a copy of the FFN (Llama/Mistral -> Skywork-MoE or Mixtral, Qwen3 -> Qwen3-MoE)')
  .requiredOption('--from <dir>', 'dense model directory')
  .requiredOption('--out <dir>', 'output directory')
  .option('--experts <n>', 'experts per layer', positiveInt, 8)
  .option('--top-k <k>', 'experts per token', positiveInt, 2)
  .option('--gate-init-std <x>', 'router init std (default: initializer_range)', number)
  .option('--noise <x>', 'relative std of noise added to each expert copy', number, 0)
  .option('--no-logits-norm', 'disable gating logit normalization')
  .option('--gate-norm-std <x>', 'lambda of the logit normalization', number, 1)
  .option('--no-norm-topk', 'qwen3_moe: do not renormalize the top-k weights (norm_topk_prob false; the model no longer equals the dense one at step 0)')
  .addOption(new Option('--layout <layout>', 'output layout (default: qwen3_moe from a Qwen3 model, skywork otherwise)').choices(['skywork', 'mixtral', 'qwen3_moe']))
  .option('--seed <n>', 'router init seed', nonNegInt, 0)
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runUpcycle);

program
  .command('advise')
  .description('upcycle or train from scratch? (report section 3.2: scratch when C_moe >= 2 C_dense)')
  .option('--dense <dir>', 'the dense checkpoint (config.json)')
  .option('--dense-preset <name>', 'or a preset for it')
  .option('--dense-tokens <n>', 'tokens the dense model was trained on', number)
  .option('--moe <dir>', 'the planned MoE (config.json)')
  .option('--moe-preset <name>', 'or a preset for it')
  .option('--seq <n>', 'sequence length', positiveInt, 4096)
  .option('--tokens <n>', 'MoE budget in tokens', number)
  .option('--flops <n>', 'MoE budget in FLOPs', number)
  .option('--gpu-hours <n>', 'MoE budget in GPU-hours', number)
  .option('--gpu <kind>', 'GPU for --gpu-hours', 'a800-80g')
  .option('--mfu <x>', 'achieved model FLOPs utilization for --gpu-hours', number, 0.4)
  .action(runAdvise);

program
  .command('demo')
  .description('the main job: dense -> upcycled MoE vs continued dense vs MoE from scratch on Moby Dick, with a report')
  .option('--minutes <n>', 'training budget in minutes', number, 6)
  .option('--out <dir>', 'output directory', 'runs/demo')
  .option('--seed <n>', 'seed', nonNegInt, 0)
  .option('--no-report', 'skip the HTML report')
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runDemoCli);

program
  .command('experiment')
  .description("the report's experiments at small scale: gate-norm (figure 3) or upcycle-vs-scratch (section 3.2)")
  .argument('<name>', 'gate-norm | upcycle-vs-scratch')
  .option('--preset <name>', 'MoE preset (upcycle-vs-scratch trains its dense twin first)', 'tiny')
  .option('--minutes <n>', 'training budget in minutes', number, 3)
  .option('--out <dir>', 'output directory (default runs/<name>)')
  .option('--seed <n>', 'seed', nonNegInt, 0)
  .option('--corpus <paths...>', '.txt/.jsonl files or folders (default: Moby Dick)')
  .option('--seq <n>', 'sequence length', positiveInt, 128)
  .option('--batch <n>', 'sequences per step', positiveInt, 8)
  .option('--no-report', 'skip the HTML report')
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runExperiment);

program
  .command('report')
  .description('an HTML page and PNG charts of training runs: loss, alpha, drop rate, expert load, gate ratios, expert similarity')
  .argument('<runDirs...>', 'run directories (each with metrics.jsonl)')
  .option('--out <dir>', 'output directory (default RUN_DIR/report for one run, ./report-<timestamp> for several)')
  .option('--title <text>', 'page title')
  .option('--labels <names>', 'comma-separated legend names, one per run directory')
  .action(async (dirs: string[], o) => {
    await runReport(dirs, o);
  });

program
  .command('plan')
  .description('choose and explain a parallel layout on a cluster (memory, tokens/s, MFU, EP/ETP/EDP, pipeline balance, Megatron-Core arguments); --inference for serving, --validate against published runs')
  .option('--preset <name>', 'model preset')
  .option('--config <file>', 'a config.json (or a model directory)')
  .option('--gpus <n>', 'number of GPUs', positiveInt)
  .option('--gpu <kind>', 'a800-80g, a100-40g, a100-80g, h100-sxm, h100-pcie, h800, h200, b200, l40s, rtx-4090, mi300x')
  .option('--gpus-per-node <n>', 'GPUs per node (default: the usual server)', positiveInt)
  .option('--intra-node-gbs <x>', 'per-GPU bandwidth inside a node, GB/s one way', number)
  .option('--inter-node-gbs <x>', 'per-GPU bandwidth across nodes, GB/s one way', number)
  .option('--global-batch-tokens <n>', 'global batch in tokens (default 2048 sequences)', positiveInt)
  .option('--seq <n>', 'sequence length (default 4096; with --measure 128, as skymoe train)', positiveInt)
  .option('--micro-batch <n>', 'fix the micro-batch size', positiveInt)
  .addOption(new Option('--precision <p>', 'training compute / inference weights').choices(['bf16', 'fp8']))
  .option('--zero <n>', 'ZeRO stage 0-3 (default 1)', nonNegInt)
  .option('--distributed-optimizer', "Megatron's distributed optimizer (= ZeRO-1)")
  .addOption(new Option('--recompute <mode>', 'restrict recomputation').choices(['none', 'selective', 'full']))
  .option('--layout <spec>', 'evaluate one layout: tp=4,pp=12,dp=32,vp=1,mb=1,expert=edp,ep=4,etp=1,stages=5+5+...,recompute=none')
  .option('--inference', 'plan FP8/BF16 serving instead of training')
  .option('--batch-sizes <list>', 'decode batch sizes for --inference, e.g. 1,8,64,256')
  .option('--context <n>', 'average context of a decode step (default 2048)', positiveInt)
  .option('--top <n>', 'layouts to explain (default 3)', positiveInt)
  .option('--validate', 'compare the step model with published runs')
  .option('--measure', "run a few training steps under --layout on worker-thread ranks and print the bytes sent next to the planner's bytes model, per collective kind and group (exit code 1 beyond 1%; an all-to-all on its routed bytes)")
  .option('--model <dir>', 'with --measure: train from this model directory (with its tokenizer) instead of --preset (default tiny)')
  .option('--steps <n>', 'with --measure: optimizer steps (default 3)', positiveInt)
  .option('--batch <n>', 'with --measure: sequences per micro-batch (default 8)', positiveInt)
  .option('--accum <n>', 'with --measure: micro-batches per step over all replicas (default dp x pp)', positiveInt)
  .addOption(backendOption())
  .option('--json', 'print JSON')
  .action(runPlan);

const tokenizer = program
  .command('tokenizer')
  .description('tokenizer files: convert a tokenizer.model to tokenizer.json, show an encoding, render a chat template');
tokenizer
  .command('convert')
  .description('write tokenizer.json + tokenizer_config.json (from a tokenizer.model, or re-written)')
  .argument('<path>', 'a model or tokenizer directory, a tokenizer.json or a tokenizer.model')
  .requiredOption('--out <dir>', 'output directory')
  .option('--max-length <n>', 'model_max_length to write (default 4096)', positiveInt)
  .action(runTokenizerConvert);
tokenizer
  .command('encode')
  .description('the ids and tokens of a text')
  .argument('<path>', 'a model or tokenizer directory, a tokenizer.json or a tokenizer.model')
  .requiredOption('--text <text>', 'the text')
  .option('--special', 'match special-token text (e.g. <|im_start|>) as those tokens')
  .option('--no-template', "leave out the post-processor's bos/eos")
  .option('--json', 'print {ids, tokens} as JSON')
  .action((path: string, o: { text: string; special?: boolean; template: boolean; json?: boolean }) => runTokenizerEncode(path, { ...o, noTemplate: !o.template }));
tokenizer
  .command('chat')
  .description("render a conversation with the tokenizer's chat_template")
  .argument('<path>', 'a model or tokenizer directory (with tokenizer_config.json)')
  .requiredOption('--messages <file>', 'a JSON array of {role, content}')
  .option('--tools <file>', 'a JSON array of tool definitions')
  .option('--generation-prompt', 'end with an open assistant turn')
  .option('--template <name>', 'a named template (files with several)')
  .option('--var <name=value...>', 'more template variables, values as JSON (e.g. enable_thinking=false)')
  .action(runTokenizerChat);

program.parseAsync().catch((e: unknown) => {
  console.error(`skymoe: ${(e as Error).message}`);
  process.exitCode = 1;
});
