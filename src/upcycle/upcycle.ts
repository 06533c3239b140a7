/**
 * Sparse upcycling (report section 3): a dense model becomes an MoE one. A Llama or Mistral
 * checkpoint becomes Skywork-MoE (or Mixtral), a Qwen3 checkpoint becomes Qwen3-MoE (its q/k
 * norms copied). Every expert of a layer starts as a copy of that layer's dense FFN (gate_proj ->
 * w1 / gate_proj, up_proj -> w3 / up_proj, down_proj -> w2 / down_proj); attention, norms,
 * embeddings and lm_head are copied; the router is freshly initialized.
 *
 * With the top-k weights renormalized to sum to 1 (Skywork, Mixtral, Qwen3-MoE with
 * norm_topk_prob) the upcycled model computes exactly what the dense model did at step 0, whatever
 * the router says. Without renormalization (Qwen3-MoE with norm_topk_prob false) each token's FFN
 * output is scaled by the probability mass of its k chosen experts (about k/E for a small random
 * router): not the dense model, and no fixed rescaling of the copies can make it so, since the mass
 * differs per token.
 */
import type { Backend } from '../backend/backend.js';
import { ConfigError, LAYOUTS, layoutRefusal, type ModelConfig, validateConfig } from '../model/config.js';
import { moeParamNames, paramValues, SkyworkMoE } from '../model/skywork-moe.js';
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

/** The MoE layouts upcycling writes. */
export type UpcycleLayout = 'skywork' | 'mixtral' | 'qwen3_moe';

export interface UpcycleOptions {
  experts: number;
  topK: number;
  /** Std of the router's normal init (default: the config's initializer_range). */
  gateInitStd?: number;
  /** Relative std of Gaussian noise added to each expert copy (0: exact copies). */
  noise?: number;
  /** Gating logit normalization (default on, lambda 1, in the Skywork layout: SPEC section 2; off elsewhere). */
  logitsNorm?: boolean;
  gateNormStd?: number;
  /** Renormalize the top-k weights (Qwen3-MoE's norm_topk_prob; default true, the only value that keeps the dense function). */
  normTopK?: boolean;
  seed?: number;
  /** Output layout: qwen3_moe for a Qwen3 source (the only one with its q/k norm); skywork (default) or mixtral otherwise. */
  layout?: UpcycleLayout;
}

/** The MoE layout a dense layout upcycles into by default. */
export function defaultUpcycleLayout(dense: ModelConfig): UpcycleLayout {
  return dense.layout === 'qwen3' ? 'qwen3_moe' : 'skywork';
}

/** The MoE config an upcycle produces from a dense config. */
export function upcycledConfig(dense: ModelConfig, o: UpcycleOptions): ModelConfig {
  if (dense.numExperts !== 0 || LAYOUTS[dense.layout].moe) throw new ConfigError(`upcycle: the source must be a dense model (Llama, Mistral or Qwen3 layout), got ${dense.layout} with ${dense.numExperts} experts`);
  if (!Number.isInteger(o.experts) || o.experts < 2) throw new ConfigError(`upcycle: --experts must be an integer >= 2 (got ${o.experts})`);
  if (!Number.isInteger(o.topK) || o.topK < 1 || o.topK > o.experts) throw new ConfigError(`upcycle: --top-k must be in [1, ${o.experts}] (got ${o.topK})`);
  const layout = o.layout ?? defaultUpcycleLayout(dense);
  if (!['skywork', 'mixtral', 'qwen3_moe'].includes(layout)) throw new ConfigError(`upcycle: --layout ${JSON.stringify(layout)}: expected skywork, mixtral or qwen3_moe`);
  const logitsNorm = o.logitsNorm ?? layout === 'skywork';
  const normTopK = o.normTopK ?? true;
  // Only Skywork's config.json can say "normalize the gate logits", only Qwen3-MoE's "do not
  // renormalize the top-k": a saved model would otherwise reload as another model.
  if (logitsNorm && layout !== 'skywork') throw new ConfigError(`upcycle: the ${layout === 'mixtral' ? 'Mixtral' : layout} layout has no field for gating logit normalization; use the skywork layout or turn logit normalization off`);
  if (!normTopK && layout !== 'qwen3_moe') throw new ConfigError(`upcycle: the ${layout} layout always renormalizes the top-k weights (norm_topk_prob false is Qwen3-MoE's)`);
  const cfg: ModelConfig = {
    ...dense,
    layout,
    numExperts: o.experts,
    topK: o.topK,
    moeInterval: 1,
    mlpOnlyLayers: [],
    moeIntermediateSize: dense.intermediateSize,
    normTopK,
    logitsNorm,
    gateNormStd: o.gateNormStd ?? 1,
    twoLayerGate: false,
  };
  if (layout === 'qwen3_moe' && cfg.routerAuxLossCoef === undefined) cfg.routerAuxLossCoef = 0.001; // Qwen3MoeConfig's default
  validateConfig(cfg);
  // the dense q/k norm must carry over: Llama/Mistral into Skywork/Mixtral, Qwen3 into Qwen3-MoE
  const refusal = layoutRefusal(cfg, layout);
  if (refusal) throw new ConfigError(`upcycle: a ${dense.layout} model cannot become a ${layout} one: ${refusal}`);
  return cfg;
}

/** Upcycle a dense model (its tensors are copied; the dense model stays usable). */
export function upcycle(dense: SkyworkMoE, o: UpcycleOptions, backend: Backend = dense.backend): SkyworkMoE {
  const cfg = upcycledConfig(dense.config, o);
  const E = cfg.numExperts;
  const rng = new T.Rng(o.seed ?? 0);
  const gateStd = o.gateInitStd ?? cfg.initializerRange;
  const out = new Map<string, Tensor>();
  const copy = (name: string, to = name) => {
    const src = dense.params.get(name);
    if (!src) throw new ConfigError(`upcycle: the dense model has no '${name}'`);
    out.set(to, T.keep(T.tensor(paramValues(src), src.shape, 'f32', backend)));
  };
  try {
    copy('model.embed_tokens.weight');
    copy('model.norm.weight');
    if (!cfg.tieWordEmbeddings) copy('lm_head.weight');
    for (let l = 0; l < cfg.numLayers; l++) {
      const p = `model.layers.${l}`;
      for (const n of ['input_layernorm', 'post_attention_layernorm']) copy(`${p}.${n}.weight`);
      for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) copy(`${p}.self_attn.${n}.weight`);
      if (cfg.qkNorm !== 'none') for (const n of ['q_norm', 'k_norm']) copy(`${p}.self_attn.${n}.weight`);
      const m = moeParamNames(cfg, l);
      out.set(m.gate, T.keep(T.randn([E, cfg.hiddenSize], rng, gateStd, backend)));
      for (const [from, to] of [['gate_proj', m.w1], ['up_proj', m.w3], ['down_proj', m.w2]] as const) {
        const w = dense.params.get(`${p}.mlp.${from}.weight`)!;
        const v = paramValues(w);
        let scale = 0;
        if (o.noise) {
          let ss = 0;
          for (const x of v) ss += x * x;
          scale = o.noise * Math.sqrt(ss / v.length);
        }
        const stacked = new Float32Array(E * v.length);
        for (let e = 0; e < E; e++) {
          stacked.set(v, e * v.length);
          if (scale > 0) for (let i = 0; i < v.length; i++) stacked[e * v.length + i]! += scale * rng.normal();
        }
        out.set(to, T.keep(T.tensor(stacked, [E, ...w.shape], 'f32', backend)));
      }
    }
    return SkyworkMoE.fromParams(cfg, out, backend);
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
}
