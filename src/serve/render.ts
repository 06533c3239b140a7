/**
 * The two renderers of one choice stream (choices.ts): SSE chunks as events come, or one JSON
 * body at the end, for /v1/completions (`text_completion`) and /v1/chat/completions
 * (`chat.completion` / `chat.completion.chunk`), in OpenAI's shapes.
 */
import type { ChoiceEvent } from './choices.js';
import { chatLogprobs, completionLogprobs, type ChatTokenLogprob, type CompletionLogprobs, type TokenStrings } from './logprobs.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What every response and chunk of one request carries. */
export interface ResponseHead {
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
}

export interface RenderOptions {
  head: ResponseHead;
  /** Choices in all: prompts x n. */
  choices: number;
  /** The prompts' token counts (usage.prompt_tokens is their sum: n choices share a prompt). */
  promptTokens: number[];
  /** Token log-probabilities were asked for. */
  logprobs: boolean;
  strings: TokenStrings;
  /** Streams only: a last chunk with the usage (and `usage: null` on the others). */
  includeUsage?: boolean;
}

type FinishReason = 'stop' | 'length';

/** One choice as it accumulates. */
interface ChoiceState {
  text: string;
  finish: FinishReason | null;
  completionTokens: number;
  /** Completions: characters already sent (text_offset of the next token). */
  offset: number;
}

/** The state and usage both endpoints keep; subclasses say how a choice and a chunk look. */
abstract class Renderer {
  protected readonly states: ChoiceState[];

  constructor(protected readonly o: RenderOptions) {
    this.states = Array.from({ length: o.choices }, () => ({ text: '', finish: null, completionTokens: 0, offset: 0 }));
  }

  usage(): Usage {
    const prompt = this.o.promptTokens.reduce((a, b) => a + b, 0);
    const completion = this.states.reduce((a, s) => a + s.completionTokens, 0);
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  }

  /** Choices the engine has not finished (a truncated stream). */
  unfinished(): number[] {
    return this.states.flatMap((s, i) => (s.finish === null ? [i] : []));
  }

  /** Streams: the chunks to send before any event. */
  abstract start(): object[];
  /** Streams: the chunks one event becomes (none for an event with nothing to show). Also folds it in. */
  abstract chunks(ev: ChoiceEvent): object[];
  /** Non-stream: fold one event in. */
  abstract add(ev: ChoiceEvent): void;
  /** Non-stream: the response body, once every choice has finished. */
  abstract body(): object;

  /** Streams: the last chunk when usage was asked for (no choices). */
  usageChunk(): object {
    return { ...this.chunkHead(), choices: [], usage: this.usage() };
  }

  protected abstract readonly chunkObject: string;

  protected chunkHead(): object {
    return { id: this.o.head.id, object: this.chunkObject, created: this.o.head.created, model: this.o.head.model };
  }

  protected chunk(choice: object): object {
    return { ...this.chunkHead(), choices: [choice], ...(this.o.includeUsage ? { usage: null } : {}) };
  }

  protected fold(ev: ChoiceEvent): ChoiceState {
    const s = this.states[ev.index]!;
    s.text += ev.text;
    if (ev.type === 'finish') {
      s.finish = ev.reason;
      s.completionTokens = ev.completionTokens;
    }
    return s;
  }
}

/** /v1/completions: `text_completion` objects, streamed or not. */
export class CompletionRenderer extends Renderer {
  protected readonly chunkObject = 'text_completion';
  private readonly logprobs: CompletionLogprobs[];

  /** `echo`: each choice's text starts with its prompt (prompt p has choices p*n .. p*n+n-1). */
  constructor(
    o: RenderOptions,
    private readonly echo?: { texts: string[]; n: number },
  ) {
    super(o);
    this.logprobs = this.states.map(() => ({ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }));
  }

  private echoed(index: number): string {
    return this.echo ? this.echo.texts[Math.floor(index / this.echo.n)]! : '';
  }

  private choice(index: number, text: string, logprobs: CompletionLogprobs | null, finish: FinishReason | null): object {
    return { index, text, logprobs, finish_reason: finish };
  }

  private emptyLogprobs(): CompletionLogprobs | null {
    return this.o.logprobs ? { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] } : null;
  }

  start(): object[] {
    if (!this.echo) return [];
    return this.states.map((_, i) => this.chunk(this.choice(i, this.echoed(i), this.emptyLogprobs(), null)));
  }

  private logprobsOf(ev: ChoiceEvent, s: ChoiceState): CompletionLogprobs | null {
    if (ev.type !== 'tokens' || !ev.logprobs) return this.emptyLogprobs();
    const r = completionLogprobs(ev.logprobs, this.o.strings, s.offset);
    s.offset = r.offset;
    return r.logprobs;
  }

  chunks(ev: ChoiceEvent): object[] {
    const s = this.fold(ev);
    const lp = this.logprobsOf(ev, s);
    if (ev.type === 'tokens' && ev.text === '' && !ev.logprobs?.length) return [];
    return [this.chunk(this.choice(ev.index, ev.text, lp, ev.type === 'finish' ? ev.reason : null))];
  }

  add(ev: ChoiceEvent): void {
    const s = this.fold(ev);
    const lp = this.logprobsOf(ev, s);
    if (lp && ev.type === 'tokens') {
      const all = this.logprobs[ev.index]!;
      all.tokens.push(...lp.tokens);
      all.token_logprobs.push(...lp.token_logprobs);
      all.top_logprobs.push(...lp.top_logprobs);
      all.text_offset.push(...lp.text_offset);
    }
  }

  body(): object {
    return {
      id: this.o.head.id,
      object: 'text_completion',
      created: this.o.head.created,
      model: this.o.head.model,
      choices: this.states.map((s, i) => this.choice(i, this.echoed(i) + s.text, this.o.logprobs ? this.logprobs[i]! : null, s.finish)),
      usage: this.usage(),
    };
  }
}

/** /v1/chat/completions: a `chat.completion`, or `chat.completion.chunk`s. */
export class ChatRenderer extends Renderer {
  protected readonly chunkObject = 'chat.completion.chunk';
  private readonly logprobs: ChatTokenLogprob[][];

  constructor(o: RenderOptions) {
    super(o);
    this.logprobs = this.states.map(() => []);
  }

  private choice(index: number, delta: object, content: ChatTokenLogprob[] | null, finish: FinishReason | null): object {
    return { index, delta, logprobs: content === null ? null : { content }, finish_reason: finish };
  }

  /** The first chunk of each choice names the role, as OpenAI's do. */
  start(): object[] {
    return this.states.map((_, i) => this.chunk(this.choice(i, { role: 'assistant', content: '' }, null, null)));
  }

  private logprobsOf(ev: ChoiceEvent): ChatTokenLogprob[] | null {
    if (!this.o.logprobs) return null;
    return ev.type === 'tokens' && ev.logprobs ? chatLogprobs(ev.logprobs, this.o.strings) : [];
  }

  chunks(ev: ChoiceEvent): object[] {
    this.fold(ev);
    const lp = this.logprobsOf(ev);
    if (ev.type === 'tokens') {
      if (ev.text === '' && !lp?.length) return [];
      return [this.chunk(this.choice(ev.index, { content: ev.text }, lp, null))];
    }
    return [this.chunk(this.choice(ev.index, ev.text === '' ? {} : { content: ev.text }, lp, ev.reason))];
  }

  add(ev: ChoiceEvent): void {
    this.fold(ev);
    const lp = this.logprobsOf(ev);
    if (lp) this.logprobs[ev.index]!.push(...lp);
  }

  body(): object {
    return {
      id: this.o.head.id,
      object: 'chat.completion',
      created: this.o.head.created,
      model: this.o.head.model,
      choices: this.states.map((s, i) => ({
        index: i,
        message: { role: 'assistant', content: s.text },
        logprobs: this.o.logprobs ? { content: this.logprobs[i]! } : null,
        finish_reason: s.finish,
      })),
      usage: this.usage(),
    };
  }
}

/** One server-sent event carrying a JSON object. */
export function sseData(obj: object): string {
  return `data: ${JSON.stringify(obj)}\n\n`;
}

/** The end of an OpenAI stream. */
export const SSE_DONE = 'data: [DONE]\n\n';
