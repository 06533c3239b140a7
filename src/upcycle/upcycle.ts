/**
 * Sparse upcycling (report section 3): a dense Llama-layout model becomes a Skywork-MoE model.
 * Every expert of a layer starts as a copy of that layer's dense FFN (gate_proj -> w1,
 * up_proj -> w3, down_proj -> w2); attention, norms, embeddings and lm_head are copied; the
 * router is freshly initialized. With top-k renormalization the upcycled model computes exactly
 * what the dense model did at step 0, whatever the router says.
 */
import type { Backend } from '../backend/backend.js';
import { ConfigError, type ModelConfig, validateConfig } from '../model/config.js';
import { paramValues, SkyworkMoE } from '../model/skywork-moe.js';
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';

export interface UpcycleOptions {
  experts: number;
  topK: number;
  /** Std of the router's normal init (default: the config's initializer_range). */
  gateInitStd?: number;
  /** Relative std of Gaussian noise added to each expert copy (0: exact copies). */
  noise?: number;
  /** Gating logit normalization (default on, lambda 1: SPEC section 2). */
  logitsNorm?: boolean;
  gateNormStd?: number;
  seed?: number;
  /** Output layout: skywork (default) or mixtral. */
  layout?: 'skywork' | 'mixtral';
}

/** The MoE config an upcycle produces from a dense config. */
export function upcycledConfig(dense: ModelConfig, o: UpcycleOptions): ModelConfig {
  if (dense.numExperts !== 0 || dense.layout !== 'llama') throw new ConfigError(`upcycle: the source must be a dense Llama-layout model (got ${dense.layout} with ${dense.numExperts} experts)`);
  if (!Number.isInteger(o.experts) || o.experts < 2) throw new ConfigError(`upcycle: --experts must be an integer >= 2 (got ${o.experts})`);
  if (!Number.isInteger(o.topK) || o.topK < 1 || o.topK > o.experts) throw new ConfigError(`upcycle: --top-k must be in [1, ${o.experts}] (got ${o.topK})`);
  const layout = o.layout ?? 'skywork';
  // Mixtral's config.json cannot say "normalize the gate logits": a saved model would reload as another model.
  const logitsNorm = o.logitsNorm ?? layout === 'skywork';
  if (layout === 'mixtral' && logitsNorm) throw new ConfigError('upcycle: the Mixtral layout has no field for gating logit normalization; use the skywork layout or turn logit normalization off');
  const cfg: ModelConfig = {
    ...dense,
    layout,
    numExperts: o.experts,
    topK: o.topK,
    moeInterval: 1,
    logitsNorm,
    gateNormStd: o.gateNormStd ?? 1,
    twoLayerGate: false,
  };
  validateConfig(cfg);
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
      const m = `${p}.block_sparse_moe`;
      out.set(`${m}.gate.weight`, T.keep(T.randn([E, cfg.hiddenSize], rng, gateStd, backend)));
      for (const [from, to] of [['gate_proj', 'w1'], ['up_proj', 'w3'], ['down_proj', 'w2']] as const) {
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
        out.set(`${m}.experts.${to}`, T.keep(T.tensor(stacked, [E, ...w.shape], 'f32', backend)));
      }
    }
    return SkyworkMoE.fromParams(cfg, out, backend);
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
}
