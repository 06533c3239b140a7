/**
 * Token generation with a KV cache: one stream of tokens that the CLI prints as it comes and the
 * server renders as SSE or as one response.
 */
import * as T from '../tensor/index.js';
import { stopTokenIds } from '../model/config.js';
import type { SkyworkMoE } from '../model/skywork-moe.js';
import { type SamplingOptions, sampleToken, validateSampling } from './sample.js';

export interface GenerateOptions extends SamplingOptions {
  maxTokens?: number;
  seed?: number;
  /** Stop when one of these ids is produced (default: the config's eos ids). The stop id is not yielded. */
  stopIds?: number[];
  /**
   * Ids the tokenizer has (its vocabulary size). A model vocabulary padded beyond it (as Qwen's)
   * has ids without text: they are never sampled, as in the serving engine. Default: all.
   */
  knownVocab?: number;
}

export interface GeneratedToken {
  id: number;
  /** Position of the token in the sequence. */
  position: number;
}

/** Yield generated token ids one by one for a prompt of ids (batch 1). */
export function* generateTokens(model: SkyworkMoE, prompt: readonly number[], opts: GenerateOptions = {}): Generator<GeneratedToken, { reason: 'stop' | 'length' }> {
  validateSampling(opts);
  const cfg = model.config;
  if (prompt.length === 0) throw new RangeError('generate: the prompt has no tokens (add a bos token)');
  const maxTokens = Math.min(opts.maxTokens ?? 64, cfg.maxPositions - prompt.length);
  if (maxTokens <= 0) throw new RangeError(`generate: a prompt of ${prompt.length} tokens leaves no room within max_position_embeddings ${cfg.maxPositions}`);
  const stop = new Set(opts.stopIds ?? stopTokenIds(cfg));
  const rng = new T.Rng(opts.seed ?? 0);
  const cache = model.newCache(1, prompt.length + maxTokens);
  try {
    let input = Int32Array.from(prompt);
    for (let i = 0; i < maxTokens; i++) {
      const last = T.tidy(() => {
        const logits = model.decode(T.tensor(input, [1, input.length], 'i32', model.backend), cache); // (1, T, V)
        const V = cfg.vocabSize;
        const row = logits.toFloat32().subarray((input.length - 1) * V, input.length * V);
        if (opts.knownVocab !== undefined && opts.knownVocab < V) row.fill(-Infinity, Math.max(1, opts.knownVocab));
        return row;
      });
      const id = sampleToken(last, opts, rng);
      if (stop.has(id)) return { reason: 'stop' };
      yield { id, position: cache.length };
      input = Int32Array.of(id);
    }
    return { reason: 'length' };
  } finally {
    cache.dispose();
  }
}
