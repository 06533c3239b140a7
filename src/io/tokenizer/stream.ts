/**
 * Incremental decoding for streaming generation. A token can end in the middle of a multi-byte
 * UTF-8 character (byte-level BPE and byte fallback split rare characters into single bytes), so
 * text is released only when its characters are complete; the rest waits for the next token.
 *
 * Byte-level tokenizers stream byte by byte. Others (SentencePiece-style decoders, whose Strip
 * step drops the dummy prefix's space only at the start of the text) decode a short window of
 * recent ids and release what the new id added to it, as Hugging Face's DecodeStream does.
 */
import type { DecodeOptions, Tokenizer } from './tokenizer.js';

export class StreamDecoder {
  // ignoreBOM keeps a leading U+FFFD: it is text the model produced, not a byte order mark.
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  private readonly byteWise: boolean;
  /** Window of ids (general path): ids[0, prefixIndex) decode to `prefix`, already released. */
  private ids: number[] = [];
  private prefix = '';
  private prefixIndex = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions = {},
  ) {
    this.byteWise = tokenizer.decodesByteWise;
  }

  /** Add one token; returns the newly completed text (possibly ''). */
  push(id: number): string {
    if (this.options.skipSpecialTokens && this.tokenizer.isSpecial(id)) return '';
    if (this.byteWise) return this.utf8.decode(this.tokenizer.tokenBytes(id), { stream: true });
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids, this.options);
    if (text.length <= this.prefix.length || text.endsWith('\ufffd')) return '';
    // The window's text normally extends what was released; if a decoder rewrote earlier text,
    // release from where they first differ (never re-emitting released text).
    let common = 0;
    while (common < this.prefix.length && text.charCodeAt(common) === this.prefix.charCodeAt(common)) common++;
    const fresh = text.slice(common);
    // Keep the ids since the last release as context for the next one.
    this.ids = this.ids.slice(this.prefixIndex);
    this.prefixIndex = this.ids.length;
    this.prefix = this.tokenizer.decode(this.ids, this.options);
    return fresh;
  }

  /** End of stream: returns what is left, an unfinished character as U+FFFD. The decoder can
   * then be reused for a new stream. */
  end(): string {
    if (this.byteWise) return this.utf8.decode();
    const text = this.ids.length ? this.tokenizer.decode(this.ids, this.options) : '';
    let common = 0;
    while (common < this.prefix.length && text.charCodeAt(common) === this.prefix.charCodeAt(common)) common++;
    const rest = text.length > this.prefix.length || common < this.prefix.length ? text.slice(common) : '';
    this.ids = [];
    this.prefix = '';
    this.prefixIndex = 0;
    return rest;
  }
}
