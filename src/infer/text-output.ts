/**
 * A sequence's output text as it streams: token ids in, text that is final out. Two things keep
 * text back:
 * - a token can end inside a UTF-8 character: the tokenizer's StreamDecoder releases whole
 *   characters only;
 * - stop strings can span tokens: text that could still become the start of a stop string is held
 *   until it either completes one (generation stops; the stop string and all after it are dropped)
 *   or can no longer do so.
 *
 * Matching is incremental: each stop string keeps a Knuth-Morris-Pratt state (the length of its
 * longest prefix that ends the text so far), advanced once per new UTF-16 unit, so a step costs
 * O(new characters x stop strings) whatever the lengths. What is held back is the longest of those
 * prefixes. The first occurrence is the one that ENDS first, which is where generation stops; of
 * several ending at the same character, the longest (it starts first).
 */
import type { StreamDecoder } from '../io/tokenizer/stream.js';
import type { Tokenizer } from '../io/tokenizer/tokenizer.js';

/** A stop string with its KMP failure function and the current match state. */
interface StopMatcher {
  text: string;
  /** fail[q]: length of the longest proper prefix of text[0, q] that is also its suffix. */
  fail: Int32Array;
  /** Length of the longest prefix of text that ends the output so far. */
  state: number;
}

function matcher(text: string): StopMatcher {
  const fail = new Int32Array(text.length);
  for (let q = 1, k = 0; q < text.length; q++) {
    while (k > 0 && text.charCodeAt(q) !== text.charCodeAt(k)) k = fail[k - 1]!;
    if (text.charCodeAt(q) === text.charCodeAt(k)) k++;
    fail[q] = k;
  }
  return { text, fail, state: 0 };
}

/**
 * @example
 * ```ts
 * const out = new TextOutput(tokenizer, ['\n\nUser:']);
 * for (const id of ids) {
 *   send(out.push(id));
 *   if (out.stopped !== null) break; // finish reason 'stop'
 * }
 * if (out.stopped === null) send(out.finish()); // 'length', eos, abort: release what was held
 * ```
 */
export class TextOutput {
  /** The stop string that ended the text, once one has appeared. */
  stopped: string | null = null;
  private readonly decoder: StreamDecoder;
  private readonly stops: StopMatcher[];
  /** Decoded text not released yet: the longest stop-string prefix that ends the text. */
  private held = '';
  private done = false;

  constructor(tokenizer: Tokenizer, stop: readonly string[] = [], skipSpecialTokens = true) {
    for (const s of stop) if (s.length === 0) throw new RangeError('a stop string is empty (it would match before any text)');
    this.decoder = tokenizer.decodeStream({ skipSpecialTokens });
    this.stops = stop.map(matcher);
  }

  /** Add a generated token; returns the text that is final now (possibly ''). After a stop, ''. */
  push(id: number): string {
    if (this.done) return '';
    return this.release(this.decoder.push(id));
  }

  /**
   * Generation ended for another reason than a stop string: release what is held back (and an
   * unfinished character as U+FFFD), cut before a stop string should that last piece complete one.
   */
  finish(): string {
    if (this.done) return '';
    const text = this.release(this.decoder.end());
    const rest = this.held;
    this.held = '';
    this.done = true;
    return this.stopped === null ? text + rest : text;
  }

  private release(piece: string): string {
    if (this.stops.length === 0) return piece;
    const text = this.held + piece;
    for (let j = this.held.length; j < text.length; j++) {
      const c = text.charCodeAt(j);
      let found: StopMatcher | null = null;
      for (const m of this.stops) {
        let q = m.state;
        while (q > 0 && m.text.charCodeAt(q) !== c) q = m.fail[q - 1]!;
        if (m.text.charCodeAt(q) === c) q++;
        m.state = q;
        if (q === m.text.length && (found === null || q > found.text.length)) found = m;
      }
      if (found !== null) {
        this.stopped = found.text;
        this.done = true;
        this.held = '';
        return text.slice(0, j + 1 - found.text.length);
      }
    }
    let hold = 0;
    for (const m of this.stops) hold = Math.max(hold, m.state);
    this.held = text.slice(text.length - hold);
    return text.slice(0, text.length - hold);
  }
}
