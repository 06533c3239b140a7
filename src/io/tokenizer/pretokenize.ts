/**
 * Pre-tokenization: cutting text into the pieces ("words") that BPE merges never cross. Mirrors
 * the Hugging Face tokenizers pre_tokenizer types a byte-level BPE file uses: ByteLevel (GPT-2's
 * regex split), Split with a regex and the Isolated behaviour (Llama-3 puts its own regex here and
 * turns ByteLevel's off), and a Sequence of those.
 */
import { TokenizerError } from './errors.js';

/** GPT-2's word pattern, which ByteLevel with `use_regex: true` splits on. */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

export interface ByteLevelSpec {
  type: 'ByteLevel';
  add_prefix_space: boolean;
  trim_offsets: boolean;
  use_regex: boolean;
}

export interface SplitSpec {
  type: 'Split';
  pattern: { Regex: string } | { String: string };
  behavior: 'Isolated';
  invert: false;
}

export interface SequenceSpec {
  type: 'Sequence';
  pretokenizers: PreTokenizerSpec[];
}

/** A pre_tokenizer of tokenizer.json that this module can run, in the HF field names. */
export type PreTokenizerSpec = ByteLevelSpec | SplitSpec | SequenceSpec;

/** GPT-2's pre-tokenizer, the default for trained tokenizers. */
export const GPT2_PRE_TOKENIZER: ByteLevelSpec = {
  type: 'ByteLevel',
  add_prefix_space: false,
  trim_offsets: true,
  use_regex: true,
};

type Step = { kind: 'split'; re: RegExp } | { kind: 'prefixSpace' };

/**
 * A compiled pre-tokenizer: `split(text)` gives the pieces in order; they concatenate to text
 * (plus a leading space per piece when ByteLevel's add_prefix_space is on).
 * @example
 * ```ts
 * new PreTokenizer(GPT2_PRE_TOKENIZER).split("Hello world's"); // ['Hello', ' world', "'s"]
 * ```
 */
export class PreTokenizer {
  private readonly steps: Step[] = [];
  /** True when some step is ByteLevel, i.e. the spec belongs to a byte-level tokenizer. */
  readonly byteLevel: boolean;

  constructor(
    readonly spec: PreTokenizerSpec,
    file?: string,
  ) {
    this.byteLevel = this.compile(spec, 'pre_tokenizer', file);
  }

  /** True for GPT-2's own pre-tokenizer (ByteLevel with its regex, no prefix space): llama.cpp's "gpt-2". */
  get isGpt2ByteLevel(): boolean {
    const s = this.spec;
    return s.type === 'ByteLevel' && s.use_regex && !s.add_prefix_space;
  }

  split(text: string): string[] {
    let pieces = [text];
    for (const step of this.steps) {
      const out: string[] = [];
      if (step.kind === 'prefixSpace') {
        for (const p of pieces) out.push(p.startsWith(' ') ? p : ' ' + p);
      } else {
        for (const p of pieces) splitIsolated(p, step.re, out);
      }
      pieces = out;
    }
    return pieces;
  }

  private compile(spec: PreTokenizerSpec, field: string, file: string | undefined): boolean {
    switch (spec.type) {
      case 'ByteLevel':
        if (spec.add_prefix_space) this.steps.push({ kind: 'prefixSpace' });
        if (spec.use_regex) this.steps.push({ kind: 'split', re: new RegExp(GPT2_PATTERN, 'gu') });
        return true;
      case 'Split': {
        const re =
          'Regex' in spec.pattern
            ? compileHfRegex(spec.pattern.Regex, `${field}.pattern.Regex`, file)
            : new RegExp(spec.pattern.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
        this.steps.push({ kind: 'split', re });
        return false;
      }
      case 'Sequence': {
        let byteLevel = false;
        spec.pretokenizers.forEach((s, i) => {
          byteLevel = this.compile(s, `${field}.pretokenizers[${i}]`, file) || byteLevel;
        });
        return byteLevel;
      }
    }
  }
}

/** Push the pieces of `text` cut at every match of `re` (global), matches kept as pieces. */
function splitIsolated(text: string, re: RegExp, out: string[]): void {
  if (text.length === 0) return;
  re.lastIndex = 0;
  let last = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      // An empty match: step over one code point, or exec would find it again forever.
      const c = text.charCodeAt(start);
      re.lastIndex = start + (c >= 0xd800 && c <= 0xdbff && start + 1 < text.length ? 2 : 1);
      continue;
    }
    if (start > last) out.push(text.slice(last, start));
    out.push(m[0]);
    last = end;
  }
  if (last < text.length) out.push(text.slice(last));
}

/**
 * Compile a tokenizer.json regex (Oniguruma syntax) as a JS unicode regex. The one construct the
 * common byte-level files use that JS (Node 20) lacks is the scoped flag group `(?i:...)` of
 * Llama-3's and Qwen2's contraction alternatives; it is rewritten by spelling each ASCII letter as
 * a two-case class. Anything else JS cannot parse is a TokenizerError naming the field.
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
      out += pattern.slice(i, j);
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
      const p = o.pattern as Record<string, unknown> | undefined;
      let pattern: SplitSpec['pattern'];
      if (typeof p?.Regex === 'string') pattern = { Regex: p.Regex };
      else if (typeof p?.String === 'string') pattern = { String: p.String };
      else return fail('expected {"Regex": string} or {"String": string}', `${field}.pattern`);
      if (o.behavior !== 'Isolated') fail(`unsupported split behavior ${JSON.stringify(o.behavior)} (only "Isolated")`, `${field}.behavior`);
      if (o.invert !== false && o.invert !== undefined) fail('unsupported inverted split', `${field}.invert`);
      return { type: 'Split', pattern, behavior: 'Isolated', invert: false };
    }
    case 'Sequence': {
      if (!Array.isArray(o.pretokenizers)) return fail('expected an array', `${field}.pretokenizers`);
      const parts = o.pretokenizers.map((p, i) => parsePreTokenizer(p, `${field}.pretokenizers[${i}]`, file));
      return { type: 'Sequence', pretokenizers: parts };
    }
    default:
      return fail(`unsupported pre-tokenizer type ${JSON.stringify(o.type)} (supported: ByteLevel, Split, Sequence)`, `${field}.type`);
  }
}
