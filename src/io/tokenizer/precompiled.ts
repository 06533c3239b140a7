/**
 * SentencePiece's precompiled normalization map (`precompiled_charsmap`): the compiled form of a
 * normalization rule (`nmt_nfkc`, sentencepiece's default, `nfkc_cf`, or a user's TSV). It is in
 * the normalizer_spec of tokenizer.model files and is tokenizer.json's `Precompiled` normalizer
 * (T5, mT5, XLM-R, ALBERT files), base64-encoded.
 *
 * Layout (sentencepiece normalizer.cc, EncodePrecompiledCharsMap): a little-endian u32 trie size
 * in bytes, the trie (a darts-clone double array of little-endian u32 units), then the
 * replacement strings, each NUL-terminated. A key is the UTF-8 of the text to replace; its value
 * is the byte offset of the replacement in the strings.
 *
 * A unit (darts-clone darts.h, DoubleArrayUnit): bits 0-7 the label (the key byte that leads to
 * this node), bit 8 has_leaf (a key ends here), bits 10-31 the offset to this node's children,
 * shifted left by 8 more when bit 9 is set. The child for byte c of the node at p is at
 * p ^ offset ^ c and is real when its label is c; a node's leaf (child 0) holds the value in bits
 * 0-30, with bit 31 set so that no byte matches its label.
 *
 * Normalization is Hugging Face tokenizers' (the spm_precompiled crate, which `Precompiled` and
 * transformers' converted T5 / XLM-R tokenizers run), not sentencepiece's own: the text is cut
 * into extended grapheme clusters; a cluster of fewer than 6 UTF-8 bytes that the trie matches a
 * prefix of is replaced whole by the replacement of the shortest matching prefix; otherwise each
 * character is looked up alone and replaced when it is a key, copied when not. sentencepiece
 * instead replaces the longest key at each byte position. The two agree where the keys that
 * match are single characters or whole clusters (`e\u0301` -> é), and differ on a few constructs
 * (docs/tokenizers.md): a full-width letter with a combining mark (HF drops the mark), a letter
 * with two combining marks in under 6 bytes (HF drops the second), half-width katakana with a
 * voiced mark (HF `サ\u3099`, sentencepiece ザ), adjacent Hangul jamo (sentencepiece composes
 * the syllable), `\r\n` (HF one space, sentencepiece two).
 */
import { TokenizerError } from './errors.js';

const HAS_LEAF = 1 << 8;
const LABEL_MASK = 0x800000ff;
const VALUE_MASK = 0x7fffffff;
/** HF looks a whole grapheme up only when it is shorter than this many UTF-8 bytes. */
const MAX_GRAPHEME_BYTES = 6;
/** The marker bits of a UTF-8 lead byte, by sequence length. */
const UTF8_LEAD = [0, 0, 0xc0, 0xe0, 0xf0];

/** The offset field of a unit: bits 10-31, shifted left by 8 more when bit 9 is set. */
function unitOffset(u: number): number {
  return ((u >>> 10) << ((u & (1 << 9)) >>> 6)) >>> 0;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const GRAPHEMES = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** The bytes of a base64 `precompiled_charsmap` (standard alphabet, padded, as HF writes it). */
export function charsmapFromBase64(b64: string, file?: string, field = 'precompiled_charsmap'): Uint8Array {
  if (!BASE64.test(b64)) throw new TokenizerError('not standard padded base64', file, field);
  return new Uint8Array(Buffer.from(b64, 'base64'));
}

/** The base64 form of charsmap bytes, as tokenizer.json stores it. */
export function charsmapToBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * A parsed precompiled_charsmap. Parsing checks the sizes, that the strings are UTF-8 (as HF
 * does) and every unit of the trie, so that a damaged map is refused when the tokenizer is loaded
 * rather than when some text reaches the damaged node.
 * @example
 * ```ts
 * const map = PrecompiledCharsMap.parse(model.normalizer.precompiledCharsmap, 'tokenizer.model');
 * map.normalize('ﬁne ①'); // 'fine 1' with nmt_nfkc
 * ```
 */
export class PrecompiledCharsMap {
  private readonly replacements = new Map<number, string>();

  private constructor(
    private readonly units: Uint32Array,
    private readonly strings: Uint8Array,
  ) {}

  /** Parse charsmap bytes; `file` and `field` are named in errors. */
  static parse(bytes: Uint8Array, file?: string, field = 'precompiled_charsmap'): PrecompiledCharsMap {
    const fail = (msg: string): never => {
      throw new TokenizerError(`damaged precompiled charsmap: ${msg}`, file, field);
    };
    if (bytes.length < 4) fail(`${bytes.length} bytes, less than the 4-byte trie size`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const trieBytes = view.getUint32(0, true);
    if (trieBytes === 0 || trieBytes % 4 !== 0) fail(`trie size ${trieBytes} is not a positive multiple of 4`);
    if (4 + trieBytes > bytes.length) fail(`trie size ${trieBytes} runs past the end of the ${bytes.length} bytes (truncated?)`);
    const units = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < units.length; i++) units[i] = view.getUint32(4 + 4 * i, true);
    const strings = bytes.slice(4 + trieBytes);
    if (strings.length > 0 && strings[strings.length - 1] !== 0) fail('the replacement strings do not end with NUL (truncated?)');
    try {
      STRICT_UTF8.decode(strings);
    } catch {
      fail('the replacement strings are not UTF-8');
    }
    const map = new PrecompiledCharsMap(units, strings);
    map.checkTrie(fail);
    return map;
  }

  /**
   * Check every unit, so that no lookup can leave the array or read outside the strings: a
   * node's 256 possible children are one aligned block of units, which must exist, and the value
   * of a node's leaf must start a character of the strings. Units with bit 31 set are leaves (a
   * node's offset would reach that bit only in an array of 2^29 units; unused units carry only a
   * label).
   */
  private checkTrie(fail: (msg: string) => never): void {
    const { units, strings } = this;
    const n = units.length;
    for (let p = 0; p < n; p++) {
      const u = units[p]!;
      if (u & 0x80000000) continue;
      const base = (p ^ unitOffset(u)) >>> 0;
      if ((base | 0xff) >= n) fail(`trie unit ${p} points to units ${base & ~0xff}-${base | 0xff}, past the ${n} units`);
      if (p === 0 || !(u & HAS_LEAF)) continue;
      const value = units[base]! & VALUE_MASK;
      // Not past the end, not a UTF-8 continuation byte.
      if (value >= strings.length || (strings[value]! & 0xc0) === 0x80) {
        fail(`trie unit ${base} holds value ${value}, which does not start one of the ${strings.length} bytes of replacement strings`);
      }
    }
  }

  /**
   * The value of the shortest key that is a prefix of text[start, end)'s UTF-8, or -1 (HF's
   * `transform`, which takes the first of the common-prefix-search results). A NUL byte ends the
   * search, as in darts-clone; a lone surrogate is looked up as U+FFFD, its UTF-8 replacement.
   */
  private firstMatch(text: string, start: number, end: number): number {
    const units = this.units;
    let pos = unitOffset(units[0]!);
    for (let i = start; i < end; ) {
      let cp = text.codePointAt(i)!;
      i += cp > 0xffff ? 2 : 1;
      if (cp === 0) return -1;
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
      // The character's UTF-8 bytes, lead byte first.
      const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      for (let k = len - 1; k >= 0; k--) {
        const byte = k === len - 1 ? UTF8_LEAD[len]! | (cp >> (6 * k)) : 0x80 | ((cp >> (6 * k)) & 0x3f);
        const q = pos ^ byte;
        const u = units[q]!;
        if ((u & LABEL_MASK) !== byte) return -1;
        pos = q ^ unitOffset(u);
        if (u & HAS_LEAF) return units[pos]! & VALUE_MASK;
      }
    }
    return -1;
  }

  /** The NUL-terminated replacement string at byte `value` of the strings. */
  private replacement(value: number): string {
    let s = this.replacements.get(value);
    if (s === undefined) {
      let stop = value;
      while (stop < this.strings.length && this.strings[stop] !== 0) stop++;
      s = STRICT_UTF8.decode(this.strings.subarray(value, stop));
      this.replacements.set(value, s);
    }
    return s;
  }

  /**
   * What the map does to `key` looked up alone: the replacement of the shortest key that
   * prefixes it, or undefined when none does (HF's `transform`).
   */
  lookup(key: string): string | undefined {
    const v = this.firstMatch(key, 0, key.length);
    return v < 0 ? undefined : this.replacement(v);
  }

  /** Normalize text as Hugging Face's `Precompiled` normalizer does (see the file comment). */
  normalize(text: string): string {
    const out: string[] = [];
    let copiedTo = 0;
    const replace = (start: number, end: number, value: number) => {
      if (start > copiedTo) out.push(text.slice(copiedTo, start));
      out.push(this.replacement(value));
      copiedTo = end;
    };
    forEachGrapheme(text, (start, end) => {
      if (utf8Length(text, start, end) < MAX_GRAPHEME_BYTES) {
        const v = this.firstMatch(text, start, end);
        if (v >= 0) return replace(start, end, v);
        // One character: the per-character lookup below would be the same miss.
        if (end - start === 1 || (end - start === 2 && text.codePointAt(start)! > 0xffff)) return;
      }
      for (let i = start; i < end; ) {
        const next = i + (text.codePointAt(i)! > 0xffff ? 2 : 1);
        const v = this.firstMatch(text, i, next);
        if (v >= 0) replace(i, next, v);
        i = next;
      }
    });
    if (copiedTo === 0) return text;
    if (copiedTo < text.length) out.push(text.slice(copiedTo));
    return out.join('');
  }
}

/** UTF-8 bytes of text[start, end), a lone surrogate counting as U+FFFD. */
function utf8Length(text: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Call `visit(start, end)` for each extended grapheme cluster of `text` (UAX #29, as Rust's
 * unicode-segmentation `graphemes(true)`), in order. Two ASCII characters other than CR LF always
 * have a boundary between them, so ASCII runs need no segmenter. Elsewhere Intl.Segmenter runs on
 * short windows (its cost grows faster than linearly with the string's length): a boundary
 * depends only on the text before it and the character after, so every boundary a window finds
 * is a boundary of the text, except the window's own end, as long as the window holds whole
 * characters.
 */
export function forEachGrapheme(text: string, visit: (start: number, end: number) => void): void {
  const n = text.length;
  let i = 0;
  let window = 32;
  while (i < n) {
    const c = text.charCodeAt(i);
    const d = i + 1 < n ? text.charCodeAt(i + 1) : 0;
    if (c < 0x80 && d < 0x80 && !(c === 13 && d === 10)) {
      visit(i, i + 1);
      i++;
      continue;
    }
    let end = Math.min(n, i + window);
    // The character after a boundary decides it, so the window must not end inside a surrogate pair.
    if (end < n && (text.charCodeAt(end - 1) & 0xfc00) === 0xd800) end++;
    const starts: number[] = [];
    for (const s of GRAPHEMES.segment(text.slice(i, end))) starts.push(i + s.index);
    if (end < n && starts.length < 2) {
      window *= 2; // one cluster longer than the window: look further
      continue;
    }
    // The last cluster may continue past a window that ends before the text does.
    const last = end < n ? starts.length - 1 : starts.length;
    starts.push(end);
    for (let k = 0; k < last; k++) visit(starts[k]!, starts[k + 1]!);
    i = starts[last]!;
    window = 32;
  }
}
