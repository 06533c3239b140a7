/**
 * Decoders of tokenizer.json: how token strings become text again. Byte-level files use
 * ByteLevel (each character stands for a byte); SentencePiece-style files (Llama-2, Mistral)
 * chain Replace "▁" -> " ", ByteFallback (`<0xXX>` tokens back to bytes), Fuse and Strip (the
 * dummy prefix's space); Metaspace does the first two at once. Semantics are those of Hugging
 * Face tokenizers (Rust), including U+FFFD for each byte of an invalid `<0xXX>` run.
 */
import { CHAR_TO_BYTE } from './byte-level.js';
import { jsonText, TokenizerError } from './errors.js';
import { parsePattern, patternRegex, type Pattern } from './normalize.js';

export type DecoderSpec =
  | { type: 'ByteLevel'; add_prefix_space: boolean; trim_offsets: boolean; use_regex: boolean }
  | { type: 'Replace'; pattern: Pattern; content: string }
  | { type: 'ByteFallback' }
  | { type: 'Fuse' }
  | { type: 'Strip'; content: string; start: number; stop: number }
  | { type: 'Metaspace'; replacement: string; prepend_scheme: 'always' | 'first' | 'never'; split: boolean }
  | { type: 'BPEDecoder'; suffix: string }
  | { type: 'Sequence'; decoders: DecoderSpec[] };

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const SUPPORTED = 'ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder, Sequence';

/** Check a tokenizer.json `decoder` value (null: tokens joined with spaces, as HF). */
export function parseDecoder(json: unknown, field: string, file?: string): DecoderSpec | null {
  const fail = (msg: string, at = field): never => {
    throw new TokenizerError(msg, file, at);
  };
  if (json === null || json === undefined) return null;
  if (!isObject(json)) return fail('expected an object or null');
  const flag = (key: string, dflt: boolean): boolean => {
    const v = json[key] ?? dflt;
    return typeof v === 'boolean' ? v : fail('expected a boolean', `${field}.${key}`);
  };
  const count = (key: string): number => {
    const v = json[key] ?? 0;
    return Number.isInteger(v) && (v as number) >= 0 ? (v as number) : fail('expected a non-negative integer', `${field}.${key}`);
  };
  switch (json.type) {
    case 'ByteLevel':
      return { type: 'ByteLevel', add_prefix_space: flag('add_prefix_space', true), trim_offsets: flag('trim_offsets', true), use_regex: flag('use_regex', true) };
    case 'Replace': {
      if (typeof json.content !== 'string') return fail('expected a string', `${field}.content`);
      return { type: 'Replace', pattern: parsePattern(json.pattern, `${field}.pattern`, file), content: json.content };
    }
    case 'ByteFallback':
    case 'Fuse':
      return { type: json.type };
    case 'Strip': {
      const content = json.content ?? ' ';
      if (typeof content !== 'string' || [...content].length !== 1) return fail('expected one character', `${field}.content`);
      return { type: 'Strip', content, start: count('start'), stop: count('stop') };
    }
    case 'Metaspace': {
      const replacement = json.replacement ?? '\u2581';
      if (typeof replacement !== 'string' || [...replacement].length !== 1) return fail('expected a single character', `${field}.replacement`);
      let scheme = json.prepend_scheme;
      if (scheme === undefined) scheme = flag('add_prefix_space', true) ? 'always' : 'never';
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') return fail(`expected "always", "first" or "never", got ${jsonText(scheme)}`, `${field}.prepend_scheme`);
      return { type: 'Metaspace', replacement, prepend_scheme: scheme, split: flag('split', true) };
    }
    case 'BPEDecoder': {
      const suffix = json.suffix ?? '</w>';
      if (typeof suffix !== 'string') return fail('expected a string', `${field}.suffix`);
      return { type: 'BPEDecoder', suffix };
    }
    case 'Sequence': {
      if (!Array.isArray(json.decoders)) return fail('expected an array', `${field}.decoders`);
      const parts = json.decoders.map((d, i) => parseDecoder(d, `${field}.decoders[${i}]`, file));
      if (parts.some((p) => p === null)) fail('a null entry', `${field}.decoders`);
      return { type: 'Sequence', decoders: parts as DecoderSpec[] };
    }
    default:
      return fail(`unsupported decoder type ${jsonText(json.type)} (supported: ${SUPPORTED})`, `${field}.type`);
  }
}

/** One decoder step: token strings in, token strings out (HF decode_chain). */
type Chain = (tokens: string[]) => string[];

const UTF8_FATAL = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const UTF8_LOSSY = new TextDecoder('utf-8', { ignoreBOM: true });
const ENCODER = new TextEncoder();

/**
 * Compile a decoder. `isAdded(token)` tells added tokens, which the ByteLevel step keeps as
 * their literal text (their characters are not byte-level symbols).
 */
export function compileDecoder(spec: DecoderSpec | null, isAdded: (token: string) => boolean, field = 'decoder', file?: string): (tokens: string[]) => string {
  if (spec === null) return (tokens) => tokens.join(' ');
  const chain = compileChain(spec, isAdded, field, file);
  return (tokens) => chain(tokens).join('');
}

function compileChain(spec: DecoderSpec, isAdded: (token: string) => boolean, field: string, file?: string): Chain {
  switch (spec.type) {
    case 'ByteLevel':
      return (tokens) => {
        const out: string[] = [];
        let bytes: number[] = [];
        const flush = () => {
          if (bytes.length) out.push(UTF8_LOSSY.decode(Uint8Array.from(bytes)));
          bytes = [];
        };
        for (const t of tokens) {
          if (isAdded(t)) {
            flush();
            out.push(t);
            continue;
          }
          const start = bytes.length;
          let ok = true;
          for (const c of t) {
            const b = CHAR_TO_BYTE.get(c);
            if (b === undefined) {
              ok = false;
              break;
            }
            bytes.push(b);
          }
          if (!ok) {
            bytes.length = start;
            for (const b of ENCODER.encode(t)) bytes.push(b);
          }
        }
        flush();
        return out.length ? [out.join('')] : [];
      };
    case 'Replace': {
      const re = patternRegex(spec.pattern, `${field}.pattern`, file);
      const content = spec.content;
      return (tokens) => tokens.map((t) => t.replace(re, () => content));
    }
    case 'ByteFallback':
      return (tokens) => {
        const out: string[] = [];
        let run: number[] = [];
        const flush = () => {
          if (!run.length) return;
          try {
            out.push(UTF8_FATAL.decode(Uint8Array.from(run)));
          } catch {
            for (let i = 0; i < run.length; i++) out.push('\ufffd');
          }
          run = [];
        };
        for (const t of tokens) {
          const b = t.length === 6 && t.startsWith('<0x') && t.endsWith('>') && /^[0-9A-Fa-f]{2}$/.test(t.slice(3, 5)) ? parseInt(t.slice(3, 5), 16) : -1;
          if (b >= 0) run.push(b);
          else {
            flush();
            out.push(t);
          }
        }
        flush();
        return out;
      };
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Strip': {
      const { content, start, stop } = spec;
      return (tokens) =>
        tokens.map((t) => {
          const cs = Array.from(t);
          let a = 0;
          while (a < start && a < cs.length && cs[a] === content) a++;
          let b = cs.length;
          while (cs.length - b < stop && b > a && cs[b - 1] === content) b--;
          return cs.slice(a, b).join('');
        });
    }
    case 'Metaspace': {
      const { replacement: rep, prepend_scheme: scheme } = spec;
      // Rust: every replacement char becomes a space, except in the first token, where they are
      // dropped when a prefix was prepended.
      return (tokens) => tokens.map((t, i) => t.replaceAll(rep, i === 0 && scheme !== 'never' ? '' : ' '));
    }
    case 'BPEDecoder': {
      const suffix = spec.suffix;
      return (tokens) => tokens.map((t, i) => t.replaceAll(suffix, i === tokens.length - 1 ? '' : ' '));
    }
    case 'Sequence': {
      const steps = spec.decoders.map((d, i) => compileChain(d, isAdded, `${field}.decoders[${i}]`, file));
      return (tokens) => {
        for (const s of steps) tokens = s(tokens);
        return tokens;
      };
    }
  }
}

/** True when decoding is exactly the byte-level mapping (a ByteLevel decoder, maybe in a Sequence of one). */
export function isByteLevelDecoder(spec: DecoderSpec | null): boolean {
  if (spec === null) return false;
  if (spec.type === 'ByteLevel') return true;
  return spec.type === 'Sequence' && spec.decoders.length === 1 && isByteLevelDecoder(spec.decoders[0]!);
}
