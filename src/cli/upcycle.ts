/** `skymoe upcycle --from DENSE_DIR --experts 8 --top-k 2 --out DIR`: a dense checkpoint becomes a Skywork-MoE one. */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendName } from '../backend/backend.js';
import { loadModel, saveModel } from '../io/hf.js';
import { countParams, formatCount } from '../model/params.js';
import { expertSimilarity } from '../upcycle/similarity.js';
import { upcycle } from '../upcycle/upcycle.js';
import { useBackend } from './common.js';

export interface UpcycleCliOptions {
  from: string;
  out: string;
  experts: number;
  topK: number;
  gateInitStd?: number;
  noise: number;
  logitsNorm: boolean;
  gateNormStd: number;
  layout: 'skywork' | 'mixtral';
  seed: number;
  backend?: BackendName;
  threads?: number;
}

export async function runUpcycle(o: UpcycleCliOptions): Promise<void> {
  const be = await useBackend(o);
  const dense = loadModel(o.from, be);
  if (o.layout === 'mixtral' && o.logitsNorm) process.stderr.write('note: the Mixtral layout has no logit normalization; upcycling without it\n');
  const logitsNorm = o.layout === 'mixtral' ? false : o.logitsNorm;
  const moe = upcycle(dense, { experts: o.experts, topK: o.topK, gateInitStd: o.gateInitStd, noise: o.noise, logitsNorm, gateNormStd: o.gateNormStd, layout: o.layout, seed: o.seed });
  const r = saveModel(moe, o.out);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) if (existsSync(join(o.from, f))) copyFileSync(join(o.from, f), join(o.out, f));
  const d = countParams(dense.config), m = countParams(moe.config);
  const sim = expertSimilarity(moe);
  console.log(`upcycled ${o.from} (${formatCount(d.total)} dense) -> ${o.out}: ${o.experts} experts top-${o.topK}, ${formatCount(m.total)} total / ${formatCount(m.active)} active, logit norm ${logitsNorm ? `on (lambda ${o.gateNormStd})` : 'off'}, ${r.files.length} file(s)`);
  console.log(`expert similarity per layer: ${sim.map((s) => s.toFixed(4)).join(' ')}`);
  moe.dispose();
  dense.dispose();
  await be.dispose();
}
