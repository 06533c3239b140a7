/**
 * Normalizers of tokenizer.json: what a tokenizer does to text before pre-tokenization.
 * Llama-2 / Mistral / Mixtral files use Sequence[Prepend "▁", Replace " " -> "▁"] (the
 * SentencePiece dummy prefix and whitespace escape, spelled as normalizers); Qwen2/3 use NFC;
 * T5 / XLM-R / ALBERT files use Precompiled, SentencePiece's compiled NFKC rules (precompiled.ts).
 * Semantics are those of Hugging Face tokenizers (Rust): Prepend only touches non-empty text,
 * Replace replaces every match, Strip trims Unicode whitespace.
 */
import { jsonText, TokenizerError } from './errors.js';
import { charsmapFromBase64, PrecompiledCharsMap } from './precompiled.js';
import { compileHfRegex } from './pretokenize.js';

export type Pattern = { String: string } | { Regex: string };

export type NormalizerSpec =
  | { type: 'NFC' | 'NFD' | 'NFKC' | 'NFKD' | 'Lowercase' | 'StripAccents' }
  | { type: 'Prepend'; prepend: string }
  | { type: 'Replace'; pattern: Pattern; content: string }
  | { type: 'Strip'; strip_left: boolean; strip_right: boolean }
  /** SentencePiece's normalization map, base64 as in the file (kept to be written back). */
  | { type: 'Precompiled'; precompiled_charsmap: string }
  | { type: 'Sequence'; normalizers: NormalizerSpec[] };

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const SUPPORTED = 'NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Prepend, Replace, Strip, Precompiled, Sequence';

/** Check a tokenizer.json `normalizer` value (null: none). */
export function parseNormalizer(json: unknown, field: string, file?: string): NormalizerSpec | null {
  const fail = (msg: string, at = field): never => {
    throw new TokenizerError(msg, file, at);
  };
  if (json === null || json === undefined) return null;
  if (!isObject(json)) return fail('expected an object or null');
  const str = (key: string): string => (typeof json[key] === 'string' ? (json[key] as string) : fail('expected a string', `${field}.${key}`));
  switch (json.type) {
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
    case 'Lowercase':
    case 'StripAccents':
      return { type: json.type };
    case 'Prepend':
      return { type: 'Prepend', prepend: str('prepend') };
    case 'Replace':
      return { type: 'Replace', pattern: parsePattern(json.pattern, `${field}.pattern`, file), content: str('content') };
    case 'Strip': {
      const flag = (key: string): boolean => {
        const v = json[key] ?? true;
        return typeof v === 'boolean' ? v : fail('expected a boolean', `${field}.${key}`);
      };
      return { type: 'Strip', strip_left: flag('strip_left'), strip_right: flag('strip_right') };
    }
    case 'Sequence': {
      if (!Array.isArray(json.normalizers)) return fail('expected an array', `${field}.normalizers`);
      const parts = json.normalizers.map((n, i) => parseNormalizer(n, `${field}.normalizers[${i}]`, file));
      if (parts.some((p) => p === null)) fail('a null entry', `${field}.normalizers`);
      return { type: 'Sequence', normalizers: parts as NormalizerSpec[] };
    }
    case 'Precompiled':
      return { type: 'Precompiled', precompiled_charsmap: str('precompiled_charsmap') };
    default:
      return fail(`unsupported normalizer ${jsonText(json.type)} (supported: ${SUPPORTED})`, `${field}.type`);
  }
}

/** {"String": s} or {"Regex": r} of Replace and Split. */
export function parsePattern(json: unknown, field: string, file?: string): Pattern {
  if (isObject(json) && typeof json.String === 'string') return { String: json.String };
  if (isObject(json) && typeof json.Regex === 'string') return { Regex: json.Regex };
  throw new TokenizerError('expected {"String": string} or {"Regex": string}', file, field);
}

/** A global JS regex for a pattern (String patterns escaped). */
export function patternRegex(p: Pattern, field: string, file?: string): RegExp {
  if ('Regex' in p) return compileHfRegex(p.Regex, `${field}.Regex`, file);
  return new RegExp(p.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
}

export type NormalizeFn = (text: string) => string;

/** Compile a normalizer to a function (identity for null). */
export function compileNormalizer(spec: NormalizerSpec | null, field = 'normalizer', file?: string): NormalizeFn {
  if (spec === null) return (t) => t;
  switch (spec.type) {
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = spec.type;
      return (t) => t.normalize(form);
    }
    case 'Lowercase':
      // Character by character, as Rust's char::to_lowercase: no final-sigma rule (JS
      // toLowerCase turns a word-final Σ into ς, Rust into σ).
      return (t) => (/[\u03a3]/.test(t) ? Array.from(t, (c) => c.toLowerCase()).join('') : t.toLowerCase());
    case 'StripAccents':
      // Rust removes combining marks (Mn) from whatever form the text is in.
      return (t) => t.replace(/\p{Mn}/gu, '');
    case 'Prepend': {
      const p = spec.prepend;
      return (t) => (t.length > 0 ? p + t : t);
    }
    case 'Replace': {
      const re = patternRegex(spec.pattern, `${field}.pattern`, file);
      const content = spec.content;
      return (t) => t.replace(re, () => content);
    }
    case 'Strip': {
      // Unicode White_Space, as Rust's char::is_whitespace (JS trim() would also take U+FEFF).
      const { strip_left: l, strip_right: r } = spec;
      return (t) => {
        if (l) t = t.replace(/^\p{White_Space}+/u, '');
        if (r) t = t.replace(/\p{White_Space}+$/u, '');
        return t;
      };
    }
    case 'Precompiled': {
      // Checked here, where the file and the field's path are known; parsing is cheap.
      const at = `${field}.precompiled_charsmap`;
      const map = PrecompiledCharsMap.parse(charsmapFromBase64(spec.precompiled_charsmap, file, at), file, at);
      return (t) => map.normalize(t);
    }
    case 'Sequence': {
      const fns = spec.normalizers.map((n, i) => compileNormalizer(n, `${field}.normalizers[${i}]`, file));
      if (fns.length === 1) return fns[0]!;
      return (t) => {
        for (const f of fns) t = f(t);
        return t;
      };
    }
  }
}
