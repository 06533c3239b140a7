/** `skymoe upcycle --from DENSE_DIR --experts 8 --top-k 2 --out DIR`: a dense checkpoint becomes a Skywork-MoE (Qwen3: Qwen3-MoE) one. */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BackendName } from '../backend/backend.js';
import { loadModel, saveModel } from '../io/hf.js';
import { countParams, formatCount } from '../model/params.js';
import { expertSimilarity } from '../upcycle/similarity.js';
import { defaultUpcycleLayout, upcycle, type UpcycleLayout } from '../upcycle/upcycle.js';
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
  normTopk: boolean;
  /** Default: qwen3_moe for a Qwen3 source, skywork otherwise. */
  layout?: UpcycleLayout;
  seed: number;
  backend?: BackendName;
  threads?: number;
}

export async function runUpcycle(o: UpcycleCliOptions): Promise<void> {
  const be = await useBackend(o);
  const dense = loadModel(o.from, be);
  const layout = o.layout ?? defaultUpcycleLayout(dense.config);
  if (layout !== 'skywork' && o.logitsNorm) process.stderr.write(`note: the ${layout} layout has no logit normalization; upcycling without it\n`);
  if (!o.normTopk) process.stderr.write('note: without top-k renormalization the upcycled model does not compute the dense model at step 0: each token\'s FFN output is scaled by the probability mass of its experts (docs/upcycling.md)\n');
  const logitsNorm = layout === 'skywork' ? o.logitsNorm : false;
  const moe = upcycle(dense, { experts: o.experts, topK: o.topK, gateInitStd: o.gateInitStd, noise: o.noise, logitsNorm, gateNormStd: o.gateNormStd, normTopK: o.normTopk, layout, seed: o.seed });
  const r = saveModel(moe, o.out);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) if (existsSync(join(o.from, f))) copyFileSync(join(o.from, f), join(o.out, f));
  const d = countParams(dense.config), m = countParams(moe.config);
  const sim = expertSimilarity(moe);
  console.log(`upcycled ${o.from} (${dense.config.layout}, ${formatCount(d.total)} dense) -> ${o.out} (${layout}): ${o.experts} experts top-${o.topK}, ${formatCount(m.total)} total / ${formatCount(m.active)} active, logit norm ${logitsNorm ? `on (lambda ${o.gateNormStd})` : 'off'}, top-k weights ${o.normTopk ? 'renormalized' : 'not renormalized'}, ${r.files.length} file(s)`);
  console.log(`expert similarity per layer: ${sim.map((s) => s.toFixed(4)).join(' ')}`);
  moe.dispose();
  dense.dispose();
  await be.dispose();
}
