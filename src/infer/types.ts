/**
 * The serving engine's vocabulary: what a request asks for, and the events a running request
 * yields. The engine (engine.ts, in a worker: engine-worker.ts) produces these; the CLI chat, the
 * SSE writer and the non-stream JSON response render them (src/serve/).
 */

/** How one request samples and when it stops. Every field has a default (see DEFAULT_PARAMS). */
export interface SamplingParams {
  /** 0: greedy (argmax over the penalized logits). */
  temperature: number;
  /** Nucleus: keep the smallest set of most likely tokens whose probability reaches top_p (1: all). */
  topP: number;
  /** Keep the k most likely tokens (0: all). */
  topK: number;
  /** Drop tokens whose probability is below min_p x the most likely one's (0: none). */
  minP: number;
  /** OpenAI: logit -= presence_penalty for every token already generated (-2..2). */
  presencePenalty: number;
  /** OpenAI: logit -= frequency_penalty x count of the token in the generated text (-2..2). */
  frequencyPenalty: number;
  /** CTRL / HF: logits of tokens in the prompt or the output are divided (positive) or multiplied (negative) by it (1: off). */
  repetitionPenalty: number;
  /** Seed of this request's random stream (null: a fresh one per request). Choice i of n uses its own stream derived from (seed, i). */
  seed: number | null;
  /** Tokens to generate at most (the engine also stops at the model's context). */
  maxTokens: number;
  /** Stop strings: generation ends when the text contains one; it is not part of the output. */
  stop: string[];
  /** Token ids that end generation (besides the model's eos ids unless ignoreEos); the stop token is not output. */
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** Return each generated token's log-probability (under the model's distribution before any sampling transform). */
  logprobs: boolean;
  /** ... and the most likely alternatives at each position (0..20). */
  topLogprobs: number;
  /** Independent completions of the same prompt. */
  n: number;
}

export const DEFAULT_PARAMS: SamplingParams = {
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  seed: null,
  maxTokens: 16,
  stop: [],
  stopTokenIds: [],
  ignoreEos: false,
  logprobs: false,
  topLogprobs: 0,
  n: 1,
};

export interface GenerationRequest {
  /** Unique among running requests. */
  id: string;
  /** Prompt token ids (already templated and encoded, bos included where the model wants it). */
  prompt: number[];
  params: SamplingParams;
}

/** A token's log-probability and the most likely alternatives at its position. */
export interface TokenLogprob {
  id: number;
  logprob: number;
  /** The topLogprobs most likely tokens, most likely first (ties: lower id first). */
  top: { id: number; logprob: number }[];
}

export type FinishReason = 'stop' | 'length' | 'abort';

/** What a running request yields; `index` is the choice (0..n-1). */
export type EngineEvent =
  | {
      type: 'tokens';
      requestId: string;
      index: number;
      /** Ids generated since the last event of this choice (stop tokens excluded). */
      ids: number[];
      /** Text released since the last event: never splits a UTF-8 character, never shows a (possible) stop string. */
      text: string;
      /** One per id when logprobs were asked for. */
      logprobs?: TokenLogprob[];
    }
  | {
      type: 'finish';
      requestId: string;
      index: number;
      reason: FinishReason;
      /** The stop string or stop token id that ended it, when one did. */
      stoppedBy?: string | number;
      /** The choice's remaining text (what was held back and is now final). */
      text: string;
      promptTokens: number;
      completionTokens: number;
    }
  | { type: 'error'; requestId: string; message: string };

/** The engine's state, for /metrics, /health and the queue bound. */
export interface EngineStats {
  running: number;
  waiting: number;
  /** KV-cache blocks in use / total. */
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** Totals since start. */
  promptTokens: number;
  generatedTokens: number;
  steps: number;
  preemptions: number;
}

/** The waiting queue is full: the server answers 429 (or 503 while draining). */
export class EngineBusyError extends Error {
  override name = 'EngineBusyError';
  constructor(
    message: string,
    /** 'queue_full' (try later) or 'draining' (shutting down). */
    readonly reason: 'queue_full' | 'draining',
  ) {
    super(message);
  }
}

/**
 * An engine as its users see it (the server, the chat CLI): in this thread, or in a worker
 * (engine-worker.ts), with the same interface.
 */
export interface EngineHandle {
  /** Name of the model (its directory's base name unless given). */
  readonly modelName: string;
  /** max_position_embeddings: prompt + generated tokens must fit. */
  readonly maxContext: number;
  /** Requests (prompts) the engine takes at once, running and waiting; more in one call can never fit. */
  readonly maxRequests?: number;
  /** Ids that end generation unless ignore_eos (the config's eos ids). */
  readonly eosTokenIds: readonly number[];
  /**
   * Start a request. Events arrive through the iterator until a 'finish' for every choice (or an
   * 'error'). Throws EngineBusyError when the waiting queue is full or the engine is draining.
   * Aborting `signal` (or returning from the iteration early) aborts the request and frees its
   * KV blocks.
   */
  generate(req: GenerationRequest, signal?: AbortSignal): AsyncGenerator<EngineEvent, void, undefined>;
  stats(): EngineStats;
  /** Refuse new requests, finish the running and waiting ones, then resolve. */
  drain(): Promise<void>;
  /** Stop at once (aborting what runs) and release the model. */
  close(): Promise<void>;
}
