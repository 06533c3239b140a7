/**
 * A scripted EngineHandle for the HTTP layer's tests: it "generates" token ids counting up from
 * the prompt's last id, so every response is known in advance, and it keeps the interface's
 * promises that the server relies on (maxTokens, stop token ids, n choices, logprobs, abort
 * frees the request, EngineBusyError). The real engine is tested in test/serve/server.test.ts.
 */
import { EngineBusyError, type EngineEvent, type EngineHandle, type EngineStats, type GenerationRequest } from '../../src/infer/types.js';
import type { Tokenizer } from '../../src/io/tokenizer/index.js';

export interface FakeEngineOptions {
  maxContext?: number;
  maxRequests?: number;
  /** Milliseconds between tokens (0: as fast as the event loop goes). */
  delayMs?: number;
  /** The first id a choice generates is prompt's last + 1 + choice index (then +1 each step). */
  tokenizer: Tokenizer;
}

export class FakeEngine implements EngineHandle {
  readonly modelName = 'fake';
  readonly maxContext: number;
  readonly maxRequests?: number;
  readonly eosTokenIds: readonly number[] = [];
  running = 0;
  /** Set to make generate throw, as a full queue or a draining engine does. */
  busy: EngineBusyError | undefined;
  /** Every request seen, with whether its signal was aborted by the end. */
  readonly seen: { req: GenerationRequest; aborted: boolean }[] = [];
  private readonly delayMs: number;

  constructor(private readonly o: FakeEngineOptions) {
    this.maxContext = o.maxContext ?? 128;
    this.maxRequests = o.maxRequests;
    this.delayMs = o.delayMs ?? 0;
  }

  async *generate(req: GenerationRequest, signal?: AbortSignal): AsyncGenerator<EngineEvent, void, undefined> {
    if (this.busy) throw this.busy;
    const seen = { req, aborted: false };
    this.seen.push(seen);
    this.running++;
    const { params } = req;
    const V = this.o.tokenizer.vocabSize;
    const done = new Array<boolean>(params.n).fill(false);
    const counts = new Array<number>(params.n).fill(0);
    try {
      for (let step = 0; done.includes(false); step++) {
        await new Promise((r) => setTimeout(r, this.delayMs));
        for (let i = 0; i < params.n; i++) {
          if (done[i]) continue;
          if (signal?.aborted) {
            seen.aborted = true;
            done.fill(true);
            yield { type: 'finish', requestId: req.id, index: i, reason: 'abort', text: '', promptTokens: req.prompt.length, completionTokens: counts[i]! };
            break;
          }
          const id = (req.prompt.at(-1)! + 1 + i + step) % V;
          const finish = (reason: 'stop' | 'length', stoppedBy?: number): EngineEvent => {
            done[i] = true;
            return { type: 'finish', requestId: req.id, index: i, reason, ...(stoppedBy !== undefined ? { stoppedBy } : {}), text: '', promptTokens: req.prompt.length, completionTokens: counts[i]! };
          };
          if (params.stopTokenIds.includes(id)) {
            yield finish('stop', id);
            continue;
          }
          counts[i]!++;
          const lp = { id, logprob: -0.5, top: Array.from({ length: params.topLogprobs }, (_, k) => ({ id: (id + k) % V, logprob: -0.5 - k })) };
          yield { type: 'tokens', requestId: req.id, index: i, ids: [id], text: this.o.tokenizer.decode([id]), ...(params.logprobs ? { logprobs: [lp] } : {}) };
          if (counts[i] === params.maxTokens) yield finish('length');
        }
      }
    } finally {
      if (signal?.aborted) seen.aborted = true;
      this.running--;
    }
  }

  stats(): EngineStats {
    return { running: this.running, waiting: 0, kvBlocksUsed: this.running, kvBlocksTotal: 16, promptTokens: 0, generatedTokens: 0, steps: 0, preemptions: 0 };
  }

  async drain(): Promise<void> {}
  async close(): Promise<void> {}
}
