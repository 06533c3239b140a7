#!/usr/bin/env node
/** The `skymoe` command line: one file per command, each thin (parse, validate, call, print). */
import { Command, InvalidArgumentError, Option } from 'commander';
import { runDoctor } from './doctor.js';
import { runSelfcheck } from './selfcheck.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got '${v}'`);
  return n;
}

const program = new Command();
program.name('skymoe').description('Skywork-MoE in TypeScript: train, upcycle, plan, quantize, generate, serve').version('0.1.0');

const backendOption = () => new Option('--backend <name>', 'compute backend (default: SKYMOE_BACKEND, else fastest available)').choices(['js', 'wasm', 'native']);
const threadsOption = () => new Option('--threads <n>', 'kernel threads (default: SKYMOE_THREADS, else all cores)').argParser(positiveInt);

program
  .command('selfcheck')
  .description("check the backend's kernels against the js reference")
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (o) => {
    if (!(await runSelfcheck(o))) process.exitCode = 1;
  });

program
  .command('doctor')
  .description('show which backends, SIMD flavours and thread counts work on this machine')
  .action(runDoctor);

program.parseAsync().catch((e: unknown) => {
  console.error(`skymoe: ${(e as Error).message}`);
  process.exitCode = 1;
});
