/**
 * SentencePiece `tokenizer.model` files: the protobuf ModelProto (sentencepiece_model.proto) read
 * and written by hand, and the conversion to a Hugging Face tokenizer that transformers does for
 * Llama-family models (Llama-2, Mistral, Mixtral, Skywork): BPE pieces become a vocab whose
 * merges are ordered by the merged piece's score, byte pieces `<0xXX>` give byte fallback, the
 * dummy prefix and whitespace escape become a Prepend "▁" / Replace " " -> "▁" normalizer (or,
 * with `legacy: false` in tokenizer_config.json, a Metaspace pre-tokenizer that prepends once),
 * and control / user-defined pieces become added tokens. Unigram models become a Unigram tokenizer
 * with a Metaspace pre-tokenizer. A precompiled normalization map (nmt_nfkc, sentencepiece's
 * default rule) becomes a Precompiled normalizer ahead of the rest. What is not representable
 * (whitespace-as-suffix, WORD/CHAR models) is a TokenizerError naming the field.
 *
 * ModelProto fields used: 1 pieces {1 piece, 2 score (float), 3 type}, 2 trainer_spec
 * {3 model_type, 4 vocab_size, 24 treat_whitespace_as_suffix, 35 byte_fallback, 40-43
 * unk/bos/eos/pad ids}, 3 normalizer_spec {1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 * 4 remove_extra_whitespaces, 5 escape_whitespaces}. Unknown fields are skipped, as protobuf does.
 */
import { BpeModel } from './bpe.js';
import type { DecoderSpec } from './decoders.js';
import { TokenizerError } from './errors.js';
import type { NormalizerSpec } from './normalize.js';
import { charsmapToBase64, PrecompiledCharsMap } from './precompiled.js';
import type { PreTokenizerSpec } from './pretokenize.js';
import { Tokenizer, type AddedToken, type SpecialTokenRoles } from './tokenizer.js';
import { UnigramModel } from './unigram.js';

/** SentencePiece piece types (ModelProto.SentencePiece.Type). */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
export type PieceTypeValue = (typeof PieceType)[keyof typeof PieceType];

/** ModelType of TrainerSpec. */
export const SpmModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceTypeValue;
}

/** The parts of a ModelProto a tokenizer needs (proto2 defaults filled in). */
export interface SentencePieceModel {
  pieces: SentencePiece[];
  trainer: {
    modelType: number;
    vocabSize: number;
    byteFallback: boolean;
    treatWhitespaceAsSuffix: boolean;
    unkId: number;
    bosId: number;
    eosId: number;
    padId: number;
  };
  normalizer: {
    name: string;
    precompiledCharsmap: Uint8Array;
    addDummyPrefix: boolean;
    removeExtraWhitespaces: boolean;
    escapeWhitespaces: boolean;
  };
}

// ------------------------------------------------------------------ protobuf wire format

const enum Wire {
  Varint = 0,
  Fixed64 = 1,
  Bytes = 2,
  Fixed32 = 5,
}

class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    private readonly file: string,
    private readonly where: string,
  ) {}

  fail(msg: string): never {
    throw new TokenizerError(`not a SentencePiece model: ${msg} at byte ${this.pos} of ${this.where}`, this.file);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** A varint as a BigInt-free number: up to 64 bits, returned as a signed 64-bit value's low part
   * interpreted for int32 fields by the caller. */
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) this.fail('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
      shift += 7n;
    }
    return this.fail('varint longer than 10 bytes');
  }

  int32(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }

  bool(): boolean {
    return this.varint() !== 0n;
  }

  bytes(): Uint8Array {
    const n = Number(this.varint());
    if (this.pos + n > this.buf.length) this.fail(`length ${n} runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  float(): number {
    if (this.pos + 4 > this.buf.length) this.fail('truncated float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  /** The next field: [number, wire type]. */
  tag(): [number, Wire] {
    const t = Number(this.varint());
    const field = t >>> 3;
    if (field === 0) this.fail('field number 0');
    return [field, (t & 7) as Wire];
  }

  skip(wire: Wire): void {
    switch (wire) {
      case Wire.Varint:
        this.varint();
        return;
      case Wire.Fixed64:
        this.pos += 8;
        break;
      case Wire.Bytes:
        this.bytes();
        return;
      case Wire.Fixed32:
        this.pos += 4;
        break;
      default:
        this.fail(`unsupported wire type ${wire as number}`);
    }
    if (this.pos > this.buf.length) this.fail('truncated field');
  }
}

// ignoreBOM: a piece may be U+FEFF itself (Llama-2 has one), which must not be dropped as a BOM.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function text(r: Reader, b: Uint8Array): string {
  try {
    return UTF8.decode(b);
  } catch {
    return r.fail('a string that is not UTF-8');
  }
}

/** Parse a tokenizer.model (ModelProto). */
export function parseSentencePiece(buf: Uint8Array, file = 'tokenizer.model'): SentencePieceModel {
  const m: SentencePieceModel = {
    pieces: [],
    trainer: { modelType: SpmModelType.UNIGRAM, vocabSize: 8000, byteFallback: false, treatWhitespaceAsSuffix: false, unkId: 0, bosId: 1, eosId: 2, padId: -1 },
    normalizer: { name: '', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
  };
  const r = new Reader(buf, file, 'ModelProto');
  const expect = (rr: Reader, wire: Wire, want: Wire, name: string) => {
    if (wire !== want) rr.fail(`field ${name} has wire type ${wire}, expected ${want}`);
  };
  while (!r.done) {
    const [f, w] = r.tag();
    if (f === 1) {
      expect(r, w, Wire.Bytes, 'pieces');
      const p = new Reader(r.bytes(), file, `pieces[${m.pieces.length}]`);
      const piece: SentencePiece = { piece: '', score: 0, type: PieceType.NORMAL };
      while (!p.done) {
        const [pf, pw] = p.tag();
        if (pf === 1 && pw === Wire.Bytes) piece.piece = text(p, p.bytes());
        else if (pf === 2 && pw === Wire.Fixed32) piece.score = p.float();
        else if (pf === 3 && pw === Wire.Varint) {
          const t = p.int32();
          if (t < 1 || t > 6) p.fail(`unknown piece type ${t}`);
          piece.type = t as PieceTypeValue;
        } else p.skip(pw);
      }
      m.pieces.push(piece);
    } else if (f === 2) {
      expect(r, w, Wire.Bytes, 'trainer_spec');
      const t = new Reader(r.bytes(), file, 'trainer_spec');
      while (!t.done) {
        const [tf, tw] = t.tag();
        if (tw !== Wire.Varint) {
          t.skip(tw);
          continue;
        }
        if (tf === 3) m.trainer.modelType = t.int32();
        else if (tf === 4) m.trainer.vocabSize = t.int32();
        else if (tf === 24) m.trainer.treatWhitespaceAsSuffix = t.bool();
        else if (tf === 35) m.trainer.byteFallback = t.bool();
        else if (tf === 40) m.trainer.unkId = t.int32();
        else if (tf === 41) m.trainer.bosId = t.int32();
        else if (tf === 42) m.trainer.eosId = t.int32();
        else if (tf === 43) m.trainer.padId = t.int32();
        else t.skip(tw);
      }
    } else if (f === 3) {
      expect(r, w, Wire.Bytes, 'normalizer_spec');
      const n = new Reader(r.bytes(), file, 'normalizer_spec');
      while (!n.done) {
        const [nf, nw] = n.tag();
        if (nf === 1 && nw === Wire.Bytes) m.normalizer.name = text(n, n.bytes());
        else if (nf === 2 && nw === Wire.Bytes) m.normalizer.precompiledCharsmap = n.bytes().slice();
        else if (nf === 3 && nw === Wire.Varint) m.normalizer.addDummyPrefix = n.bool();
        else if (nf === 4 && nw === Wire.Varint) m.normalizer.removeExtraWhitespaces = n.bool();
        else if (nf === 5 && nw === Wire.Varint) m.normalizer.escapeWhitespaces = n.bool();
        else n.skip(nw);
      }
    } else r.skip(w);
  }
  if (m.pieces.length === 0) r.fail('no pieces');
  return m;
}

class Writer {
  private readonly parts: number[] = [];

  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.parts.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.parts.push(Number(x));
    return this;
  }

  tag(field: number, wire: Wire): this {
    return this.varint((field << 3) | wire);
  }

  int(field: number, v: number | boolean): this {
    return this.tag(field, Wire.Varint).varint(typeof v === 'boolean' ? (v ? 1 : 0) : v);
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, Wire.Bytes).varint(b.length);
    for (const x of b) this.parts.push(x);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  float(field: number, v: number): this {
    this.tag(field, Wire.Fixed32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    for (const x of b) this.parts.push(x);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Serialize a model as a tokenizer.model (readable by the sentencepiece library). */
export function sentencePieceToBytes(m: SentencePieceModel): Uint8Array {
  const w = new Writer();
  for (const p of m.pieces) {
    const pw = new Writer().string(1, p.piece).float(2, p.score);
    if (p.type !== PieceType.NORMAL) pw.int(3, p.type);
    w.bytes(1, pw.finish());
  }
  const t = m.trainer;
  w.bytes(
    2,
    new Writer()
      .int(3, t.modelType)
      .int(4, t.vocabSize)
      .int(24, t.treatWhitespaceAsSuffix)
      .int(35, t.byteFallback)
      .int(40, t.unkId)
      .int(41, t.bosId)
      .int(42, t.eosId)
      .int(43, t.padId)
      .finish(),
  );
  const n = m.normalizer;
  const nw = new Writer().string(1, n.name);
  if (n.precompiledCharsmap.length) nw.bytes(2, n.precompiledCharsmap);
  w.bytes(3, nw.int(3, n.addDummyPrefix).int(4, n.removeExtraWhitespaces).int(5, n.escapeWhitespaces).finish());
  return w.finish();
}

// ------------------------------------------------------------------ conversion

/**
 * BPE merges implied by scored pieces, as transformers' SentencePieceExtractor: every split of a
 * piece into two pieces of the vocab, ordered by the merged piece's score (highest first), ties
 * keeping piece order, then the ids of the two halves.
 */
export function mergesFromPieces(pieces: readonly SentencePiece[]): [string, string][] {
  const vocab = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (!vocab.has(p.piece)) vocab.set(p.piece, id);
  });
  const all: { l: string; r: string; score: number; order: number }[] = [];
  pieces.forEach((p) => {
    const cps = Array.from(p.piece);
    const local: { l: string; r: string }[] = [];
    for (let i = 1; i < cps.length; i++) {
      const l = cps.slice(0, i).join('');
      const r = cps.slice(i).join('');
      if (vocab.has(l) && vocab.has(r)) local.push({ l, r });
    }
    local.sort((a, b) => vocab.get(a.l)! - vocab.get(b.l)! || vocab.get(a.r)! - vocab.get(b.r)!);
    for (const x of local) all.push({ ...x, score: p.score, order: all.length });
  });
  // Stable: equal scores keep their order (Array.prototype.sort is stable).
  all.sort((a, b) => b.score - a.score);
  return all.map((x) => [x.l, x.r]);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * What SentencePiece's normalizer does before the dummy prefix and the "▁" escape, as
 * normalizers: the precompiled map first (as transformers' SpmConverter places it), then, with
 * remove_extra_whitespaces, dropping leading, trailing and repeated spaces. sentencepiece removes
 * spaces from the map's output (normalizer.cc: a space the map produces counts, a character it
 * maps to "" does not), which is what running these on the mapped text does. At the end it strips
 * "▁" after escaping spaces, so a "▁" the text ends with goes too.
 */
function textNormalizers(m: SentencePieceModel, file: string): NormalizerSpec[] {
  const out: NormalizerSpec[] = [];
  const charsmap = m.normalizer.precompiledCharsmap;
  if (charsmap.length > 0) {
    // Parsed here so that a damaged map is named by its field in the .model.
    PrecompiledCharsMap.parse(charsmap, file, 'normalizer_spec.precompiled_charsmap');
    out.push({ type: 'Precompiled', precompiled_charsmap: charsmapToBase64(charsmap) });
  }
  if (m.normalizer.removeExtraWhitespaces) {
    out.push({ type: 'Replace', pattern: { Regex: '\\A +|[ \u2581]+\\z' }, content: '' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' });
  }
  return out;
}

/**
 * A Tokenizer for a parsed SentencePiece model. `config` (tokenizer_config.json, optional) can
 * set add_bos_token / add_eos_token and the role names, as for tokenizer.json files.
 */
export function tokenizerFromSentencePieceModel(m: SentencePieceModel, file = 'tokenizer.model', config?: unknown, configFile = 'tokenizer_config.json'): Tokenizer {
  const fail = (msg: string, field: string): never => {
    throw new TokenizerError(msg, file, field);
  };
  const t = m.trainer;
  if (t.modelType !== SpmModelType.BPE && t.modelType !== SpmModelType.UNIGRAM) {
    fail(`model type ${t.modelType} (${t.modelType === SpmModelType.WORD ? 'WORD' : t.modelType === SpmModelType.CHAR ? 'CHAR' : 'unknown'}) is not supported (BPE and UNIGRAM are)`, 'trainer_spec.model_type');
  }
  if (t.treatWhitespaceAsSuffix) fail('whitespace as a suffix is not supported', 'trainer_spec.treat_whitespace_as_suffix');
  if (!m.normalizer.escapeWhitespaces) fail('models that keep spaces unescaped are not supported', 'normalizer_spec.escape_whitespaces');
  const pieceAt = (id: number, field: string): string | undefined => {
    if (id < 0) return undefined;
    return m.pieces[id]?.piece ?? fail(`id ${id} is outside the ${m.pieces.length} pieces`, field);
  };
  const unk = pieceAt(t.unkId, 'trainer_spec.unk_id');
  const roles: SpecialTokenRoles = {};
  const bos = pieceAt(t.bosId, 'trainer_spec.bos_id');
  const eos = pieceAt(t.eosId, 'trainer_spec.eos_id');
  const pad = pieceAt(t.padId, 'trainer_spec.pad_id');
  if (bos !== undefined) roles.bos = bos;
  if (eos !== undefined) roles.eos = eos;
  if (pad !== undefined) roles.pad = pad;
  if (unk !== undefined) roles.unk = unk;

  // Control and unknown pieces are special added tokens; user-defined pieces plain added tokens.
  const addedTokens: AddedToken[] = [];
  m.pieces.forEach((p, id) => {
    if (p.type === PieceType.CONTROL || p.type === PieceType.UNKNOWN) addedTokens.push({ id, content: p.piece, special: true, normalized: false });
    else if (p.type === PieceType.USER_DEFINED) addedTokens.push({ id, content: p.piece, special: false, normalized: false });
  });

  let addBos = bos !== undefined;
  let addEos = false;
  let chatTemplate: string | Record<string, string> | undefined;
  if (isObject(config)) {
    for (const role of ['bos', 'eos', 'pad', 'unk'] as const) {
      const v = config[`${role}_token`];
      const content = typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : undefined;
      if (content === undefined) continue;
      if (!m.pieces.some((p) => p.piece === content)) throw new TokenizerError(`${JSON.stringify(content)} is not a piece of ${file}`, configFile, `${role}_token`);
      roles[role] = content;
    }
    if (typeof config.add_bos_token === 'boolean') addBos = config.add_bos_token;
    if (typeof config.add_eos_token === 'boolean') addEos = config.add_eos_token;
    if (typeof config.chat_template === 'string') chatTemplate = config.chat_template;
  }
  if (addBos && roles.bos === undefined) throw new TokenizerError('add_bos_token is set but the model has no bos piece', configFile, 'add_bos_token');
  if (addEos && roles.eos === undefined) throw new TokenizerError('add_eos_token is set but the model has no eos piece', configFile, 'add_eos_token');
  const template = { prefix: addBos ? [roles.bos!] : [], suffix: addEos ? [roles.eos!] : [] };

  const prefix = m.normalizer.addDummyPrefix;
  // transformers' "legacy" conversion (its default, and what its Python Llama and T5 tokenizers
  // do) prepends the dummy prefix to every stretch of text between added tokens, whatever the
  // text starts with, as sentencepiece does for a whole text; legacy: false in
  // tokenizer_config.json prepends it once, at the start of the input, and (as transformers'
  // Metaspace) not before text that already starts with a space.
  const legacy = !(isObject(config) && config.legacy === false);
  const ws = textNormalizers(m, file);
  const escape: NormalizerSpec[] = [...(prefix ? [{ type: 'Prepend', prepend: '\u2581' } as const] : []), { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }];
  const normalizer: NormalizerSpec | null = legacy ? { type: 'Sequence', normalizers: [...ws, ...escape] } : ws.length ? { type: 'Sequence', normalizers: ws } : null;
  const firstScheme = prefix ? 'first' : 'never';
  if (t.modelType === SpmModelType.BPE) {
    const vocab = new Map<string, number>();
    m.pieces.forEach((p, id) => {
      if (vocab.has(p.piece)) fail(`duplicate piece ${JSON.stringify(p.piece)} (ids ${vocab.get(p.piece)} and ${id})`, `pieces[${id}]`);
      vocab.set(p.piece, id);
    });
    // Only pieces the BPE may produce take part in merges (not control, byte or unused ones).
    const mergeable = m.pieces.map((p) => (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED ? p : { ...p, piece: '\u0000' }));
    const merges = mergesFromPieces(mergeable).filter(([l, r]) => vocab.has(l) && vocab.has(r));
    const model = new BpeModel({ vocab, merges, byteLevel: false, byteFallback: t.byteFallback, unkToken: unk ?? null, fuseUnk: true, file });
    const preTokenizer: PreTokenizerSpec | null = legacy ? null : { type: 'Metaspace', replacement: '\u2581', prepend_scheme: firstScheme, split: false };
    const decoder: DecoderSpec = {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 } as const] : []),
      ],
    };
    return new Tokenizer({ model, addedTokens, normalizer, preTokenizer, decoder, template, roles, chatTemplate, file });
  }
  const model = new UnigramModel({
    pieces: m.pieces.map((p) => [p.piece, p.score] as const),
    unkId: t.unkId >= 0 ? t.unkId : null,
    byteFallback: t.byteFallback,
    file,
  });
  // sentencepiece never matches byte or unused pieces in text (byte pieces only stand in for
  // unknown characters): typed "<0x41>" stays those characters.
  model.blockPieces(m.pieces.flatMap((p, id) => (p.type === PieceType.BYTE || p.type === PieceType.UNUSED ? [id] : [])));
  const metaspace = { type: 'Metaspace', replacement: '\u2581', split: true } as const;
  const decodeScheme = prefix ? 'always' : 'never';
  return new Tokenizer({
    model,
    addedTokens,
    normalizer,
    preTokenizer: { ...metaspace, prepend_scheme: legacy ? 'never' : firstScheme },
    decoder: t.byteFallback
      ? { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { ...metaspace, prepend_scheme: decodeScheme }] }
      : { ...metaspace, prepend_scheme: decodeScheme },
    template,
    roles,
    chatTemplate,
    file,
  });
}

/** Parse and convert a tokenizer.model file's bytes. */
export function tokenizerFromSentencePiece(buf: Uint8Array, file = 'tokenizer.model', config?: unknown, configFile?: string): Tokenizer {
  return tokenizerFromSentencePieceModel(parseSentencePiece(buf, file), file, config, configFile);
}
