/**
 * The engine's token log-probabilities in OpenAI's two formats: the legacy completions one
 * (`{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`) and the chat one
 * (`{content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`).
 */
import type { Tokenizer } from '../io/tokenizer/index.js';
import type { TokenLogprob } from '../infer/types.js';

/** What JSON cannot carry (-Infinity), as vLLM sends it. */
const FLOOR = -9999;
const finite = (lp: number): number => (Number.isFinite(lp) ? lp : FLOOR);
const UTF8 = new TextEncoder();
const BYTE_FALLBACK = /^<0x([0-9A-Fa-f]{2})>$/;

/** Each token's text (the tokenizer's decode of that single id) and its raw bytes, cached. */
export class TokenStrings {
  private readonly texts = new Map<number, string>();
  private readonly raw = new Map<number, number[]>();
  constructor(private readonly tok: Tokenizer) {}

  text(id: number): string {
    let t = this.texts.get(id);
    if (t === undefined) {
      t = this.tok.decode([id]);
      this.texts.set(id, t);
    }
    return t;
  }

  /**
   * The bytes the token stands for: exact for byte-level tokenizers and byte-fallback pieces
   * (`<0xE2>`), else the UTF-8 of its text. A token that cuts a character in two has text U+FFFD
   * but its true bytes here, so a client can join them (the reason OpenAI sends `bytes`).
   */
  bytes(id: number): number[] {
    let b = this.raw.get(id);
    if (b === undefined) {
      const piece = this.tok.idToToken(id) ?? '';
      const fallback = BYTE_FALLBACK.exec(piece);
      b = this.tok.byteLevel ? [...this.tok.tokenBytes(id)] : fallback ? [parseInt(fallback[1]!, 16)] : [...UTF8.encode(this.text(id))];
      this.raw.set(id, b);
    }
    return b;
  }
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  /** The chosen token and the asked-for number of most likely alternatives (so up to logprobs + 1 entries). */
  top_logprobs: Record<string, number>[];
  /** Where each token starts in the choice's text, in characters (code points, as Python counts). */
  text_offset: number[];
}

/**
 * Tokens of one choice in the completions format; `offset` is where the first starts (the text
 * already sent for this choice). Returns the offset after the last.
 */
export function completionLogprobs(lps: readonly TokenLogprob[], strings: TokenStrings, offset: number): { logprobs: CompletionLogprobs; offset: number } {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const lp of lps) {
    const token = strings.text(lp.id);
    out.tokens.push(token);
    out.token_logprobs.push(finite(lp.logprob));
    const top: Record<string, number> = {};
    // Two ids can share a text (both half a character): the more likely one keeps the key.
    for (const alt of lp.top) {
      const t = strings.text(alt.id);
      if (!(t in top)) top[t] = finite(alt.logprob);
    }
    if (!(token in top)) top[token] = finite(lp.logprob);
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += [...token].length;
  }
  return { logprobs: out, offset };
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

/** Tokens of one choice in the chat format (the entries of `logprobs.content`). */
export function chatLogprobs(lps: readonly TokenLogprob[], strings: TokenStrings): ChatTokenLogprob[] {
  const entry = (id: number, logprob: number): ChatTopLogprob => ({ token: strings.text(id), logprob: finite(logprob), bytes: strings.bytes(id) });
  return lps.map((lp) => ({ ...entry(lp.id, lp.logprob), top_logprobs: lp.top.map((a) => entry(a.id, a.logprob)) }));
}
