/** tokenizer.json / tokenizer_config.json: save/load round trips, Llama-3-style files, corrupt files. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BYTE_TO_CHAR,
  TokenizerError,
  loadTokenizer,
  saveTokenizer,
  tokenizerFromJson,
  tokenizerToJson,
  trainBpe,
  type Tokenizer,
} from '../../src/io/tokenizer/index.js';

const CORPUS = [
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,',
  'and nothing particular to interest me on shore, I thought I would sail about a little and see the watery',
  "part of the world. It's a way I have of driving off the spleen; they'll say we've 42 reasons.",
  '東京は日本の首都です。 naïve café — “quotes” 🐳🐋 whale 🐳 emoji\r\n\ttabbed   spaced   ',
].join('\n').repeat(3);

const SAMPLES = [
  CORPUS,
  'Hello world! 東京 🐳 naïve',
  "  leading spaces, CRLF\r\n, tabs\t\tand they'll've 123456789",
  '</s> plain <s> <pad>',
  '',
];

let dir: string;
let tok: Tokenizer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skymoe-tok-'));
  tok = trainBpe([CORPUS], { vocabSize: 500, addBos: true });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('save / load', () => {
  it('gives identical encodings after save -> load', async () => {
    const out = join(dir, 'rt');
    await saveTokenizer(out, tok, { modelMaxLength: 2048 });
    assert.deepEqual((await readdir(out)).sort(), ['tokenizer.json', 'tokenizer_config.json']); // no temp files left
    const back = await loadTokenizer(out);
    assert.deepEqual(back.merges, tok.merges);
    assert.equal(back.vocabSize, tok.vocabSize);
    for (const s of SAMPLES) {
      assert.deepEqual(back.encode(s), tok.encode(s));
      assert.deepEqual(back.encode(s, { allowSpecial: true }), tok.encode(s, { allowSpecial: true }));
    }
    assert.deepEqual([back.bosId, back.eosId, back.padId, back.unkId], [1, 2, 0, 3]);
    assert.deepEqual((await loadTokenizer(join(out, 'tokenizer.json'))).encode(CORPUS), tok.encode(CORPUS));
  });

  it('writes the Hugging Face schema and a tokenizer_config.json', async () => {
    const out = join(dir, 'schema');
    await saveTokenizer(out, tok, { modelMaxLength: 2048 });
    const json = JSON.parse(await readFile(join(out, 'tokenizer.json'), 'utf8'));
    assert.equal(json.version, '1.0');
    assert.equal(json.truncation, null);
    assert.equal(json.normalizer, null);
    assert.deepEqual(json.pre_tokenizer, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    assert.equal(json.decoder.type, 'ByteLevel');
    assert.equal(json.post_processor.type, 'TemplateProcessing');
    assert.deepEqual(json.post_processor.single[0], { SpecialToken: { id: '<s>', type_id: 0 } });
    assert.deepEqual(json.added_tokens[1], {
      id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    });
    assert.equal(json.model.type, 'BPE');
    assert.equal(json.model.byte_fallback, false);
    assert.equal(json.model.vocab['<pad>'], 0);
    assert.equal(json.model.vocab[BYTE_TO_CHAR[0]!], 4);
    assert.equal(json.model.merges[0], tok.merges[0]!.join(' '));
    const config = JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8'));
    assert.equal(config.bos_token, '<s>');
    assert.equal(config.eos_token, '</s>');
    assert.equal(config.pad_token, '<pad>');
    assert.equal(config.model_max_length, 2048);
  });

  it('reads roles from tokenizer_config.json, including AddedToken objects', () => {
    const json = tokenizerToJson(tok);
    const t = tokenizerFromJson(json, 'tokenizer.json', { bos_token: { content: '</s>' }, eos_token: '<s>' });
    assert.equal(t.bosId, 2);
    assert.equal(t.eosId, 1);
    assert.equal(t.padId, undefined);
  });
});

/** A Llama-3-style file: Split with its own regex (using (?i:...)), ByteLevel without regex,
 * merges as arrays, ignore_merges, a bos template behind a ByteLevel post-processor. */
function llama3Style(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((c, b) => (vocab[c] = b));
  const extra = ['HELLO', "'M", '123', '456', 'Ġw', 'or', 'Ġwor', 'ld', 'Ġworld'];
  extra.forEach((t, i) => (vocab[t] = 256 + i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 300, content: '<|begin_of_text|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 301, content: '<|end_of_text|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex:
              "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
          },
          behavior: 'Isolated',
          invert: false,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [],
          special_tokens: {},
        },
      ],
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab,
      merges: [['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['Ġwor', 'ld']],
    },
  };
}

describe('Llama-3-style tokenizer.json', () => {
  it("splits with the file's regex, case-insensitive contractions, digit triples, ignore_merges and bos", () => {
    const t = tokenizerFromJson(llama3Style());
    const id = (s: string): number => t.tokenToId(s)!;
    // Pieces: HELLO | 'M | " " | 123 | 456 | " world"; whole-word hits skip the merges.
    assert.deepEqual(t.encode("HELLO'M 123456 world"), [300, id('HELLO'), id("'M"), id('Ġ'), id('123'), id('456'), id('Ġworld')]);
    assert.deepEqual(t.encode('x<|end_of_text|>', { allowSpecial: true, addSpecialTokens: false }), [id('x'), 301]);
    assert.equal(t.bosId, 300);
    assert.equal(t.eosId, 301);
    assert.equal(t.decode(t.encode('Héllo wörld 🐳', { addSpecialTokens: false })), 'Héllo wörld 🐳');
  });

  it('survives save -> load unchanged', async () => {
    const t = tokenizerFromJson(llama3Style());
    const out = join(dir, 'llama3');
    await saveTokenizer(out, t);
    const back = await loadTokenizer(out);
    for (const s of SAMPLES) assert.deepEqual(back.encode(s, { allowSpecial: true }), t.encode(s, { allowSpecial: true }));
  });
});

describe('corrupt and unsupported files', () => {
  async function expectError(name: string, content: string | object, pattern: RegExp): Promise<void> {
    const d = join(dir, `bad-${name}`);
    await rm(d, { recursive: true, force: true });
    await saveTokenizer(d, tok);
    const file = join(d, 'tokenizer.json');
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
    await assert.rejects(loadTokenizer(d), (e: unknown) => {
      assert.ok(e instanceof TokenizerError, String(e));
      assert.ok(e.message.includes(file), `message names the file: ${e.message}`);
      assert.match(e.message, pattern);
      return true;
    });
  }
  const good = (): Record<string, any> => tokenizerToJson(tok) as Record<string, any>;

  it('bad JSON', () => expectError('json', '{"version": "1.0", ', /invalid JSON/));

  it('missing model.vocab', () => {
    const j = good();
    delete j.model.vocab;
    return expectError('novocab', j, /model\.vocab/);
  });

  it('a merge referring to an unknown token', () => {
    const j = good();
    j.model.merges.splice(3, 0, 'zzz# q');
    return expectError('merge', j, /model\.merges\[3\].*unknown token "zzz#"/);
  });

  it('a merge whose result is not in the vocab', () => {
    const j = good();
    j.model.merges.push('Ā ā');
    return expectError('mergeresult', j, /model\.merges\[\d+\].*result "Āā" is not in the vocab/);
  });

  it('a malformed merge', () => {
    const j = good();
    j.model.merges.push('Ċ Ċ Ċ');
    return expectError('mergeform', j, /model\.merges\[\d+\]: expected "left right"/);
  });

  it('duplicate ids', () => {
    const j = good();
    j.model.vocab['extra-token'] = 7;
    return expectError('dupid', j, /model\.vocab.*duplicate id 7/);
  });

  it('a WordPiece model', () => {
    const j = good();
    j.model = { type: 'WordPiece', unk_token: '[UNK]', vocab: { '[UNK]': 0 } };
    return expectError('wordpiece', j, /model\.type: unsupported model type "WordPiece"/);
  });

  it('a Unigram model behind a ByteLevel pre-tokenizer', () => {
    const j = good();
    j.model = { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0]] };
    return expectError('unigram', j, /pre_tokenizer: a Unigram model with a ByteLevel pre-tokenizer/);
  });

  it('a damaged Precompiled (SentencePiece NFKC map) normalizer inside a Sequence', () => {
    const j = good();
    j.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Precompiled', precompiled_charsmap: 'AAA=' }] };
    return expectError('precompiled', j, /normalizer\.normalizers\[1\]\.precompiled_charsmap: damaged precompiled charsmap: 2 bytes/);
  });

  it('BPE dropout', () => {
    const j = good();
    j.model.dropout = 0.1;
    return expectError('dropout', j, /model\.dropout/);
  });

  it('an unknown pre-tokenizer and decoder', async () => {
    const j = good();
    j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'ByteLevel' }, { type: 'Punctuation', behavior: 'Isolated' }] };
    await expectError('punct', j, /pre_tokenizer\.pretokenizers\[1\]\.type: unsupported pre-tokenizer type "Punctuation"/);
    const k = good();
    k.decoder = { type: 'Sequence', decoders: [{ type: 'ByteLevel' }, { type: 'CTC' }] };
    await expectError('ctc', k, /decoder\.decoders\[1\]\.type: unsupported decoder type "CTC"/);
  });

  it('a bad split behaviour and a bad Metaspace prepend scheme', async () => {
    const j = good();
    j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { String: ' ' }, behavior: 'Sideways', invert: false }, { type: 'ByteLevel' }] };
    await expectError('behavior', j, /pre_tokenizer\.pretokenizers\[0\]\.behavior: unknown split behavior "Sideways"/);
    const k = good();
    k.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'sometimes' };
    await expectError('scheme', k, /pre_tokenizer\.prepend_scheme/);
  });

  it('a byte-level vocab behind a pre-tokenizer with no ByteLevel step is not byte-level', async () => {
    // Valid for HF too (a char-level BPE whose vocab happens to use Ġ): it must not crash, and
    // characters outside the vocab are dropped (no unk token), as HF does.
    const j = good();
    j.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: false };
    j.decoder = null;
    const t = tokenizerFromJson(j);
    assert.equal(t.byteLevel, false);
    assert.deepEqual(t.encode('a', { addSpecialTokens: false }), [t.tokenToId('a')]);
    assert.deepEqual(t.encode('\u1e00\u1e01', { addSpecialTokens: false }), []);
  });

  it('values nested too deeply to print are TokenizerErrors naming the file and field, not RangeErrors', async () => {
    // JSON.parse reads 100,000 nested arrays; JSON.stringify of them in a message overflowed the stack.
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const nested = (set: (j: Record<string, any>) => void): string => {
      const j = good();
      set(j);
      return JSON.stringify(j).replace('"@DEEP@"', deep);
    };
    await expectError('deep-normalizer', nested((j) => (j.normalizer = { type: '@DEEP@' })), /normalizer\.type: unsupported normalizer a deeply nested array/);
    await expectError('deep-pre', nested((j) => (j.pre_tokenizer = { type: '@DEEP@' })), /pre_tokenizer\.type: unsupported pre-tokenizer type a deeply nested array/);
    await expectError('deep-decoder', nested((j) => (j.decoder = { type: '@DEEP@' })), /decoder\.type: unsupported decoder type a deeply nested array/);
    await expectError('deep-post', nested((j) => (j.post_processor = { type: '@DEEP@' })), /post_processor\.type: unsupported post-processor type a deeply nested array/);
    await expectError('deep-model', nested((j) => (j.model.type = '@DEEP@')), /model\.type: unsupported model type a deeply nested array/);
    await expectError('deep-merge', nested((j) => (j.model.merges[0] = '@DEEP@')), /model\.merges\[0\]: expected .* got a deeply nested array/);
    await expectError('deep-id', nested((j) => (j.model.vocab.a = '@DEEP@')), /model\.vocab: token "a" has non-numeric id a deeply nested array/);
    // The post_processor is written back as read: one JSON cannot write is refused at load, not when a checkpoint is saved.
    await expectError('deep-post-extra', nested((j) => (j.post_processor = { type: 'ByteLevel', extra: '@DEEP@' })), /post_processor: nested too deeply to be written back/);
  });

  it('a directory in place of tokenizer.json, tokenizer_config.json or tokenizer.model is a TokenizerError naming it', async () => {
    for (const name of ['tokenizer.json', 'tokenizer_config.json', 'tokenizer.model']) {
      const d = join(dir, `dir-${name}`);
      await rm(d, { recursive: true, force: true });
      if (name !== 'tokenizer.model') await saveTokenizer(d, tok);
      await rm(join(d, name), { force: true });
      await mkdir(join(d, name), { recursive: true });
      await assert.rejects(loadTokenizer(d), (e: unknown) => e instanceof TokenizerError && e.message.includes(join(d, name)) && /cannot read \(EISDIR/.test(e.message));
    }
  });

  it('a config naming a bos token that does not exist', async () => {
    const d = join(dir, 'bad-config');
    await saveTokenizer(d, tok);
    await writeFile(join(d, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<bos>' }));
    await assert.rejects(loadTokenizer(d), /tokenizer_config\.json: bos_token: "<bos>" is not a token/);
  });
});

describe('cross-check against Hugging Face tokenizers.js', () => {
  it('encodes a trained, saved tokenizer as tokenizers.js does', async () => {
    const { Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers');
    const out = join(dir, 'hf');
    await saveTokenizer(out, tok);
    const json = JSON.parse(await readFile(join(out, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8'));
    const hf = new HfTokenizer(json, config);
    for (const s of SAMPLES) assert.deepEqual(tok.encode(s, { allowSpecial: true }), hf.encode(s).ids, JSON.stringify(s.slice(0, 30)));
  });
});
