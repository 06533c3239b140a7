/** `skymoe demo` (= `npm start`): the main job on the built-in corpus, no arguments needed. */
import type { BackendName } from '../backend/backend.js';
import { runDemo } from '../experiment/demo.js';
import { useBackend } from './common.js';

export async function runDemoCli(o: { minutes: number; out: string; seed: number; report: boolean; backend?: BackendName; threads?: number }): Promise<void> {
  const t0 = performance.now();
  const be = await useBackend(o);
  process.stderr.write(`skymoe demo on ${be.describe()}, training budget ${o.minutes} min, output in ${o.out}\n`);
  try {
    const r = await runDemo(be, { minutes: o.minutes, outDir: o.out, seed: o.seed, report: o.report });
    console.log('\n' + r.table + '\n');
    const up = r.runs.find((x) => x.name === 'moe-upcycled')!, dense = r.runs.find((x) => x.name === 'dense-continued')!;
    console.log(`upcycled MoE vs continued dense: validation loss ${up.valLoss.toFixed(4)} vs ${dense.valLoss.toFixed(4)} (${up.valLoss < dense.valLoss ? 'MoE better' : 'dense better'})`);
    console.log(`best model: ${r.best} (saved in ${o.out}/best-model)`);
    if (r.reportPath) console.log(`report: ${r.reportPath}`);
    console.log('samples from the best model:');
    for (const s of r.samples) console.log(`  > ${s}`);
    console.log(`total time ${((performance.now() - t0) / 60000).toFixed(1)} min`);
  } finally {
    await be.dispose();
  }
}
