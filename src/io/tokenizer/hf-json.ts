/**
 * Hugging Face `tokenizer.json` (tokenizers schema "1.0") and `tokenizer_config.json` for
 * byte-level BPE tokenizers: GPT-2, Llama-3, Qwen2 style files and the ones trainBpe makes.
 * Everything else (Unigram / WordPiece models, byte_fallback BPE as in Llama-2, Metaspace
 * pre-tokenizers, truncation/padding) is a TokenizerError naming the file and field.
 */
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BpeTokenizer, type AddedToken, type SpecialTokenRoles } from './bpe.js';
import { TokenizerError } from './errors.js';
import { parsePreTokenizer, type PreTokenizerSpec } from './pretokenize.js';

type Json = Record<string, unknown>;

/** Tokens taken for a role when there is no tokenizer_config.json, in order of preference. */
const CONVENTIONAL_ROLES: Record<keyof SpecialTokenRoles, string[]> = {
  bos: ['<s>', '<|begin_of_text|>', '<|endoftext|>'],
  eos: ['</s>', '<|end_of_text|>', '<|endoftext|>'],
  pad: ['<pad>'],
  unk: ['<unk>'],
};

/** Context length written to tokenizer_config.json when the caller gives none. */
const DEFAULT_MODEL_MAX_LENGTH = 4096;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Build a tokenizer from parsed tokenizer.json content. `config` is the parsed
 * tokenizer_config.json, which names the bos/eos/pad/unk tokens; without it conventional
 * names (`<s>`, `</s>`, `<|begin_of_text|>`, ...) are looked up.
 * @example
 * ```ts
 * const tok = tokenizerFromJson(JSON.parse(readFileSync('tokenizer.json', 'utf8')), 'tokenizer.json');
 * ```
 */
export function tokenizerFromJson(
  json: unknown,
  file = 'tokenizer.json',
  config?: unknown,
  configFile = 'tokenizer_config.json',
): BpeTokenizer {
  const fail = (msg: string, field?: string): never => {
    throw new TokenizerError(msg, file, field);
  };
  if (!isObject(json)) return fail('expected a JSON object');
  for (const key of ['truncation', 'padding'] as const) {
    if (json[key] !== null && json[key] !== undefined) fail('unsupported (must be null)', key);
  }

  const nfc = parseNormalizer(json.normalizer, fail);

  if (json.pre_tokenizer === null || json.pre_tokenizer === undefined) {
    fail('missing; only byte-level BPE (a ByteLevel pre-tokenizer) is supported', 'pre_tokenizer');
  }
  const preTokenizer = parsePreTokenizer(json.pre_tokenizer, 'pre_tokenizer', file);
  if (!hasByteLevel(preTokenizer)) fail('has no ByteLevel step; only byte-level BPE is supported', 'pre_tokenizer');

  parseDecoder(json.decoder, 'decoder', fail);
  const template = parsePostProcessor(json.post_processor, 'post_processor', fail);

  const model = json.model;
  if (!isObject(model)) return fail('missing or not an object', 'model');
  if (model.type !== undefined && model.type !== 'BPE') {
    fail(`unsupported model type ${JSON.stringify(model.type)} (only byte-level "BPE")`, 'model.type');
  }
  if (model.byte_fallback === true) fail('unsupported byte_fallback BPE (SentencePiece style, e.g. Llama-2)', 'model.byte_fallback');
  if (model.dropout !== null && model.dropout !== undefined && model.dropout !== 0) fail('unsupported BPE dropout', 'model.dropout');
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[key] !== null && model[key] !== undefined && model[key] !== '') fail('unsupported (must be null)', `model.${key}`);
  }
  if (model.ignore_merges !== undefined && typeof model.ignore_merges !== 'boolean') fail('expected a boolean', 'model.ignore_merges');

  if (!isObject(model.vocab)) return fail('missing or not an object', 'model.vocab');
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number') fail(`token ${JSON.stringify(token)} has non-numeric id ${JSON.stringify(id)}`, 'model.vocab');
    vocab.set(token, id as number);
  }

  if (!Array.isArray(model.merges)) return fail('missing or not an array', 'model.merges');
  const merges = model.merges.map((m: unknown, i): [string, string] => {
    // Legacy "a b" strings or, since tokenizers 0.20, ["a", "b"] pairs.
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length === 2 && parts[0] !== '' && parts[1] !== '') return [parts[0]!, parts[1]!];
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      return [m[0], m[1]];
    }
    return fail(`expected "left right" or ["left", "right"], got ${JSON.stringify(m)}`, `model.merges[${i}]`);
  });

  const addedTokens = parseAddedTokens(json.added_tokens, fail);
  const known = (t: string): boolean => vocab.has(t) || addedTokens.some((a) => a.content === t);
  const roles = config === undefined ? conventionalRoles(known) : parseRoles(config, configFile, known);

  return new BpeTokenizer({
    vocab,
    merges,
    addedTokens,
    preTokenizer,
    nfc,
    template,
    ignoreMerges: model.ignore_merges === true,
    roles,
    file,
  });
}

type Fail = (msg: string, field?: string) => never;

function hasByteLevel(spec: PreTokenizerSpec): boolean {
  if (spec.type === 'Sequence') return spec.pretokenizers.some(hasByteLevel);
  return spec.type === 'ByteLevel';
}

function parseNormalizer(n: unknown, fail: Fail): boolean {
  if (n === null || n === undefined) return false;
  if (isObject(n) && n.type === 'NFC') return true;
  if (isObject(n) && n.type === 'Sequence' && Array.isArray(n.normalizers) && n.normalizers.length === 0) return false;
  return fail(`unsupported normalizer ${JSON.stringify(isObject(n) ? n.type : n)} (supported: null, NFC)`, 'normalizer.type');
}

function parseDecoder(d: unknown, field: string, fail: Fail): void {
  if (d === null || d === undefined) return;
  if (!isObject(d)) return fail('expected an object', field);
  if (d.type === 'ByteLevel') return;
  if (d.type === 'Sequence' && Array.isArray(d.decoders)) {
    d.decoders.forEach((x, i) => parseDecoder(x, `${field}.decoders[${i}]`, fail));
    return;
  }
  fail(`unsupported decoder type ${JSON.stringify(d.type)} (only ByteLevel)`, `${field}.type`);
}

/** The special tokens a post_processor puts around a single sequence. */
function parsePostProcessor(p: unknown, field: string, fail: Fail): { prefix: string[]; suffix: string[] } {
  const none = { prefix: [], suffix: [] };
  if (p === null || p === undefined) return none;
  if (!isObject(p)) return fail('expected an object', field);
  if (p.type === 'ByteLevel') return none; // offsets only; ids unchanged
  if (p.type === 'Sequence' && Array.isArray(p.processors)) {
    const out: { prefix: string[]; suffix: string[] } = { prefix: [], suffix: [] };
    p.processors.forEach((x, i) => {
      const t = parsePostProcessor(x, `${field}.processors[${i}]`, fail);
      out.prefix.unshift(...t.prefix);
      out.suffix.push(...t.suffix);
    });
    return out;
  }
  if (p.type !== 'TemplateProcessing') {
    return fail(`unsupported post-processor type ${JSON.stringify(p.type)} (supported: TemplateProcessing, ByteLevel)`, `${field}.type`);
  }
  if (!Array.isArray(p.single)) return fail('expected an array', `${field}.single`);
  const out: { prefix: string[]; suffix: string[] } = { prefix: [], suffix: [] };
  let seenSequence = false;
  p.single.forEach((piece: unknown, i) => {
    const at = `${field}.single[${i}]`;
    if (isObject(piece) && isObject(piece.SpecialToken) && typeof piece.SpecialToken.id === 'string') {
      (seenSequence ? out.suffix : out.prefix).push(piece.SpecialToken.id);
    } else if (isObject(piece) && isObject(piece.Sequence) && piece.Sequence.id === 'A' && !seenSequence) {
      seenSequence = true;
    } else {
      fail(`unsupported template piece ${JSON.stringify(piece)}`, at);
    }
  });
  if (!seenSequence) fail('template has no {"Sequence": {"id": "A"}}', `${field}.single`);
  return out;
}

function parseAddedTokens(list: unknown, fail: Fail): AddedToken[] {
  if (list === null || list === undefined) return [];
  if (!Array.isArray(list)) return fail('expected an array', 'added_tokens');
  return list.map((t: unknown, i): AddedToken => {
    const at = `added_tokens[${i}]`;
    if (!isObject(t)) return fail('expected an object', at);
    if (typeof t.id !== 'number') fail('missing numeric id', `${at}.id`);
    if (typeof t.content !== 'string') fail('missing string content', `${at}.content`);
    // These change how the token is matched in text (absorbing spaces, word bounds).
    for (const key of ['lstrip', 'rstrip', 'single_word'] as const) {
      if (t[key] === true) fail('unsupported (must be false)', `${at}.${key}`);
    }
    return { id: t.id as number, content: t.content as string, special: t.special === true };
  });
}

function conventionalRoles(known: (t: string) => boolean): SpecialTokenRoles {
  const roles: SpecialTokenRoles = {};
  for (const role of Object.keys(CONVENTIONAL_ROLES) as (keyof SpecialTokenRoles)[]) {
    const hit = CONVENTIONAL_ROLES[role].find(known);
    if (hit !== undefined) roles[role] = hit;
  }
  return roles;
}

/** bos_token etc. of tokenizer_config.json: a string, an AddedToken object or null. */
function parseRoles(config: unknown, file: string, known: (t: string) => boolean): SpecialTokenRoles {
  if (!isObject(config)) throw new TokenizerError('expected a JSON object', file);
  const roles: SpecialTokenRoles = {};
  for (const role of ['bos', 'eos', 'pad', 'unk'] as const) {
    const field = `${role}_token`;
    const v = config[field];
    if (v === null || v === undefined) continue;
    if (typeof v === 'string') roles[role] = v;
    else if (isObject(v) && typeof v.content === 'string') roles[role] = v.content;
    else throw new TokenizerError(`expected a string or {"content": string}, got ${JSON.stringify(v)}`, file, field);
    if (!known(roles[role]!)) throw new TokenizerError(`${JSON.stringify(roles[role])} is not a token of tokenizer.json`, file, field);
  }
  return roles;
}

/** The tokenizer.json content of `tok` (HF tokenizers schema 1.0). */
export function tokenizerToJson(tok: BpeTokenizer): Json {
  // Added tokens are in the model vocab too, as HF's BPE trainer leaves its special tokens.
  const vocab: Record<string, number> = {};
  for (let id = 0; id < tok.vocabSize; id++) {
    const t = tok.idToToken(id);
    if (t !== undefined) vocab[t] = id;
  }
  const special =
    (typeId: number) =>
    (content: string): Json => ({ SpecialToken: { id: content, type_id: typeId } });
  const { prefix, suffix } = tok.template;
  const postProcessor =
    prefix.length + suffix.length === 0
      ? null
      : {
          type: 'TemplateProcessing',
          single: [...prefix.map(special(0)), { Sequence: { id: 'A', type_id: 0 } }, ...suffix.map(special(0))],
          pair: [
            ...prefix.map(special(0)),
            { Sequence: { id: 'A', type_id: 0 } },
            ...suffix.map(special(0)),
            ...prefix.map(special(1)),
            { Sequence: { id: 'B', type_id: 1 } },
            ...suffix.map(special(1)),
          ],
          special_tokens: Object.fromEntries(
            [...new Set([...prefix, ...suffix])].map((t) => [t, { id: t, ids: [tok.tokenToId(t)!], tokens: [t] }]),
          ),
        };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: tok.addedTokens.map((t) => ({
      id: t.id,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: t.special,
    })),
    normalizer: tok.nfc ? { type: 'NFC' } : null,
    pre_tokenizer: tok.preTokenizer.spec,
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ...(tok.ignoreMerges ? { ignore_merges: true } : {}),
      vocab,
      merges: tok.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export interface SaveTokenizerOptions {
  /** The model's context length, written as model_max_length; default 4096. */
  modelMaxLength?: number;
}

/** The tokenizer_config.json content of `tok` (read by transformers' AutoTokenizer). */
export function tokenizerConfigJson(tok: BpeTokenizer, options: SaveTokenizerOptions = {}): Json {
  const { bos, eos, pad, unk } = tok.roles;
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: bos ?? null,
    eos_token: eos ?? null,
    pad_token: pad ?? null,
    unk_token: unk ?? null,
    add_bos_token: tok.template.prefix.length > 0,
    add_eos_token: tok.template.suffix.length > 0,
    model_max_length: options.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH,
    // Decoding must give back the text exactly; transformers would otherwise drop spaces before
    // punctuation on some versions.
    clean_up_tokenization_spaces: false,
  };
}

/**
 * Write `dir/tokenizer.json` and `dir/tokenizer_config.json`, each atomically (a temp file
 * renamed over the target), creating `dir` if needed.
 * @example
 * ```ts
 * await saveTokenizer('out/tok', tok, { modelMaxLength: 4096 });
 * const again = await loadTokenizer('out/tok');
 * ```
 */
export async function saveTokenizer(dir: string, tok: BpeTokenizer, options: SaveTokenizerOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeAtomic(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerToJson(tok), null, 2) + '\n');
  await writeAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(tok, options), null, 2) + '\n');
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await writeFile(tmp, text);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Load a tokenizer from a directory (tokenizer.json, plus tokenizer_config.json when present for
 * the bos/eos/pad/unk names) or from a tokenizer.json path (its directory's config is read too).
 * @example
 * ```ts
 * const tok = await loadTokenizer('models/skywork-tiny');
 * tok.decode(tok.encode('Call me Ishmael.')); // 'Call me Ishmael.'
 * ```
 */
export async function loadTokenizer(path: string): Promise<BpeTokenizer> {
  const file = (await stat(path)).isDirectory() ? join(path, 'tokenizer.json') : path;
  const json = await readJson(file);
  const configFile = join(dirname(file), 'tokenizer_config.json');
  const config = await readJson(configFile).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  });
  return tokenizerFromJson(json, file, config, configFile);
}

async function readJson(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new TokenizerError(`invalid JSON: ${(e as Error).message}`, file);
  }
}
