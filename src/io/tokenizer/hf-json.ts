/**
 * Hugging Face `tokenizer.json` (tokenizers schema "1.0") and `tokenizer_config.json`: byte-level
 * BPE (GPT-2, Llama-3, Qwen), SentencePiece-style BPE with byte fallback (Llama-2, Mistral,
 * Mixtral, Skywork) and Unigram files, with the normalizers, pre-tokenizers, decoders and
 * post-processors those use (including the Precompiled normalizer of T5 / XLM-R files). A
 * component outside that set (WordPiece, truncation/padding, ...) is a TokenizerError naming the
 * file and field.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic, writeFully } from '../atomic.js';
import { BpeModel } from './bpe.js';
import { parseDecoder } from './decoders.js';
import { jsonText, TokenizerError } from './errors.js';
import { parseNormalizer } from './normalize.js';
import { parsePreTokenizer, type PreTokenizerSpec } from './pretokenize.js';
import { tokenizerFromSentencePiece } from './sentencepiece.js';
import { Tokenizer, type AddedToken, type SpecialTokenRoles, type TokenModel } from './tokenizer.js';
import { UnigramModel } from './unigram.js';

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
 * tokenizer_config.json, which names the bos/eos/pad/unk tokens and carries the chat template;
 * without it conventional names (`<s>`, `</s>`, `<|begin_of_text|>`, ...) are looked up.
 * @example
 * ```ts
 * const tok = tokenizerFromJson(JSON.parse(readFileSync('tokenizer.json', 'utf8')), 'tokenizer.json');
 * ```
 */
export function tokenizerFromJson(json: unknown, file = 'tokenizer.json', config?: unknown, configFile = 'tokenizer_config.json'): Tokenizer {
  const fail = (msg: string, field?: string): never => {
    throw new TokenizerError(msg, file, field);
  };
  if (!isObject(json)) return fail('expected a JSON object');
  for (const key of ['truncation', 'padding'] as const) {
    if (json[key] !== null && json[key] !== undefined) fail('unsupported (must be null)', key);
  }

  const normalizer = parseNormalizer(json.normalizer, 'normalizer', file);
  const preTokenizer = json.pre_tokenizer === null || json.pre_tokenizer === undefined ? null : parsePreTokenizer(json.pre_tokenizer, 'pre_tokenizer', file);
  const decoder = parseDecoder(json.decoder, 'decoder', file);
  const template = parsePostProcessor(json.post_processor, 'post_processor', fail);
  // The post_processor is written back as read (saveTokenizer): one JSON cannot write (nested too
  // deeply) is refused here, not as a RangeError when a checkpoint is saved.
  try {
    JSON.stringify(json.post_processor);
  } catch {
    fail('nested too deeply to be written back', 'post_processor');
  }
  const byteLevel = preTokenizer !== null && hasByteLevel(preTokenizer);
  const model = parseModel(json.model, byteLevel, file, fail);

  const addedTokens = parseAddedTokens(json.added_tokens, fail);
  const known = (t: string): boolean => model.vocab.has(t) || addedTokens.some((a) => a.content === t);
  const roles = config === undefined ? conventionalRoles(known) : parseRoles(config, configFile, known);
  if (roles.unk === undefined && model instanceof BpeModel && model.unkToken !== null) roles.unk = model.unkToken;

  return new Tokenizer({
    model,
    addedTokens,
    normalizer,
    preTokenizer,
    decoder,
    template,
    postProcessor: isObject(json.post_processor) ? json.post_processor : null,
    roles,
    chatTemplate: config === undefined ? undefined : parseChatTemplate(config, configFile),
    file,
  });
}

function parseModel(model: unknown, byteLevel: boolean, file: string, fail: Fail): TokenModel {
  if (!isObject(model)) return fail('missing or not an object', 'model');
  const type = model.type ?? (Array.isArray(model.vocab) ? 'Unigram' : 'merges' in model ? 'BPE' : undefined);
  if (type === 'Unigram') {
    if (byteLevel) fail('a Unigram model with a ByteLevel pre-tokenizer is not supported', 'pre_tokenizer');
    if (!Array.isArray(model.vocab)) return fail('expected an array of [piece, score]', 'model.vocab');
    const pieces = model.vocab.map((e: unknown, i): [string, number] => {
      if (Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'number') return [e[0], e[1]];
      return fail(`expected [piece, score], got ${jsonText(e)}`, `model.vocab[${i}]`);
    });
    const unkId = model.unk_id ?? null;
    if (unkId !== null && !Number.isInteger(unkId)) fail('expected an integer or null', 'model.unk_id');
    if (model.byte_fallback !== undefined && typeof model.byte_fallback !== 'boolean') fail('expected a boolean', 'model.byte_fallback');
    return new UnigramModel({ pieces, unkId: unkId as number | null, byteFallback: model.byte_fallback === true, file });
  }
  if (type !== 'BPE') {
    return fail(`unsupported model type ${jsonText(type)} (supported: "BPE", byte-level or with byte_fallback, and "Unigram")`, 'model.type');
  }
  if (model.dropout !== null && model.dropout !== undefined && model.dropout !== 0) fail('unsupported BPE dropout (encoding would be random)', 'model.dropout');
  const optString = (key: string): string | null => {
    const v = model[key];
    if (v === null || v === undefined) return null;
    return typeof v === 'string' ? v : fail('expected a string or null', `model.${key}`);
  };
  const optBool = (key: string): boolean => {
    const v = model[key];
    if (v === null || v === undefined) return false;
    return typeof v === 'boolean' ? v : fail('expected a boolean', `model.${key}`);
  };

  if (!isObject(model.vocab)) return fail('missing or not an object', 'model.vocab');
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number') fail(`token ${JSON.stringify(token)} has non-numeric id ${jsonText(id)}`, 'model.vocab');
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
    return fail(`expected "left right" or ["left", "right"], got ${jsonText(m)}`, `model.merges[${i}]`);
  });
  // Validate the ids before the model indexes by them (duplicates are named by Tokenizer).
  for (const [token, id] of vocab) if (!isTokenId(id)) fail(`token ${JSON.stringify(token)} has invalid id ${id} (ids are integers in [0, 2^31))`, 'model.vocab');
  return new BpeModel({
    vocab,
    merges,
    byteLevel,
    byteFallback: optBool('byte_fallback'),
    unkToken: optString('unk_token'),
    fuseUnk: optBool('fuse_unk'),
    ignoreMerges: optBool('ignore_merges'),
    continuingSubwordPrefix: optString('continuing_subword_prefix'),
    endOfWordSuffix: optString('end_of_word_suffix'),
    file,
  });
}

type Fail = (msg: string, field?: string) => never;

function hasByteLevel(spec: PreTokenizerSpec): boolean {
  if (spec.type === 'Sequence') return spec.pretokenizers.some(hasByteLevel);
  return spec.type === 'ByteLevel';
}

type Template = { prefix: string[]; suffix: string[] };

/** The special tokens a post_processor puts around a single sequence. */
function parsePostProcessor(p: unknown, field: string, fail: Fail): Template {
  const none = { prefix: [], suffix: [] };
  if (p === null || p === undefined) return none;
  if (!isObject(p)) return fail('expected an object', field);
  if (p.type === 'ByteLevel') return none; // offsets only; ids unchanged
  if (p.type === 'Sequence') {
    if (!Array.isArray(p.processors)) return fail('expected an array', `${field}.processors`);
    const out: Template = { prefix: [], suffix: [] };
    p.processors.forEach((x, i) => {
      const t = parsePostProcessor(x, `${field}.processors[${i}]`, fail);
      out.prefix.unshift(...t.prefix);
      out.suffix.push(...t.suffix);
    });
    return out;
  }
  if (p.type === 'BertProcessing' || p.type === 'RobertaProcessing') {
    const tok = (key: string): string => {
      const v = p[key];
      return Array.isArray(v) && typeof v[0] === 'string' ? v[0] : fail('expected ["token", id]', `${field}.${key}`);
    };
    return { prefix: [tok('cls')], suffix: [tok('sep')] };
  }
  if (p.type !== 'TemplateProcessing') {
    return fail(`unsupported post-processor type ${jsonText(p.type)} (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)`, `${field}.type`);
  }
  if (!Array.isArray(p.single)) return fail('expected an array', `${field}.single`);
  const out: Template = { prefix: [], suffix: [] };
  let seenSequence = false;
  p.single.forEach((piece: unknown, i) => {
    const at = `${field}.single[${i}]`;
    if (isObject(piece) && isObject(piece.SpecialToken) && typeof piece.SpecialToken.id === 'string') {
      const id = piece.SpecialToken.id;
      // special_tokens may expand a name into several ids; only the one-token form is supported.
      const entry = isObject(p.special_tokens) ? p.special_tokens[id] : undefined;
      if (isObject(entry) && Array.isArray(entry.tokens) && (entry.tokens.length !== 1 || entry.tokens[0] !== id)) {
        fail(`special token ${JSON.stringify(id)} expands to ${jsonText(entry.tokens)}; only single-token entries are supported`, `${field}.special_tokens`);
      }
      (seenSequence ? out.suffix : out.prefix).push(id);
    } else if (isObject(piece) && isObject(piece.Sequence) && piece.Sequence.id === 'A' && !seenSequence) {
      seenSequence = true;
    } else {
      fail(`unsupported template piece ${jsonText(piece)}`, at);
    }
  });
  if (!seenSequence) fail('template has no {"Sequence": {"id": "A"}}', `${field}.single`);
  return out;
}

/** Token ids are array indices everywhere (and i32 in the model): integers in [0, 2^31). */
function isTokenId(id: unknown): id is number {
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < 2 ** 31;
}

function parseAddedTokens(list: unknown, fail: Fail): AddedToken[] {
  if (list === null || list === undefined) return [];
  if (!Array.isArray(list)) return fail('expected an array', 'added_tokens');
  return list.map((t: unknown, i): AddedToken => {
    const at = `added_tokens[${i}]`;
    if (!isObject(t)) return fail('expected an object', at);
    if (typeof t.id !== 'number') fail('missing numeric id', `${at}.id`);
    if (!isTokenId(t.id)) fail(`invalid id ${t.id} (ids are integers in [0, 2^31))`, `${at}.id`);
    if (typeof t.content !== 'string') fail('missing string content', `${at}.content`);
    const flag = (key: string): boolean | undefined => {
      const v = t[key];
      if (v === undefined || v === null) return undefined;
      return typeof v === 'boolean' ? v : fail('expected a boolean', `${at}.${key}`);
    };
    const special = flag('special') ?? false;
    return {
      id: t.id as number,
      content: t.content as string,
      special,
      normalized: flag('normalized') ?? !special,
      lstrip: flag('lstrip') ?? false,
      rstrip: flag('rstrip') ?? false,
      singleWord: flag('single_word') ?? false,
    };
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
    else throw new TokenizerError(`expected a string or {"content": string}, got ${jsonText(v)}`, file, field);
    if (!known(roles[role]!)) throw new TokenizerError(`${JSON.stringify(roles[role])} is not a token of tokenizer.json`, file, field);
  }
  return roles;
}

/**
 * `chat_template` of tokenizer_config.json: one Jinja template, or named ones (a list of
 * {name, template}, as transformers saves several, e.g. "default" and "tool_use").
 */
function parseChatTemplate(config: unknown, file: string): string | Record<string, string> | undefined {
  if (!isObject(config)) return undefined;
  const v = config.chat_template;
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named: Record<string, string> = {};
    v.forEach((e: unknown, i) => {
      if (!isObject(e) || typeof e.name !== 'string' || typeof e.template !== 'string') {
        throw new TokenizerError(`expected {"name": string, "template": string}, got ${jsonText(e)}`, file, `chat_template[${i}]`);
      }
      named[e.name] = e.template;
    });
    return named;
  }
  throw new TokenizerError(`expected a string or a list of {name, template}, got ${typeof v}`, file, 'chat_template');
}

/** The tokenizer.json content of `tok` (HF tokenizers schema 1.0). */
export function tokenizerToJson(tok: Tokenizer): Json {
  const special =
    (typeId: number) =>
    (content: string): Json => ({ SpecialToken: { id: content, type_id: typeId } });
  const { prefix, suffix } = tok.template;
  const postProcessor =
    tok.postProcessor !== undefined
      ? tok.postProcessor
      : prefix.length + suffix.length === 0
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
      single_word: t.singleWord ?? false,
      lstrip: t.lstrip ?? false,
      rstrip: t.rstrip ?? false,
      normalized: t.normalized ?? !t.special,
      special: t.special,
    })),
    normalizer: tok.normalizer,
    pre_tokenizer: tok.preTokenizer.spec,
    post_processor: postProcessor,
    decoder: tok.decoder,
    model: tok.model.toJson(),
  };
}

export interface SaveTokenizerOptions {
  /** The model's context length, written as model_max_length; default 4096. */
  modelMaxLength?: number;
}

/** The tokenizer_config.json content of `tok` (read by transformers' AutoTokenizer). */
export function tokenizerConfigJson(tok: Tokenizer, options: SaveTokenizerOptions = {}): Json {
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
    ...(tok.chatTemplate === undefined
      ? {}
      : { chat_template: typeof tok.chatTemplate === 'string' ? tok.chatTemplate : Object.entries(tok.chatTemplate).map(([name, template]) => ({ name, template })) }),
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
export async function saveTokenizer(dir: string, tok: Tokenizer, options: SaveTokenizerOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeAtomic(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerToJson(tok), null, 2) + '\n');
  await writeAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(tok, options), null, 2) + '\n');
}

/** Written, fsynced and renamed over `path`, then the directory fsynced, as the rest of a checkpoint. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  writeFileAtomic(path, (fd) => writeFully(fd, bytes));
}

/**
 * Load a tokenizer from a directory or a file: `tokenizer.json` (Hugging Face), else
 * `tokenizer.model` (SentencePiece, converted as transformers does for Llama-family models), plus
 * `tokenizer_config.json` beside it when present (bos/eos/pad/unk names, the chat template).
 * @example
 * ```ts
 * const tok = await loadTokenizer('models/skywork-tiny');
 * tok.decode(tok.encode('Call me Ishmael.')); // 'Call me Ishmael.'
 * ```
 */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  let file = path;
  const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new TokenizerError(e.code === 'ENOENT' ? 'not found' : e.message, path);
  });
  if (info.isDirectory()) {
    file = join(path, 'tokenizer.json');
    if (!(await exists(file))) {
      const spm = join(path, 'tokenizer.model');
      if (!(await exists(spm))) throw new TokenizerError('no tokenizer.json or tokenizer.model in this directory', path);
      file = spm;
    }
  }
  const configFile = join(dirname(file), 'tokenizer_config.json');
  const config = (await exists(configFile)) ? await readJson(configFile) : undefined;
  if (file.endsWith('.model')) return tokenizerFromSentencePiece(await readBytes(file), file, config, configFile);
  return tokenizerFromJson(await readJson(file), file, config, configFile);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** A file's bytes; a file that cannot be read (a directory in its place, ...) is a TokenizerError naming it. */
async function readBytes(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    throw new TokenizerError(`cannot read (${(e as Error).message})`, file);
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = (await readBytes(file)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new TokenizerError(`invalid JSON: ${(e as Error).message}`, file);
  }
}
