/**
 * A tokenizer as Hugging Face tokenizers runs one: added tokens are cut out of the text first,
 * the rest is normalized, pre-tokenized into words, and each word is encoded by the model (BPE,
 * byte-level or with byte fallback, or Unigram); a post-processor puts bos/eos around the result.
 * Decoding maps ids back to token strings and runs the decoder chain.
 *
 * Added tokens follow the Rust semantics: non-normalized ones are matched in the raw text and
 * normalized ones in the normalized text, leftmost-longest; `lstrip` / `rstrip` swallow the
 * whitespace beside a match, `single_word` only matches outside words. Special added tokens are
 * matched only with `allowSpecial` (so text from users cannot forge control tokens).
 */
import { bytesToToken, tokenToBytes } from './byte-level.js';
import { BpeModel } from './bpe.js';
import { compileDecoder, isByteLevelDecoder, type DecoderSpec } from './decoders.js';
import { TokenizerError } from './errors.js';
import { compileNormalizer, type NormalizeFn, type NormalizerSpec } from './normalize.js';
import { PreTokenizer, type PreTokenizerSpec } from './pretokenize.js';
import { StreamDecoder } from './stream.js';
import { UnigramModel } from './unigram.js';

/** A token matched whole in the input before the model runs (HF "added_tokens"). */
export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens (bos, eos, pad, chat markers) are matched only with `allowSpecial`. */
  special: boolean;
  /** Matched in the normalized text rather than the raw text (HF default: !special). */
  normalized?: boolean;
  /** The match swallows whitespace on its left / right. */
  lstrip?: boolean;
  rstrip?: boolean;
  /** Only matched when not inside a word. */
  singleWord?: boolean;
}

/** Which tokens play the bos / eos / pad / unk roles (by content). */
export interface SpecialTokenRoles {
  bos?: string;
  eos?: string;
  pad?: string;
  unk?: string;
}

export type TokenModel = BpeModel | UnigramModel;

export interface TokenizerInit {
  model: TokenModel;
  addedTokens?: readonly AddedToken[];
  normalizer?: NormalizerSpec | null;
  preTokenizer?: PreTokenizerSpec | null;
  /** Default: ByteLevel for a byte-level BPE model, none (tokens joined by spaces) otherwise. */
  decoder?: DecoderSpec | null;
  /** Special tokens put before / after every text when encode's `addSpecialTokens` is on. */
  template?: { prefix: readonly string[]; suffix: readonly string[] };
  /** The post_processor of the file, written back as read (default: built from the template). */
  postProcessor?: Record<string, unknown> | null;
  roles?: SpecialTokenRoles;
  /** tokenizer_config.json's chat_template: one Jinja template or named ones. */
  chatTemplate?: string | Readonly<Record<string, string>>;
  /** The file this comes from, named in errors. */
  file?: string;
}

export interface EncodeOptions {
  /** Match the text of special added tokens (e.g. `</s>`) as those tokens; default false, when
   * such text is encoded like any other text. */
  allowSpecial?: boolean;
  /** Put the template's special tokens (e.g. bos) around the text; default true (as HF). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special added tokens from the output; default false. */
  skipSpecialTokens?: boolean;
}

const UTF8 = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF: it is text the model produced, not a byte order mark.
const UTF8_DECODER = new TextDecoder('utf-8', { ignoreBOM: true });
/** A word character for single_word added tokens: \w of Rust's regex crate (Unicode). */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const LEADING_WS = /^\p{White_Space}+/u;
const TRAILING_WS = /\p{White_Space}+$/u;

interface AddedMatcher {
  re: RegExp;
  byContent: Map<string, AddedToken>;
}

/** A piece of input: plain text for the model, or an added token already resolved. */
type Section = { text: string; start: number } | { id: number };

/**
 * @example
 * ```ts
 * const tok = await loadTokenizer('models/llama-2');   // tokenizer.json or tokenizer.model
 * const ids = tok.encode('Call me Ishmael.');
 * tok.decode(ids, { skipSpecialTokens: true });       // 'Call me Ishmael.'
 * ```
 */
export class Tokenizer {
  /** One more than the largest id (HF `get_vocab_size(with_added_tokens=True)` for dense vocabs). */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  readonly model: TokenModel;
  readonly addedTokens: readonly AddedToken[];
  readonly normalizer: NormalizerSpec | null;
  readonly preTokenizer: PreTokenizer;
  readonly decoder: DecoderSpec | null;
  readonly postProcessor: Record<string, unknown> | null | undefined;
  readonly roles: Readonly<SpecialTokenRoles>;
  readonly template: { readonly prefix: readonly string[]; readonly suffix: readonly string[] };
  /** Words are UTF-8 bytes in the byte-level alphabet (GPT-2 style), decoded byte-wise. */
  readonly byteLevel: boolean;
  /** True when decoding is exactly the byte-level mapping, so it can stream byte by byte. */
  readonly decodesByteWise: boolean;
  /** tokenizer_config.json's chat_template (see chat.ts), when the files have one. */
  readonly chatTemplate: string | Readonly<Record<string, string>> | undefined;

  private readonly vocab = new Map<string, number>();
  /** Bytes of each token (byte-level tokenizers), filled on first use. */
  private readonly bytesOf: (Uint8Array | undefined)[] = [];
  private readonly tokens: (string | undefined)[] = [];
  private readonly addedIds = new Set<number>();
  private readonly specialIds = new Set<number>();
  private readonly normalize: NormalizeFn;
  private readonly decodeTokens: (tokens: string[]) => string;
  private readonly rawAll: AddedMatcher | undefined;
  private readonly rawPlain: AddedMatcher | undefined;
  private readonly normAll: AddedMatcher | undefined;
  private readonly normPlain: AddedMatcher | undefined;
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  /** The file this tokenizer was read from, when it was. */
  readonly file: string | undefined;

  constructor(init: TokenizerInit) {
    const file = (this.file = init.file);
    const fail = (msg: string, field: string): never => {
      throw new TokenizerError(msg, file, field);
    };
    this.model = init.model;
    for (const [token, id] of this.model.vocab) {
      if (!Number.isInteger(id) || id < 0) fail(`token ${JSON.stringify(token)} has invalid id ${id}`, 'model.vocab');
      const other = this.tokens[id];
      if (other !== undefined) fail(`duplicate id ${id} for ${JSON.stringify(other)} and ${JSON.stringify(token)}`, 'model.vocab');
      this.tokens[id] = token;
      this.vocab.set(token, id);
    }
    this.addedTokens = (init.addedTokens ?? []).map((t) => ({ ...t }));
    this.addedTokens.forEach((t, i) => {
      const field = `added_tokens[${i}]`;
      if (!Number.isInteger(t.id) || t.id < 0) fail(`invalid id ${t.id}`, field);
      if (t.content === '') fail('empty content', field);
      const known = this.vocab.get(t.content);
      if (known !== undefined && known !== t.id) fail(`${JSON.stringify(t.content)} has id ${t.id} but ${known} in the vocab`, field);
      const other = this.tokens[t.id];
      if (other !== undefined && other !== t.content) fail(`duplicate id ${t.id} for ${JSON.stringify(other)} and ${JSON.stringify(t.content)}`, field);
      this.vocab.set(t.content, t.id);
      this.tokens[t.id] = t.content;
      this.addedIds.add(t.id);
      if (t.special) this.specialIds.add(t.id);
    });
    this.vocabSize = this.tokens.length;
    if (this.model instanceof UnigramModel) this.model.blockPieces(this.specialIds);

    this.normalizer = init.normalizer ?? null;
    this.normalize = compileNormalizer(this.normalizer, 'normalizer', file);
    this.preTokenizer = new PreTokenizer(init.preTokenizer ?? null, file);
    this.byteLevel = this.model instanceof BpeModel && this.model.byteLevel;
    if (this.model instanceof BpeModel && this.model.byteLevel !== this.preTokenizer.byteLevel) {
      fail(`the BPE model is ${this.model.byteLevel ? '' : 'not '}byte-level but the pre-tokenizer ${this.preTokenizer.byteLevel ? 'has' : 'has no'} ByteLevel step`, 'pre_tokenizer');
    }
    this.decoder = init.decoder === undefined ? (this.byteLevel ? { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true } : null) : init.decoder;
    this.decodesByteWise = this.byteLevel && isByteLevelDecoder(this.decoder);
    const addedContent = new Set(this.addedTokens.map((t) => t.content));
    this.decodeTokens = compileDecoder(this.decoder, (t) => addedContent.has(t), 'decoder', file);

    // Added-token matchers: raw text / normalized text, with and without the special ones.
    const isNormalized = (t: AddedToken) => (t.normalized ?? !t.special) && this.normalizer !== null;
    const raw = this.addedTokens.filter((t) => !isNormalized(t));
    const norm = this.addedTokens.filter(isNormalized).map((t) => ({ ...t, content: this.normalize(t.content) }));
    this.rawAll = matcher(raw);
    this.rawPlain = matcher(raw.filter((t) => !t.special));
    this.normAll = matcher(norm);
    this.normPlain = matcher(norm.filter((t) => !t.special));

    this.roles = { ...init.roles };
    const roleId = (role: keyof SpecialTokenRoles): number | undefined => {
      const content = this.roles[role];
      if (content === undefined) return undefined;
      return this.vocab.get(content) ?? fail(`${role} token ${JSON.stringify(content)} is not in the vocab`, `${role}_token`);
    };
    this.bosId = roleId('bos');
    this.eosId = roleId('eos');
    this.padId = roleId('pad');
    this.unkId = roleId('unk');

    this.template = { prefix: [...(init.template?.prefix ?? [])], suffix: [...(init.template?.suffix ?? [])] };
    const templateId = (t: string): number => this.vocab.get(t) ?? fail(`template token ${JSON.stringify(t)} is not in the vocab`, 'post_processor');
    this.prefixIds = this.template.prefix.map(templateId);
    this.suffixIds = this.template.suffix.map(templateId);
    this.postProcessor = init.postProcessor;
    this.chatTemplate = init.chatTemplate;
  }

  /** BPE merges in rank order (empty for a Unigram model). */
  get merges(): readonly (readonly [string, string])[] {
    return this.model instanceof BpeModel ? this.model.merges : [];
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  /** True for the ids of special added tokens (bos, eos, pad, unk, ...). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** True for the ids of added tokens (special or not). */
  isAdded(id: number): boolean {
    return this.addedIds.has(id);
  }

  /**
   * The bytes token `id` stands for, for byte-level tokenizers (an added token: its content's
   * UTF-8). Other tokenizers decode through their decoder chain: use decode / decodeStream.
   */
  tokenBytes(id: number): Uint8Array {
    const cached = this.bytesOf[id];
    if (cached !== undefined) return cached;
    const t = this.tokens[id];
    if (t === undefined) throw new TokenizerError(`token id ${id} is not in the vocab (size ${this.vocabSize})`, this.file);
    if (!this.byteLevel) throw new TokenizerError('tokenBytes: not a byte-level tokenizer (use decode)', this.file);
    const b = this.addedIds.has(id) ? UTF8.encode(t) : (tokenToBytes(t) ?? UTF8.encode(t));
    this.bytesOf[id] = b;
    return b;
  }

  /**
   * @example
   * ```ts
   * tok.encode('hi </s>');                        // '</s>' as plain text
   * tok.encode('hi </s>', { allowSpecial: true }); // [..., tok.eosId]
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    const add = options.addSpecialTokens ?? true;
    if (add) out.push(...this.prefixIds);
    const special = options.allowSpecial ?? false;
    for (const s of splitAdded(text, 0, special ? this.rawAll : this.rawPlain)) {
      if ('id' in s) {
        out.push(s.id);
        continue;
      }
      const normalized = this.normalize(s.text);
      for (const p of splitAdded(normalized, s.start, special ? this.normAll : this.normPlain)) {
        if ('id' in p) out.push(p.id);
        else for (const word of this.preTokenizer.split(p.text, p.start === 0)) this.model.tokenize(word, out);
      }
    }
    if (add) out.push(...this.suffixIds);
    return out;
  }

  /**
   * The ids a model reads for a prompt: the text with the tokenizer's own template (Llama-family
   * files put bos first), or, when the template adds nothing but the tokenizer names a bos token,
   * bos first (skymoe-trained tokenizers). Tokenizers without a bos token (Qwen) add nothing.
   */
  encodePrompt(text: string, options: Pick<EncodeOptions, 'allowSpecial'> = {}): number[] {
    const ids = this.encode(text, { ...options, addSpecialTokens: true });
    if (this.prefixIds.length === 0 && this.bosId !== undefined) ids.unshift(this.bosId);
    return ids;
  }

  /** Invalid UTF-8 (e.g. a multi-byte character cut by the ids' ends) decodes as U+FFFD. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (this.decodesByteWise) {
      // Byte-level: the tokens' bytes, concatenated (what the ByteLevel decoder computes).
      const parts: Uint8Array[] = [];
      let n = 0;
      for (const id of ids) {
        if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
        const b = this.tokenBytes(id);
        parts.push(b);
        n += b.length;
      }
      const all = new Uint8Array(n);
      let at = 0;
      for (const b of parts) {
        all.set(b, at);
        at += b.length;
      }
      return UTF8_DECODER.decode(all);
    }
    const tokens: string[] = [];
    for (const id of ids) {
      if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
      const t = this.tokens[id];
      if (t === undefined) throw new TokenizerError(`token id ${id} is not in the vocab (size ${this.vocabSize})`, this.file);
      tokens.push(t);
    }
    return this.decodeTokens(tokens);
  }

  /**
   * An incremental decoder for generation: push ids one at a time; text comes out once it is
   * final (complete UTF-8 characters; a SentencePiece dummy-prefix space resolved).
   * @example
   * ```ts
   * const s = tok.decodeStream();
   * for (const id of ids) process.stdout.write(s.push(id));
   * process.stdout.write(s.end());
   * ```
   */
  decodeStream(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }


  /** The byte-level vocab string of some text (for byte-level BPE files). */
  static byteLevelString(text: string): string {
    return bytesToToken(UTF8.encode(text));
  }
}

function matcher(tokens: readonly AddedToken[]): AddedMatcher | undefined {
  const byContent = new Map<string, AddedToken>();
  // A token whose normalized content is empty (' ' under a Strip normalizer) matches nothing: an
  // empty alternative would match at every position and splitAdded would never advance.
  for (const t of tokens) if (t.content !== '' && !byContent.has(t.content)) byContent.set(t.content, t);
  if (byContent.size === 0) return undefined;
  // Longest first: at one position the longest token wins (leftmost-longest, as HF).
  const sorted = [...byContent.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
  return { re: new RegExp(sorted.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gu'), byContent };
}

/** Cut `text` (which starts at `offset` of the input) at the added tokens `m` matches. */
function splitAdded(text: string, offset: number, m: AddedMatcher | undefined): Section[] {
  if (text.length === 0) return [];
  if (m === undefined) return [{ text, start: offset }];
  const out: Section[] = [];
  const re = m.re;
  re.lastIndex = 0;
  let last = 0;
  for (let hit = re.exec(text); hit !== null; hit = re.exec(text)) {
    const t = m.byContent.get(hit[0])!;
    let start = hit.index;
    let stop = start + hit[0].length;
    if (t.singleWord) {
      const before = start > 0 && WORD_CHAR.test(String.fromCodePoint(text.codePointAt(start - 1 - (isLowSurrogate(text, start - 1) ? 1 : 0))!));
      const after = stop < text.length && WORD_CHAR.test(String.fromCodePoint(text.codePointAt(stop)!));
      if (before || after) continue;
    }
    if (t.lstrip) {
      const ws = TRAILING_WS.exec(text.slice(last, start));
      if (ws) start -= ws[0].length;
    }
    if (t.rstrip) {
      const ws = LEADING_WS.exec(text.slice(stop));
      if (ws) stop += ws[0].length;
      re.lastIndex = stop;
    }
    if (start > last) out.push({ text: text.slice(last, start), start: offset + last });
    out.push({ id: t.id });
    last = stop;
  }
  if (last < text.length) out.push({ text: text.slice(last), start: offset + last });
  return out;
}

function isLowSurrogate(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff && i > 0;
}
