/**
 * Named configurations: the released Skywork-MoE, the reference models for benchmarks and demos,
 * and the tiny one for tests. Each has a dense twin (`<name>-dense`): the same shapes with one
 * SwiGLU MLP of the expert's size per layer, in the Llama layout (what upcycling starts from).
 */
import { ConfigError, type ModelConfig, validateConfig } from './config.js';

function moe(o: Partial<ModelConfig> & Pick<ModelConfig, 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'maxPositions' | 'numExperts'>): ModelConfig {
  return {
    layout: 'skywork',
    numKvHeads: o.numHeads,
    headDim: o.hiddenSize / o.numHeads,
    moeIntermediateSize: o.intermediateSize,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    qkNorm: 'none',
    topK: 2,
    moeInterval: 1,
    mlpOnlyLayers: [],
    normTopK: true,
    logitsNorm: true,
    gateNormStd: 1,
    twoLayerGate: false,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenId: 2,
    padTokenId: 0,
    initializerRange: 0.02,
    ...o,
  };
}

const base: Record<string, ModelConfig> = {
  /** The released Skywork-MoE-Base config (SPEC section 1). */
  'skywork-moe-146b': moe({
    vocabSize: 65532,
    hiddenSize: 4608,
    intermediateSize: 12288,
    numLayers: 52,
    numHeads: 36,
    maxPositions: 8192,
    numExperts: 16,
    initializerRange: 0.01,
  }),
  /** The reference model for benchmarks. */
  small: moe({ vocabSize: 8192, hiddenSize: 512, intermediateSize: 1024, numLayers: 8, numHeads: 8, maxPositions: 1024, numExperts: 8 }),
  /**
   * The decode benchmark's model: big enough to be memory-bound (0.62B parameters, 0.2B active:
   * 1.3 GB in bf16, beyond the last-level cache of most machines), small enough to generate in seconds.
   */
  bench: moe({ vocabSize: 16384, hiddenSize: 1024, intermediateSize: 2816, numLayers: 8, numHeads: 16, maxPositions: 2048, numExperts: 8 }),
  /** The model of the main demo. */
  demo: moe({ vocabSize: 4096, hiddenSize: 256, intermediateSize: 512, numLayers: 4, numHeads: 4, maxPositions: 256, numExperts: 8 }),
  /** For tests. */
  tiny: moe({ vocabSize: 512, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, maxPositions: 128, numExperts: 4 }),
};

/**
 * The dense twin of an MoE config: same shapes, one MLP of the expert's width, in the Llama layout
 * (Qwen3 for a Qwen3-MoE config: the same per-head q/k norm). OLMoE's full q/k norm has no dense layout.
 */
export function denseTwin(c: ModelConfig): ModelConfig {
  if (c.qkNorm === 'full') throw new ConfigError(`no dense layout has the ${c.layout} layout's full-projection q/k norm`);
  const F = c.numExperts ? c.moeIntermediateSize : c.intermediateSize;
  return { ...c, layout: c.qkNorm === 'head' ? 'qwen3' : 'llama', intermediateSize: F, moeIntermediateSize: F, numExperts: 0, topK: 0, logitsNorm: false, twoLayerGate: false, moeInterval: 1, mlpOnlyLayers: [], normTopK: true };
}

export const PRESETS: Record<string, ModelConfig> = Object.fromEntries(
  Object.entries(base).flatMap(([name, c]) => [
    [name, c],
    [`${name}-dense`, denseTwin(c)],
  ]),
);

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** A copy of a preset, or a ConfigError listing the names. */
export function preset(name: string): ModelConfig {
  const c = PRESETS[name];
  if (!c) throw new ConfigError(`unknown preset '${name}': expected one of ${presetNames().join(', ')}`);
  const copy = structuredClone(c);
  validateConfig(copy);
  return copy;
}
