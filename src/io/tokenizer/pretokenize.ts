/**
 * Pre-tokenization: cutting text into the pieces ("words") that the model never merges across.
 * Mirrors the Hugging Face tokenizers (Rust) pre_tokenizer types: ByteLevel (GPT-2's regex split;
 * the byte mapping itself is done by the BPE model), Split with a regex or string and any of the
 * five delimiter behaviours, Metaspace (SentencePiece's "▁" for spaces, with its prepend scheme
 * and optional split), Digits, Whitespace, WhitespaceSplit, and a Sequence of those.
 */
import { jsonText, TokenizerError } from './errors.js';
import { parsePattern, patternRegex, type Pattern } from './normalize.js';

/** GPT-2's word pattern, which ByteLevel with `use_regex: true` splits on. */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

export interface ByteLevelSpec {
  type: 'ByteLevel';
  add_prefix_space: boolean;
  trim_offsets: boolean;
  use_regex: boolean;
}

/** How the pieces a pattern matches are kept (HF SplitDelimiterBehavior). */
export type SplitBehavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';
const BEHAVIORS: readonly SplitBehavior[] = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];

export interface SplitSpec {
  type: 'Split';
  pattern: Pattern;
  behavior: SplitBehavior;
  invert: boolean;
}

export interface MetaspaceSpec {
  type: 'Metaspace';
  replacement: string;
  prepend_scheme: 'always' | 'first' | 'never';
  split: boolean;
}

export interface DigitsSpec {
  type: 'Digits';
  individual_digits: boolean;
}

export interface SequenceSpec {
  type: 'Sequence';
  pretokenizers: PreTokenizerSpec[];
}

/** A pre_tokenizer of tokenizer.json that this module can run, in the HF field names. */
export type PreTokenizerSpec =
  | ByteLevelSpec
  | SplitSpec
  | MetaspaceSpec
  | DigitsSpec
  | { type: 'Whitespace' }
  | { type: 'WhitespaceSplit' }
  | SequenceSpec;

/** GPT-2's pre-tokenizer, the default for trained tokenizers. */
export const GPT2_PRE_TOKENIZER: ByteLevelSpec = {
  type: 'ByteLevel',
  add_prefix_space: false,
  trim_offsets: true,
  use_regex: true,
};

/** A piece of text; `atStart` when it begins at offset 0 of the encoded text (Metaspace "first"). */
interface Piece {
  text: string;
  atStart: boolean;
}

type Step = (pieces: Piece[]) => Piece[];

/** Unicode \w of Rust's regex crate, and its complement with whitespace. */
const WORD = String.raw`\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}`;

/**
 * A compiled pre-tokenizer: `split(text)` gives the pieces in order.
 * @example
 * ```ts
 * new PreTokenizer(GPT2_PRE_TOKENIZER).split("Hello world's"); // ['Hello', ' world', "'s"]
 * ```
 */
export class PreTokenizer {
  private readonly steps: Step[] = [];
  /** The regex, when the whole pre-tokenizer is one Isolated, non-inverted split. */
  private isolatedOnly: RegExp | undefined;
  private splitCount = 0;
  /** True when some step is ByteLevel, i.e. the spec belongs to a byte-level tokenizer. */
  readonly byteLevel: boolean;

  constructor(
    readonly spec: PreTokenizerSpec | null,
    file?: string,
  ) {
    this.byteLevel = spec !== null && this.compile(spec, 'pre_tokenizer', file);
    if (this.steps.length !== 1 || this.splitCount !== 1) this.isolatedOnly = undefined;
  }

  /** True for GPT-2's own pre-tokenizer (ByteLevel with its regex, no prefix space): llama.cpp's "gpt-2". */
  get isGpt2ByteLevel(): boolean {
    const s = this.spec;
    return s !== null && s.type === 'ByteLevel' && s.use_regex && !s.add_prefix_space;
  }

  /** The pieces of `text`; `atStart` says the text begins the whole input (default true). */
  split(text: string, atStart = true): string[] {
    const fast = this.isolatedOnly;
    if (fast) {
      // The common case (GPT-2 / Llama-3 / Qwen regex splits): no piece objects.
      const out: string[] = [];
      splitIsolated(text, fast, out);
      return out;
    }
    let pieces: Piece[] = [{ text, atStart }];
    for (const step of this.steps) pieces = step(pieces);
    return pieces.map((p) => p.text);
  }

  private compile(spec: PreTokenizerSpec, field: string, file: string | undefined): boolean {
    switch (spec.type) {
      case 'ByteLevel':
        if (spec.add_prefix_space) this.steps.push((ps) => ps.map((p) => (p.text.startsWith(' ') ? p : { ...p, text: ' ' + p.text })));
        if (spec.use_regex) this.pushSplit(compileHfRegex(GPT2_PATTERN, 'pre_tokenizer', file), 'Isolated', false);
        return true;
      case 'Split':
        this.pushSplit(patternRegex(spec.pattern, `${field}.pattern`, file), spec.behavior, spec.invert);
        return false;
      case 'Metaspace': {
        const { replacement: rep, prepend_scheme: scheme } = spec;
        this.steps.push((ps) =>
          ps.map((p) => {
            let t = p.text.replaceAll(' ', rep);
            if (!t.startsWith(rep) && (scheme === 'always' || (scheme === 'first' && p.atStart))) t = rep + t;
            return { ...p, text: t };
          }),
        );
        if (spec.split) this.pushSplit(new RegExp(rep.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu'), 'MergedWithNext', false);
        return false;
      }
      case 'Digits':
        this.pushSplit(/\p{N}/gu, spec.individual_digits ? 'Isolated' : 'Contiguous', false);
        return false;
      case 'Whitespace':
        this.pushSplit(new RegExp(`[${WORD}]+|[^${WORD}\\p{White_Space}]+`, 'gu'), 'Removed', true);
        return false;
      case 'WhitespaceSplit':
        this.pushSplit(/\p{White_Space}+/gu, 'Removed', false);
        return false;
      case 'Sequence': {
        let byteLevel = false;
        spec.pretokenizers.forEach((s, i) => {
          byteLevel = this.compile(s, `${field}.pretokenizers[${i}]`, file) || byteLevel;
        });
        return byteLevel;
      }
    }
  }

  private pushSplit(re: RegExp, behavior: SplitBehavior, invert: boolean): void {
    this.splitCount++;
    if (behavior === 'Isolated' && !invert) this.isolatedOnly = re;
    this.steps.push((ps) => {
      const out: Piece[] = [];
      for (const p of ps) splitPiece(p, re, behavior, invert, out);
      return out;
    });
  }
}

/**
 * Call `onMatch(start, end)` for each non-empty match of the global `re` in `text`, in order.
 * Empty matches are stepped over by one code point (exec would find them again forever).
 */
function forEachMatch(text: string, re: RegExp, onMatch: (start: number, end: number) => void): void {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      const c = text.charCodeAt(start);
      re.lastIndex = start + (c >= 0xd800 && c <= 0xdbff && start + 1 < text.length ? 2 : 1);
      continue;
    }
    onMatch(start, end);
  }
}

/** Push the pieces of `text` cut at every match of `re` (global), matches kept as pieces. */
function splitIsolated(text: string, re: RegExp, out: string[]): void {
  if (text.length === 0) return;
  let last = 0;
  forEachMatch(text, re, (start, end) => {
    if (start > last) out.push(text.slice(last, start));
    out.push(text.slice(start, end));
    last = end;
  });
  if (last < text.length) out.push(text.slice(last));
}

/**
 * Cut a piece at the matches of `re` (global) and keep the spans as `behavior` says, as HF's
 * NormalizedString::split: with `invert` the matches are the content and the gaps the delimiters.
 */
function splitPiece(p: Piece, re: RegExp, behavior: SplitBehavior, invert: boolean, out: Piece[]): void {
  const text = p.text;
  if (text.length === 0) return;
  // Spans [start, end, isDelimiter] covering text.
  const spans: [number, number, boolean][] = [];
  let last = 0;
  forEachMatch(text, re, (start, end) => {
    if (start > last) spans.push([last, start, invert]);
    spans.push([start, end, !invert]);
    last = end;
  });
  if (last < text.length) spans.push([last, text.length, invert]);
  // Merge per behaviour into [start, end] ranges.
  const ranges: [number, number][] = [];
  switch (behavior) {
    case 'Removed':
      for (const [s, e, d] of spans) if (!d) ranges.push([s, e]);
      break;
    case 'Isolated':
      for (const [s, e] of spans) ranges.push([s, e]);
      break;
    case 'MergedWithPrevious': {
      // A delimiter joins the span before it, unless that span is itself a delimiter.
      let prevDelim = false;
      for (const [s, e, d] of spans) {
        const prev = ranges[ranges.length - 1];
        if (d && !prevDelim && prev) prev[1] = e;
        else ranges.push([s, e]);
        prevDelim = d;
      }
      break;
    }
    case 'MergedWithNext': {
      let pendingStart = -1;
      for (const [s, e, d] of spans) {
        if (d) {
          if (pendingStart >= 0) ranges.push([pendingStart, s]);
          pendingStart = s;
        } else if (pendingStart >= 0) {
          ranges.push([pendingStart, e]);
          pendingStart = -1;
        } else ranges.push([s, e]);
      }
      if (pendingStart >= 0) ranges.push([pendingStart, text.length]);
      break;
    }
    case 'Contiguous': {
      let prevDelim = false;
      for (const [s, e, d] of spans) {
        const prev = ranges[ranges.length - 1];
        if (d && prevDelim && prev) prev[1] = e;
        else ranges.push([s, e]);
        prevDelim = d;
      }
      break;
    }
  }
  for (const [s, e] of ranges) if (e > s) out.push({ text: text.slice(s, e), atStart: p.atStart && s === 0 });
}

const ONIG_WORD = String.raw`\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}`;
const ESCAPES: Record<string, string> = {
  // Oniguruma's string anchors (JS has none): start, end, end before a final newline.
  A: String.raw`(?<![\s\S])`,
  z: String.raw`(?![\s\S])`,
  Z: String.raw`(?=\n?(?![\s\S]))`,
  s: String.raw`\p{White_Space}`,
  S: String.raw`\P{White_Space}`,
  d: String.raw`\p{Nd}`,
  D: String.raw`\P{Nd}`,
  w: `[${ONIG_WORD}]`,
  W: `[^${ONIG_WORD}]`,
};
const CLASS_ESCAPES: Record<string, string> = {
  s: String.raw`\p{White_Space}`,
  S: String.raw`\P{White_Space}`,
  d: String.raw`\p{Nd}`,
  D: String.raw`\P{Nd}`,
  w: ONIG_WORD,
};

/**
 * Compile a tokenizer.json regex (Oniguruma syntax) as a JS unicode regex: the scoped flag group
 * `(?i:...)` of Llama-3's and Qwen2's contraction alternatives (each ASCII letter spelled as a
 * two-case class), Oniguruma's meaning of \s \d \w and of the anchors ^ $ (lines) \A \z \Z.
 * Anything else JS cannot parse is a TokenizerError naming the field.
 */
export function compileHfRegex(pattern: string, field: string, file?: string): RegExp {
  let out = '';
  let caseless = 0; // > 0 inside (?i:...): the group depth at which it closes
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      // Copy an escape whole; \p{..} and \x{..} carry letters that must not be case-folded.
      let j = i + 2;
      if (pattern[i + 2] === '{' && /[pPx]/.test(pattern[i + 1] ?? '')) j = pattern.indexOf('}', i) + 1 || pattern.length;
      const e = pattern[i + 1] ?? '';
      // Oniguruma's Unicode classes: \s is White_Space (JS \s adds U+FEFF and lacks U+0085),
      // \d any decimal digit, \w Unicode word characters.
      const rewritten = j === i + 2 ? (inClass ? CLASS_ESCAPES : ESCAPES)[e] : undefined;
      out += rewritten ?? pattern.slice(i, j);
      i = j - 1;
      continue;
    }
    if (inClass) {
      if (caseless && /[A-Za-z]/.test(c)) {
        throw new TokenizerError(`unsupported regex: a character class inside (?i:...) in ${JSON.stringify(pattern)}`, file, field);
      }
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
    } else if (c === '(') {
      depth++;
      if (pattern.startsWith('(?i:', i)) {
        if (caseless) throw new TokenizerError(`unsupported regex: nested (?i:...) in ${JSON.stringify(pattern)}`, file, field);
        caseless = depth;
        out += '(?:';
        i += 3;
      } else if (/^\(\?[imsx-]+[:)]/.test(pattern.slice(i))) {
        throw new TokenizerError(`unsupported regex flag group at offset ${i} of ${JSON.stringify(pattern)}`, file, field);
      } else {
        out += c;
      }
    } else if (c === ')') {
      if (depth === caseless) caseless = 0;
      depth--;
      out += c;
    } else if (c === '^') {
      // Oniguruma's ^ and $ are line anchors (JS's, without the m flag, are string anchors).
      out += String.raw`(?:(?<![\s\S])|(?<=\n))`;
    } else if (c === '$') {
      out += String.raw`(?:(?=\n)|(?![\s\S]))`;
    } else if (caseless && /[A-Za-z]/.test(c)) {
      out += `[${c.toLowerCase()}${c.toUpperCase()}]`;
    } else {
      out += c;
    }
  }
  try {
    return new RegExp(out, 'gu');
  } catch (e) {
    throw new TokenizerError(`unsupported regex ${JSON.stringify(pattern)}: ${(e as Error).message}`, file, field);
  }
}

/** Check a tokenizer.json pre_tokenizer value and narrow it to a spec this module runs. */
export function parsePreTokenizer(json: unknown, field: string, file?: string): PreTokenizerSpec {
  const fail = (msg: string, at = field): never => {
    throw new TokenizerError(msg, file, at);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('expected an object');
  const o = json as Record<string, unknown>;
  const flag = (key: string, dflt: boolean): boolean => {
    const v = o[key] ?? dflt;
    return typeof v === 'boolean' ? v : fail('expected a boolean', `${field}.${key}`);
  };
  switch (o.type) {
    case 'ByteLevel':
      return {
        type: 'ByteLevel',
        add_prefix_space: flag('add_prefix_space', true),
        trim_offsets: flag('trim_offsets', true),
        use_regex: flag('use_regex', true),
      };
    case 'Split': {
      const pattern = parsePattern(o.pattern, `${field}.pattern`, file);
      const behavior = o.behavior as SplitBehavior;
      if (!BEHAVIORS.includes(behavior)) fail(`unknown split behavior ${jsonText(o.behavior)} (expected one of ${BEHAVIORS.join(', ')})`, `${field}.behavior`);
      return { type: 'Split', pattern, behavior, invert: flag('invert', false) };
    }
    case 'Metaspace': {
      const replacement = o.replacement ?? '\u2581';
      if (typeof replacement !== 'string' || [...replacement].length !== 1) return fail('expected a single character', `${field}.replacement`);
      // Files before tokenizers 0.19 say add_prefix_space instead of prepend_scheme.
      let scheme = o.prepend_scheme;
      if (scheme === undefined) scheme = flag('add_prefix_space', true) ? 'always' : 'never';
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') return fail(`expected "always", "first" or "never", got ${jsonText(scheme)}`, `${field}.prepend_scheme`);
      return { type: 'Metaspace', replacement, prepend_scheme: scheme, split: flag('split', true) };
    }
    case 'Digits':
      return { type: 'Digits', individual_digits: flag('individual_digits', false) };
    case 'Whitespace':
    case 'WhitespaceSplit':
      return { type: o.type };
    case 'Sequence': {
      if (!Array.isArray(o.pretokenizers)) return fail('expected an array', `${field}.pretokenizers`);
      const parts = o.pretokenizers.map((p, i) => parsePreTokenizer(p, `${field}.pretokenizers[${i}]`, file));
      return { type: 'Sequence', pretokenizers: parts };
    }
    default:
      return fail(
        `unsupported pre-tokenizer type ${jsonText(o.type)} (supported: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Sequence)`,
        `${field}.type`,
      );
  }
}
