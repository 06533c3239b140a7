/**
 * Expert similarity: the mean pairwise cosine similarity of the experts' weights in one MoE
 * layer (each expert's gate, up and down projections flattened into one vector). 1 right after upcycling (every
 * expert a copy); the report (section 3.2) watches it fall as experts specialize.
 */
import { isMoeLayer } from '../model/config.js';
import { moeParamNames, paramValues, type SkyworkMoE } from '../model/skywork-moe.js';

/** Per MoE layer (in layer order): mean over expert pairs of cos(w_i, w_j). */
export function expertSimilarity(model: SkyworkMoE): number[] {
  const c = model.config;
  const out: number[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    if (!isMoeLayer(c, l)) continue;
    const E = c.numExperts;
    const m = moeParamNames(c, l);
    const parts = [m.w1, m.w3, m.w2].map((name) => paramValues(model.params.get(name)!));
    const per = parts.map((p) => p.length / E);
    const dot = Array.from({ length: E }, () => new Float64Array(E));
    for (let pi = 0; pi < parts.length; pi++) {
      const p = parts[pi]!, n = per[pi]!;
      for (let i = 0; i < E; i++)
        for (let j = i; j < E; j++) {
          let s = 0;
          const oi = i * n, oj = j * n;
          for (let x = 0; x < n; x++) s += p[oi + x]! * p[oj + x]!;
          dot[i]![j]! += s;
        }
    }
    let sum = 0, pairs = 0;
    for (let i = 0; i < E; i++)
      for (let j = i + 1; j < E; j++) {
        const d = Math.sqrt(dot[i]![i]! * dot[j]![j]!);
        sum += d > 0 ? dot[i]![j]! / d : 0;
        pairs++;
      }
    out.push(pairs ? sum / pairs : 1);
  }
  return out;
}
