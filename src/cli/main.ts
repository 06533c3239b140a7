#!/usr/bin/env node
/** The `skymoe` command line: one file per command, each thin (parse, validate, call, print). */
import { Command, Option } from 'commander';
import { backendOption, nonNegInt, number, positiveInt, threadsOption } from './common.js';
import { runDoctor } from './doctor.js';
import { runGenerate } from './generate.js';
import { runInit } from './init.js';
import { runInspect } from './inspect.js';
import { runScore } from './score.js';
import { runSelfcheck } from './selfcheck.js';

const program = new Command();
program.name('skymoe').description('Skywork-MoE in TypeScript: train, upcycle, plan, quantize, generate, serve').version('0.1.0');

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
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(runGenerate);

program.parseAsync().catch((e: unknown) => {
  console.error(`skymoe: ${(e as Error).message}`);
  process.exitCode = 1;
});
