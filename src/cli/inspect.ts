/** `skymoe inspect DIR | --preset NAME`: config summary, total and active parameters, stored dtypes and bytes. */
import { JsBackend } from '../backend/js/index.js';
import { describeCheckpoint, loadModel, readConfig } from '../io/hf.js';
import { loadPlan } from '../io/weights.js';
import { nativeInfo } from '../backend/native/index.js';
import { expertSimilarity } from '../upcycle/similarity.js';
import { isMoeLayer, LAYOUTS, type ModelConfig } from '../model/config.js';
import { countParams, formatCount } from '../model/params.js';
import { preset } from '../model/presets.js';
import { fmtBytes } from './common.js';

/** Layer indices as ranges: [0,1,2,5] -> "0-2, 5". */
function ranges(xs: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(j === i ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

export function inspectConfig(cfg: ModelConfig): string[] {
  const c = countParams(cfg);
  const layers = Array.from({ length: cfg.numLayers }, (_, i) => i);
  const moeLayers = layers.filter((i) => isMoeLayer(cfg, i));
  const denseLayers = layers.filter((i) => !isMoeLayer(cfg, i));
  const qkNorm = { none: 'none', head: `per head (RMSNorm over head dim ${cfg.headDim}, before RoPE)`, full: `over the whole projection (RMSNorm over q ${cfg.numHeads * cfg.headDim} and k ${cfg.numKvHeads * cfg.headDim}, before RoPE)` }[cfg.qkNorm];
  const lines = [
    `layout        ${cfg.layout} (${LAYOUTS[cfg.layout].architecture})`,
    `shape         vocab ${cfg.vocabSize}, hidden ${cfg.hiddenSize}, ${cfg.numLayers} layers, ${cfg.numHeads} heads (${cfg.numKvHeads} kv) x ${cfg.headDim}, ${cfg.maxPositions} positions${cfg.tieWordEmbeddings ? ', tied embeddings' : ''}`,
    `attention     q/k norm ${qkNorm}, rope theta ${cfg.ropeTheta}`,
  ];
  if (cfg.numExperts) {
    const which = denseLayers.length === 0 ? 'every layer' : `layers ${ranges(moeLayers)} (dense MLP in ${ranges(denseLayers)})`;
    lines.push(
      `mixture       ${cfg.numExperts} experts, top-${cfg.topK}, top-k weights ${cfg.normTopK ? 'renormalized' : 'not renormalized'}, logit norm ${cfg.logitsNorm ? `on (lambda ${cfg.gateNormStd})` : 'off'}${cfg.twoLayerGate ? ', 2-layer gate' : ''}`,
      `MoE layers    ${moeLayers.length} of ${cfg.numLayers}: ${which}`,
      `FFN           expert width ${cfg.moeIntermediateSize}${denseLayers.length ? `, dense MLP width ${cfg.intermediateSize}` : ''}`,
    );
  } else lines.push('mixture       dense', `FFN           MLP width ${cfg.intermediateSize}`);
  lines.push(
    `parameters    total ${formatCount(c.total)} (${c.total}), active ${formatCount(c.active)} (${c.active})`,
    `  breakdown   embedding ${formatCount(c.embedding)}, lm_head ${formatCount(c.lmHead)}, attention ${formatCount(c.attention)}, experts ${formatCount(c.experts)}, router ${formatCount(c.router)}, dense MLP ${formatCount(c.denseMlp)}, norms ${formatCount(c.norms)}`,
    `memory        fp32 ${fmtBytes(4 * c.total)}, bf16 ${fmtBytes(2 * c.total)}, fp8 ${fmtBytes(c.total)}`,
  );
  return lines;
}

export function runInspect(dir: string | undefined, o: { preset?: string }): void {
  // Loading for expert similarity uses the js backend: no threads to start for a one-off read.
  if ((dir === undefined) === (o.preset === undefined)) throw new Error('inspect: give a model directory or --preset NAME (one of them)');
  if (o.preset) {
    const lines = inspectConfig(preset(o.preset)); // an unknown preset fails here, before anything is printed
    console.log(`preset        ${o.preset}`);
    for (const l of lines) console.log(l);
    return;
  }
  const cfg = readConfig(dir!);
  console.log(`model         ${dir}`);
  for (const l of inspectConfig(cfg)) console.log(l);
  const d = describeCheckpoint(dir!);
  if (cfg.numExperts > 0 && countParams(cfg).total * 4 < 2e9) {
    const be = new JsBackend();
    const model = loadModel(dir!, be);
    console.log(`expert sim.   ${expertSimilarity(model).map((s) => s.toFixed(4)).join(' ')} (mean pairwise cosine per MoE layer)`);
    model.dispose();
  }
  const dtypes = Object.entries(d.bytesByDtype).map(([k, v]) => `${k} ${fmtBytes(v)}`).join(', ');
  console.log(`stored        ${d.tensors} tensors, ${d.elements} values in ${d.files.join(', ')}; ${dtypes}`);
  const plan = loadPlan(dir!, cfg);
  const nat = nativeInfo().available ? 'native (available here)' : 'native (not built here)';
  console.log(`in memory     on ${nat}: ${fmtBytes(plan.matrixBytes)} of matrices read in place from the mapped files, ${fmtBytes(plan.smallHeapBytes)} in the heap (norms, router, f32)`);
  console.log(`              on wasm or js: ${fmtBytes(plan.matrixBytes + plan.smallHeapBytes)} copied into the heap (limit 4 GiB); --dtype f32 (training): ${fmtBytes(4 * countParams(cfg).total)} in the heap`);
}
