/**
 * Tiny configs of every layout for the model, io and training tests: the shapes of the `tiny`
 * preset with what each layout adds (GQA, Qwen3's head dim apart from hidden / heads and its
 * per-head q/k norm, a dense layer among Qwen3-MoE's MoE layers with another FFN width, OLMoE's
 * full-projection q/k norm and un-renormalized top-k).
 */
import type { ModelConfig } from '../../src/model/config.js';
import { preset } from '../../src/model/presets.js';

export function tinyLayouts(): [string, ModelConfig][] {
  const moe = preset('tiny'), dense = preset('tiny-dense');
  return [
    ['mistral (head_dim 24 != 64 / 4)', { ...dense, layout: 'mistral', headDim: 24, numKvHeads: 2 }],
    ['qwen3 dense (head_dim 24, per-head q/k norm, tied)', { ...dense, layout: 'qwen3', qkNorm: 'head', headDim: 24, numKvHeads: 2, tieWordEmbeddings: true }],
    [
      'qwen3_moe (layer 1 dense, expert width 48, MLP width 96)',
      { ...moe, layout: 'qwen3_moe', qkNorm: 'head', logitsNorm: false, normTopK: true, numLayers: 3, mlpOnlyLayers: [1], numKvHeads: 2, headDim: 12, intermediateSize: 96, moeIntermediateSize: 48 },
    ],
    ['olmoe (full q/k norm, top-k not renormalized)', { ...moe, layout: 'olmoe', qkNorm: 'full', logitsNorm: false, normTopK: false, numKvHeads: 2 }],
  ];
}
