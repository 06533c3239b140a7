/**
 * Per-sequence sampling for the serving engine: one SequenceSampler per choice of a request, called
 * once per generated token with that sequence's row of logits (V). It keeps what the penalties need
 * (the prompt's and the output's ids, the output's token counts) and its own random stream.
 *
 * A step, in vLLM's order (vllm/v1/sample/sampler.py):
 * 1. logprobs (when asked): the log-softmax of the RAW logits, before penalties and temperature
 *    (vLLM's default logprobs mode, "raw_logprobs"), in float64: the chosen token's and the
 *    `topLogprobs` most likely tokens' (most likely first, ties lower id first).
 * 2. repetition penalty (CTRL, Keskar et al. 2019, as HF and vLLM): for every id in the prompt or
 *    the output, a positive logit is divided by it, a negative one multiplied by it.
 * 3. frequency and presence penalties (OpenAI): logit -= count x frequency_penalty +
 *    (count > 0) x presence_penalty, count = occurrences of the id in the OUTPUT only.
 *    Penalized logits are rounded to float32, as the logits are.
 * 4. temperature 0: greedy, the argmax of the penalized logits (ties: lowest id). Done.
 * 5. otherwise weights w_i = exp((x_i - max x) / T) (the softmax of x / T, unnormalized), then:
 *    - min_p: drop i when w_i < min_p (p_i < min_p x p_max);
 *    - top_k: keep the k first ids in rank order (descending logit, ties lower id first);
 *    min_p and top_k both keep a prefix of the rank order, so they commute: what survives is the
 *    shorter prefix;
 *    - top_p: of the survivors, keep the shortest prefix in rank order whose cumulative weight
 *      reaches top_p x the survivors' total weight (so top_p is measured after min_p and top_k
 *      renormalize, as in vLLM v1; HF and vLLM v0 apply min_p last, which differs only in that
 *      top_p there counts the mass min_p later drops);
 *    - draw from the kept weights with this sequence's stream (53-bit uniforms).
 *
 * Cost per token (V = vocabulary): greedy is one pass over V; top_k one pass with a bounded heap
 * and no exp; other sampling one max pass and one exp pass over V (each weight computed once and
 * kept in scratch), plus for top_p a pass collecting a candidate prefix that a histogram of the
 * weights says holds the nucleus, and a native sort of those candidates only. Scratch arrays are
 * shared by all samplers of a thread (next() is synchronous) and grow to the largest V seen.
 */
import { getRandomValues } from 'node:crypto';
import { Rng } from '../tensor/random.js';
import { expNonPositive } from './exp.js';
import { argmax, MAX_VOCAB, selectTop } from './rank.js';
import { SamplingError } from './sample.js';
import type { SamplingParams, TokenLogprob } from './types.js';
import { drawIndex, type Kept, logSumExp, maxOf, nucleus, NUCLEUS_GUESS, SamplingScratch, softmaxWeights } from './weights.js';

export interface SampledToken {
  id: number;
  /** When params.logprobs. */
  logprob?: TokenLogprob;
}

/** Bounds of validateParams beyond the OpenAI ranges (see docs/serving.md, "Sampling"). */
export const PARAM_LIMITS = {
  /** Choices per request: each takes a sequence slot of the running batch. */
  maxN: 16,
  /** OpenAI allows 4, vLLM any number; matching costs O(characters x stop strings). */
  maxStop: 16,
  maxTopLogprobs: 20,
  /** OpenAI's and vLLM's bound. */
  maxTemperature: 2,
} as const;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The first out-of-range field of p as a message naming it by its API (snake_case) name, or null.
 * The server validates requests with zod; this is the engine's own check of the same ranges.
 * @example
 * ```ts
 * validateParams({ ...DEFAULT_PARAMS, topP: 0 }); // 'top_p must be in (0, 1], got 0'
 * ```
 */
export function validateParams(p: SamplingParams): string | null {
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const integer = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
  const L = PARAM_LIMITS;
  if (!finite(p.temperature) || p.temperature < 0 || p.temperature > L.maxTemperature) return `temperature must be a number in [0, ${L.maxTemperature}], got ${p.temperature}`;
  if (!finite(p.topP) || !(p.topP > 0 && p.topP <= 1)) return `top_p must be in (0, 1], got ${p.topP}`;
  if (!integer(p.topK) || p.topK < 0) return `top_k must be an integer >= 0 (0: all tokens), got ${p.topK}`;
  if (!finite(p.minP) || p.minP < 0 || p.minP > 1) return `min_p must be in [0, 1], got ${p.minP}`;
  if (!finite(p.presencePenalty) || Math.abs(p.presencePenalty) > 2) return `presence_penalty must be in [-2, 2], got ${p.presencePenalty}`;
  if (!finite(p.frequencyPenalty) || Math.abs(p.frequencyPenalty) > 2) return `frequency_penalty must be in [-2, 2], got ${p.frequencyPenalty}`;
  if (!finite(p.repetitionPenalty) || p.repetitionPenalty <= 0) return `repetition_penalty must be a finite number > 0 (1: off), got ${p.repetitionPenalty}`;
  if (p.seed !== null && !integer(p.seed)) return `seed must be an integer in [-(2^53 - 1), 2^53 - 1] or null, got ${p.seed}`;
  if (!integer(p.maxTokens) || p.maxTokens < 1) return `max_tokens must be an integer >= 1, got ${p.maxTokens}`;
  if (!Array.isArray(p.stop) || p.stop.length > L.maxStop) return `stop must be a list of at most ${L.maxStop} strings`;
  for (const [i, s] of p.stop.entries()) {
    if (typeof s !== 'string' || s.length === 0) return `stop[${i}] must be a non-empty string`;
    if (LONE_SURROGATE.test(s)) return `stop[${i}] has a lone surrogate (not valid Unicode text)`;
  }
  if (!Array.isArray(p.stopTokenIds)) return 'stop_token_ids must be a list of token ids';
  for (const [i, id] of p.stopTokenIds.entries()) if (!integer(id) || id < 0) return `stop_token_ids[${i}] must be an integer >= 0, got ${id}`;
  if (typeof p.ignoreEos !== 'boolean') return `ignore_eos must be a boolean, got ${p.ignoreEos}`;
  if (typeof p.logprobs !== 'boolean') return `logprobs must be a boolean, got ${p.logprobs}`;
  if (!integer(p.topLogprobs) || p.topLogprobs < 0 || p.topLogprobs > L.maxTopLogprobs) return `top_logprobs must be an integer in [0, ${L.maxTopLogprobs}], got ${p.topLogprobs}`;
  if (p.topLogprobs > 0 && !p.logprobs) return 'top_logprobs needs logprobs: true';
  if (!integer(p.n) || p.n < 1 || p.n > L.maxN) return `n must be an integer in [1, ${L.maxN}], got ${p.n}`;
  return null;
}

/** A fresh request seed from the OS's cryptographic generator: a safe integer in [0, 2^53). */
export function randomSeed(): number {
  const [hi, lo] = getRandomValues(new Uint32Array(2));
  return (hi! & 0x1fffff) * 2 ** 32 + lo!;
}

/** murmur3's 32-bit finalizer: a bijection that mixes every input bit into every output bit. */
function mix32(z: number): number {
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

const STREAM_SALT = [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344];

/**
 * The random stream of choice `index` of a request seeded with `seed` (a safe integer): the
 * 128-bit xoshiro128** state, one word per salted hash of (seed, index). Choices of one seed get
 * different streams; the same (seed, index) always the same one.
 */
export function choiceStream(seed: number, index: number): Rng {
  const hi = Math.floor(seed / 2 ** 32);
  const lo = seed - hi * 2 ** 32;
  const s = STREAM_SALT.map((salt) => mix32(mix32(mix32(lo ^ salt) ^ (hi | 0)) ^ index));
  if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1; // xoshiro's one forbidden state
  const rng = new Rng();
  rng.setState({ s, spare: null });
  return rng;
}

/** Uniform in [0, 1) with 53 bits, so tokens of probability far below 2^-32 are drawn at their rate. */
function uniform(rng: Rng): number {
  return (rng.nextU32() * 2 ** 21 + (rng.nextU32() >>> 11)) / 2 ** 53;
}

const scratch = new SamplingScratch();

function noToken(): SamplingError {
  return new SamplingError('no token can be sampled: every logit is -Infinity');
}

/**
 * Sampling state of one sequence (one choice of a request).
 * @example
 * ```ts
 * const s = new SequenceSampler({ ...DEFAULT_PARAMS, temperature: 0.7, topP: 0.9, seed: 1 }, promptIds, V, 0);
 * const { id } = s.next(logits); // logits: Float32Array(V), this sequence's last row
 * ```
 */
export class SequenceSampler {
  /** The request seed this stream derives from (params.seed, or a fresh random one when null). */
  readonly seed: number;
  private readonly rng: Rng;
  private outputs = 0;
  /** Prompt and output ids, when the repetition penalty is on. */
  private readonly seen: Uint8Array | null;
  private readonly seenIds: number[] = [];
  /** Output token counts, when the frequency or presence penalty is on. */
  private readonly counts: Map<number, number> | null;

  constructor(
    readonly params: SamplingParams,
    promptIds: readonly number[],
    readonly vocabSize: number,
    readonly choiceIndex = 0,
  ) {
    if (!(Number.isInteger(vocabSize) && vocabSize >= 1 && vocabSize <= MAX_VOCAB)) throw new RangeError(`vocabSize must be an integer in [1, ${MAX_VOCAB}], got ${vocabSize}`);
    this.seed = params.seed ?? randomSeed();
    this.rng = choiceStream(this.seed, choiceIndex);
    this.seen = params.repetitionPenalty !== 1 ? new Uint8Array(vocabSize) : null;
    this.counts = params.frequencyPenalty !== 0 || params.presencePenalty !== 0 ? new Map() : null;
    for (const id of promptIds) this.see(id);
  }

  /**
   * Choose the next token from this sequence's logits (V, not modified) and record it. Logits
   * are finite or -Infinity (masked); throws SamplingError when all are -Infinity.
   */
  next(logits: Float32Array): SampledToken {
    this.checkRow(logits);
    const x = this.penalize(logits);
    const { temperature: T, minP } = this.params;
    let id: number;
    let lse = NaN;
    if (T === 0) {
      id = argmax(x, this.vocabSize);
      if (x[id] === -Infinity) throw noToken();
    } else {
      const kept = this.keep(x);
      id = this.draw(kept);
      // The dense pass over the raw logits at T = 1 summed exactly the raw softmax's terms.
      if (kept.dense && x === logits && T === 1 && minP === 0) lse = kept.max + Math.log(kept.mass);
    }
    const out: SampledToken = { id };
    if (this.params.logprobs) out.logprob = this.logprobOf(logits, id, lse);
    this.record(id);
    return out;
  }

  /** Count a token as output without sampling it (next() records its own choice). */
  record(id: number): void {
    this.see(id);
    if (this.counts) this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    this.outputs++;
  }

  /** Tokens recorded as output so far. */
  get generated(): number {
    return this.outputs;
  }

  /** The logits after the penalties (a copy), as next() would see them. For tests and inspection. */
  penalizedLogits(logits: Float32Array): Float32Array {
    this.checkRow(logits);
    return this.penalize(logits).slice(0, this.vocabSize);
  }

  /**
   * The distribution next() would draw from (ids ascending, probabilities summing to 1), without
   * drawing or recording. For tests and inspection.
   */
  distribution(logits: Float32Array): { ids: number[]; probs: number[] } {
    this.checkRow(logits);
    const x = this.penalize(logits);
    if (this.params.temperature === 0) return { ids: [argmax(x, this.vocabSize)], probs: [1] };
    const kept = this.keep(x);
    const pairs: [number, number][] = [];
    if (kept.dense) {
      for (let i = 0; i < kept.count; i++) if (scratch.weights[i]! > 0) pairs.push([i, scratch.weights[i]! / kept.total]);
    } else {
      for (let j = 0; j < kept.count; j++) if (scratch.keptWeights[j]! > 0) pairs.push([scratch.ids[j]!, scratch.keptWeights[j]! / kept.total]);
    }
    pairs.sort((a, b) => a[0] - b[0]);
    return { ids: pairs.map((p) => p[0]), probs: pairs.map((p) => p[1]) };
  }

  private see(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    if (this.seen && !this.seen[id]) {
      this.seen[id] = 1;
      this.seenIds.push(id);
    }
  }

  private checkRow(logits: Float32Array): void {
    if (logits.length !== this.vocabSize) throw new RangeError(`expected a row of ${this.vocabSize} logits, got ${logits.length}`);
    scratch.ensure(this.vocabSize);
  }

  /** Steps 2-3: the logits themselves when no penalty applies yet, else scratch.penalized. */
  private penalize(raw: Float32Array): Float32Array {
    const { repetitionPenalty: rep, frequencyPenalty: freq, presencePenalty: presence } = this.params;
    const repeats = this.seenIds.length > 0;
    const counted = this.counts !== null && this.counts.size > 0;
    if (!repeats && !counted) return raw;
    const x = scratch.penalized;
    x.set(raw);
    if (repeats) {
      for (const id of this.seenIds) {
        const v = x[id]!;
        x[id] = v > 0 ? v / rep : v * rep;
      }
    }
    if (counted) for (const [id, c] of this.counts!) x[id] = x[id]! - (c * freq + presence);
    return x;
  }

  /** Step 5 without the draw: min_p, top_k, top_p. */
  private keep(x: Float32Array): Kept {
    const { temperature: T, topK, topP, minP } = this.params;
    const V = this.vocabSize;
    const s = scratch;
    if (topK > 0 && topK < V) {
      selectTop(x, V, topK, s.ids, s.heap, s.keys);
      const max = x[s.ids[0]!]!;
      if (max === -Infinity) throw noToken();
      let mass = 0;
      for (let j = 0; j < topK; j++) {
        let w = expNonPositive((x[s.ids[j]!]! - max) / T);
        if (w < minP) w = 0;
        s.keptWeights[j] = w;
        mass += w;
      }
      let count = topK;
      let total = mass;
      if (topP < 1) {
        total = 0;
        for (count = 0; count < topK && total < topP * mass; count++) total += s.keptWeights[count]!;
      }
      return { dense: false, count, total, max, mass };
    }
    // top_p's first guess at the nucleus, the best ids, gives the max too.
    const guess = topP < 1 ? Math.min(NUCLEUS_GUESS, V) : 0;
    if (guess > 0) selectTop(x, V, guess, s.ids, s.heap, s.keys);
    const max = guess > 0 ? x[s.ids[0]!]! : maxOf(x, V);
    if (max === -Infinity) throw noToken();
    const mass = softmaxWeights(x, V, max, T, minP, s.weights);
    if (guess > 0) return nucleus(x, V, max, T, topP, mass, guess, s);
    return { dense: true, count: V, total: mass, max, mass };
  }

  private draw(kept: Kept): number {
    const r = uniform(this.rng) * kept.total;
    if (kept.dense) return drawIndex(scratch.weights, kept.count, r);
    return scratch.ids[drawIndex(scratch.keptWeights, kept.count, r)]!;
  }

  /** Step 1: log-softmax of the raw logits (lse: their log-normalizer when already known). */
  private logprobOf(raw: Float32Array, id: number, lse: number): TokenLogprob {
    const V = this.vocabSize;
    const n = Math.min(this.params.topLogprobs, V);
    const s = scratch;
    if (n > 0) selectTop(raw, V, n, s.ids, s.heap, s.keys);
    if (Number.isNaN(lse)) lse = logSumExp(raw, V, n > 0 ? raw[s.ids[0]!]! : maxOf(raw, V));
    const top: { id: number; logprob: number }[] = [];
    for (let j = 0; j < n; j++) top.push({ id: s.ids[j]!, logprob: raw[s.ids[j]!]! - lse });
    return { id, logprob: raw[id]! - lse, top };
  }
}
