/**
 * The tokenizer part of a GGUF file: which of llama.cpp's tokenizers a skymoe tokenizer is, and
 * its vocabulary in llama.cpp's terms.
 *
 * - byte-level BPE (`tokenizer.ggml.model` "gpt2") with the pre-tokenizer llama.cpp knows by name:
 *   "gpt-2" (GPT-2's regex, skymoe-trained tokenizers), "llama-bpe" (Llama-3's regex) or "qwen2"
 *   (Qwen2/3's regex); merges go as they are;
 * - SentencePiece-style BPE (`tokenizer.ggml.model` "llama": Llama-2, Mistral, Mixtral, Skywork):
 *   llama.cpp merges the adjacent pair whose joined piece has the highest score, so each piece's
 *   score is minus the rank of the first merge that makes it (pieces no merge makes score below
 *   all of them), which reproduces the merge order; `<0xXX>` pieces are BYTE tokens.
 *
 * Anything else (Unigram, another split regex, byte-level files with a normalizer llama.cpp does
 * not apply) is refused by name rather than exported with a tokenizer that encodes differently.
 */
import { GgufValueType } from '../io/gguf.js';
import { BpeModel, type Tokenizer } from '../io/tokenizer/index.js';

export type Kv = [string, GgufValueType, unknown, GgufValueType?];

/** llama.cpp's token types (llama_token_type). */
const NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;

/** The split regexes of the byte-level families llama.cpp has a pre-tokenizer for. */
const KNOWN_SPLITS: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'llama-bpe',
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'qwen2',
};

/** llama.cpp's name for a byte-level tokenizer's pre-tokenizer, or why there is none. */
function bytePreTokenizer(tok: Tokenizer): string | { refusal: string } {
  if (tok.preTokenizer.isGpt2ByteLevel) return 'gpt-2';
  const spec = tok.preTokenizer.spec;
  if (spec?.type === 'Sequence' && spec.pretokenizers.length === 2) {
    const [split, bl] = spec.pretokenizers;
    if (split!.type === 'Split' && 'Regex' in split!.pattern && split!.behavior === 'Isolated' && !split!.invert && bl!.type === 'ByteLevel' && !bl!.use_regex && !bl!.add_prefix_space) {
      const name = KNOWN_SPLITS[split!.pattern.Regex];
      if (name) return name;
      return { refusal: `its split regex ${JSON.stringify(split!.pattern.Regex)} is not one llama.cpp has a pre-tokenizer for (GPT-2, Llama-3, Qwen2)` };
    }
  }
  return { refusal: 'its pre-tokenizer is not one llama.cpp has (GPT-2 byte-level, or the Llama-3 / Qwen2 split followed by ByteLevel)' };
}

/** Whether a SentencePiece-style tokenizer prepends "▁" to the text (llama.cpp's add_space_prefix). */
function addsSpacePrefix(tok: Tokenizer): boolean {
  const n = tok.normalizer;
  const steps = n === null ? [] : n.type === 'Sequence' ? n.normalizers : [n];
  return steps.some((s) => s.type === 'Prepend' && s.prepend === '\u2581');
}

/** True for the Llama-2 family's shape: no pre-tokenizer split, spaces escaped as "▁". */
function isSentencePieceStyle(tok: Tokenizer): boolean {
  const n = tok.normalizer;
  const steps = n === null ? [] : n.type === 'Sequence' ? n.normalizers : [n];
  const escapes = steps.some((s) => s.type === 'Replace' && 'String' in s.pattern && s.pattern.String === ' ' && s.content === '\u2581');
  const others = steps.every((s) => (s.type === 'Replace' && 'String' in s.pattern && s.pattern.String === ' ') || (s.type === 'Prepend' && s.prepend === '\u2581'));
  return tok.preTokenizer.spec === null && escapes && others;
}

/**
 * The tokenizer key-values of a GGUF file for `tok`, padded to `vocabSize` tokens (unused ones
 * named [PADn], as llama.cpp's converter does). Returns a refusal reason instead when llama.cpp
 * would tokenize differently.
 */
export function ggufTokenizerKvs(tok: Tokenizer, vocabSize: number, ids: { bos: number; eos: number; pad: number }): Kv[] | { refusal: string } {
  const model = tok.model;
  if (!(model instanceof BpeModel)) return { refusal: 'llama.cpp has no Unigram tokenizer for these architectures' };
  const tokens: string[] = [];
  const types: number[] = [];
  const common = (): Kv[] => [
    ['tokenizer.ggml.tokens', GgufValueType.ARRAY, tokens, GgufValueType.STRING],
    ['tokenizer.ggml.token_type', GgufValueType.ARRAY, types, GgufValueType.INT32],
    ['tokenizer.ggml.bos_token_id', GgufValueType.UINT32, ids.bos],
    ['tokenizer.ggml.eos_token_id', GgufValueType.UINT32, ids.eos],
    ['tokenizer.ggml.padding_token_id', GgufValueType.UINT32, ids.pad],
    ...(tok.unkId !== undefined ? ([['tokenizer.ggml.unknown_token_id', GgufValueType.UINT32, tok.unkId]] as Kv[]) : []),
    // skymoe-trained tokenizers leave bos to the caller (encodePrompt puts it first); llama.cpp
    // should too, so a prompt starts with bos either way.
    ['tokenizer.ggml.add_bos_token', GgufValueType.BOOL, tok.template.prefix.length > 0 || tok.bosId !== undefined],
    ['tokenizer.ggml.add_eos_token', GgufValueType.BOOL, tok.template.suffix.length > 0],
  ];
  const typeOf = (id: number, t: string): number => {
    if (tok.isSpecial(id)) return id === tok.unkId ? UNKNOWN : CONTROL;
    if (tok.isAdded(id)) return USER_DEFINED;
    return NORMAL;
  };

  if (model.byteLevel) {
    const pre = bytePreTokenizer(tok);
    if (typeof pre !== 'string') return pre;
    const n = tok.normalizer;
    if (n !== null && !(n.type === 'NFC' && pre === 'qwen2')) return { refusal: `its ${n.type} normalizer is not applied by llama.cpp's ${pre} tokenizer` };
    for (let id = 0; id < vocabSize; id++) {
      const t = id < tok.vocabSize ? tok.idToToken(id) : undefined;
      tokens.push(t ?? `[PAD${id}]`);
      types.push(t === undefined ? UNUSED : typeOf(id, t));
    }
    return [
      ['tokenizer.ggml.model', GgufValueType.STRING, 'gpt2'],
      ['tokenizer.ggml.pre', GgufValueType.STRING, pre],
      ...common(),
      ['tokenizer.ggml.merges', GgufValueType.ARRAY, tok.merges.map(([a, b]) => `${a} ${b}`), GgufValueType.STRING],
    ];
  }

  if (tok.preTokenizer.spec?.type === 'Metaspace') {
    // llama.cpp prepends the space to the text after every special token and to text that already
    // starts with one; a Metaspace "first" scheme does neither.
    return { refusal: 'its dummy prefix comes from a Metaspace pre-tokenizer (legacy: false), which llama.cpp does not reproduce; the legacy form (a Prepend normalizer) exports' };
  }
  if (!isSentencePieceStyle(tok)) return { refusal: 'it is a character-level BPE without the SentencePiece "▁" whitespace escape, which llama.cpp has no tokenizer for' };
  if (model.continuingSubwordPrefix || model.endOfWordSuffix) return { refusal: 'llama.cpp has no subword prefixes or word suffixes' };
  // Score = -(rank of the first merge making the piece); pieces no merge makes rank after all.
  const firstRank = new Map<string, number>();
  model.merges.forEach(([a, b], r) => {
    if (!firstRank.has(a + b)) firstRank.set(a + b, r);
  });
  const scores: number[] = [];
  const byte = /^<0x[0-9A-F]{2}>$/;
  for (let id = 0; id < vocabSize; id++) {
    const t = id < tok.vocabSize ? tok.idToToken(id) : undefined;
    tokens.push(t ?? `[PAD${id}]`);
    if (t === undefined) {
      types.push(UNUSED);
      scores.push(-1e9);
      continue;
    }
    const type = tok.isAdded(id) ? typeOf(id, t) : model.byteFallback && byte.test(t) ? BYTE : NORMAL;
    types.push(type);
    const r = firstRank.get(t);
    scores.push(type !== NORMAL ? 0 : r !== undefined ? 0 - r : -(model.merges.length + id));
  }
  return [
    ['tokenizer.ggml.model', GgufValueType.STRING, 'llama'],
    ...common(),
    ['tokenizer.ggml.scores', GgufValueType.ARRAY, scores, GgufValueType.FLOAT32],
    ['tokenizer.ggml.add_space_prefix', GgufValueType.BOOL, addsSpacePrefix(tok)],
  ];
}
