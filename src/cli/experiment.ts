/** `skymoe experiment gate-norm | upcycle-vs-scratch`: the report's experiments at small scale, with a report. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendName } from '../backend/backend.js';
import { gateNormExperiment } from '../experiment/gate-norm.js';
import { upcycleVsScratchExperiment } from '../experiment/upcycle-vs-scratch.js';
import { useBackend } from './common.js';

export interface ExperimentCliOptions {
  preset: string;
  minutes: number;
  out?: string;
  seed: number;
  corpus?: string[];
  seq: number;
  batch: number;
  report: boolean;
  backend?: BackendName;
  threads?: number;
}

const EXPERIMENTS = { 'gate-norm': gateNormExperiment, 'upcycle-vs-scratch': upcycleVsScratchExperiment } as const;

export async function runExperiment(name: string, o: ExperimentCliOptions): Promise<void> {
  const run = EXPERIMENTS[name as keyof typeof EXPERIMENTS];
  if (!run) throw new Error(`unknown experiment '${name}': expected one of ${Object.keys(EXPERIMENTS).join(', ')}`);
  const out = o.out ?? join('runs', name);
  const be = await useBackend(o);
  const log = (m: string) => process.stderr.write(`${m}\n`);
  log(`experiment ${name} on ${be.describe()}, budget ${o.minutes} min, output in ${out}`);
  try {
    const r = await run(be, { preset: o.preset, minutes: o.minutes, outDir: out, seed: o.seed, corpus: o.corpus ?? [], seq: o.seq, batch: o.batch }, log);
    writeFileSync(join(out, 'summary.txt'), `${r.table}\n`);
    console.log(`\n${r.table}\n`);
    if (o.report) {
      const { buildReport } = await import('../report/index.js');
      const rep = await buildReport(r.runs.map((x) => x.dir), { outDir: join(out, 'report'), title: `skymoe experiment: ${name}` });
      console.log(`report: ${rep.html}`);
    }
    console.log(`summary: ${join(out, 'summary.txt')}`);
  } finally {
    await be.dispose();
  }
}
