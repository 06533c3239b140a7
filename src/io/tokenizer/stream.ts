/**
 * Incremental decoding for streaming generation. A token can end in the middle of a multi-byte
 * UTF-8 character (byte-level BPE splits rare characters into single bytes), so text is released
 * only when its characters are complete; the rest waits for the next token.
 */
import type { BpeTokenizer, DecodeOptions } from './bpe.js';

export class StreamDecoder {
  // ignoreBOM keeps a leading U+FEFF: it is text the model produced, not a byte order mark.
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(
    private readonly tokenizer: BpeTokenizer,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Add one token; returns the newly completed text (possibly ''). */
  push(id: number): string {
    if (this.options.skipSpecialTokens && this.tokenizer.isSpecial(id)) return '';
    return this.utf8.decode(this.tokenizer.tokenBytes(id), { stream: true });
  }

  /** End of stream: returns what is left, an unfinished character as U+FFFD. The decoder can
   * then be reused for a new stream. */
  end(): string {
    return this.utf8.decode();
  }
}
