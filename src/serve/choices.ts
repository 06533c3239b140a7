/**
 * One HTTP request's generation as one stream of choice events: the engine requests of its
 * prompts (each with n choices) merged as they come, choice i of prompt p numbered p * n + i (as
 * OpenAI numbers the choices of a list of prompts). This is the one stream both renderers read
 * (render.ts); it knows nothing of HTTP.
 */
import { setMaxListeners } from 'node:events';
import type { EngineEvent, EngineHandle, GenerationRequest, TokenLogprob } from '../infer/types.js';

export type ChoiceEvent =
  | { type: 'tokens'; index: number; ids: number[]; text: string; logprobs?: TokenLogprob[] }
  | { type: 'finish'; index: number; reason: 'stop' | 'length'; text: string; completionTokens: number };

/** The engine failed a request (an 'error' event, or an abort nobody asked for). */
export class GenerationError extends Error {
  override name = 'GenerationError';
}

type Pending = Promise<{ at: number; r: IteratorResult<EngineEvent, void> }>;

/**
 * Run `requests` on the engine and yield their events in arrival order. Aborting `signal` (the
 * client went away) or leaving the loop early aborts every engine request, which frees its KV
 * blocks. Throws what engine.generate throws (EngineBusyError) and GenerationError.
 */
export async function* generateChoices(engine: EngineHandle, requests: readonly GenerationRequest[], signal: AbortSignal): AsyncGenerator<ChoiceEvent, void, undefined> {
  const stop = new AbortController();
  // One listener per engine request: a list of many prompts is no listener leak (node warns past 10).
  setMaxListeners(requests.length + 10, stop.signal);
  // The client going away ends this stream at once, whether or not the engine has answered yet.
  let onAbort = (): void => {};
  const gone = new Promise<undefined>((resolve) => {
    onAbort = () => {
      stop.abort(signal.reason);
      resolve(undefined);
    };
  });
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  const streams: AsyncGenerator<EngineEvent, void, undefined>[] = [];
  const next = (at: number): Pending => streams[at]!.next().then((r) => ({ at, r }));
  const pending = new Map<number, Pending>();
  try {
    for (const req of requests) {
      streams.push(engine.generate(req, stop.signal));
      pending.set(streams.length - 1, next(streams.length - 1));
    }
    while (pending.size > 0) {
      const got = await Promise.race([gone, ...pending.values()]);
      if (got === undefined) return;
      const { at, r } = got;
      if (r.done) {
        pending.delete(at);
        continue;
      }
      pending.set(at, next(at));
      const ev = r.value;
      const base = at * requests[at]!.params.n;
      if (ev.type === 'error') throw new GenerationError(`the engine failed request ${ev.requestId}: ${ev.message}`);
      if (ev.type === 'tokens') {
        yield { type: 'tokens', index: base + ev.index, ids: ev.ids, text: ev.text, ...(ev.logprobs ? { logprobs: ev.logprobs } : {}) };
      } else if (ev.reason === 'abort') {
        if (signal.aborted) return;
        throw new GenerationError(`the engine aborted request ${ev.requestId} (it is shutting down)`);
      } else {
        yield { type: 'finish', index: base + ev.index, reason: ev.reason, text: ev.text, completionTokens: ev.completionTokens };
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (pending.size > 0) {
      stop.abort(new Error('the response ended before the generation'));
      // The pending next() calls settle once the engine sees the abort; their results are not wanted.
      for (const p of pending.values()) p.catch(() => {});
      for (const s of streams) s.return(undefined).catch(() => {});
    }
  }
}
