/**
 * SentencePiece tokenizer.model files:
 * - a .model written here by hand from Llama-2's tokenizer.json (pieces scored by merge rank,
 *   byte pieces, control pieces) loads and encodes exactly as tokenizers.js does with that
 *   tokenizer.json, and written back as tokenizer.json it still does;
 * - .model files trained by the sentencepiece library itself (test/fixtures/sentencepiece,
 *   make_spm.py) encode to the ids sentencepiece gives, for BPE and Unigram, with and without byte
 *   fallback, whitespace removal and a precompiled normalization map (nmt_nfkc, nfkc_cf), also
 *   once written back as tokenizer.json;
 * - the protobuf reader and writer round-trip, damaged files and unsupported models are named.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import {
  loadTokenizer,
  mergesFromPieces,
  parseSentencePiece,
  PieceType,
  saveTokenizer,
  sentencePieceToBytes,
  SpmModelType,
  TokenizerError,
  tokenizerFromSentencePiece,
  tokenizerFromSentencePieceModel,
  tokenizerToJson,
  UnigramModel,
  type SentencePieceModel,
} from '../../src/io/tokenizer/index.js';
import { corpus, lenmlDir } from './tokenizer-corpus.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/sentencepiece', import.meta.url));

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'skymoe-spm-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

/** A ModelProto equivalent to a SentencePiece-style tokenizer.json (Llama-2 layout). */
function modelFromLlama2Json(json: { model: { vocab: Record<string, number>; merges: (string | [string, string])[] } }): SentencePieceModel {
  const byId = Object.entries(json.model.vocab).sort((a, b) => a[1] - b[1]);
  // SentencePiece BPE merges the pair whose result scores highest: score pieces by merge rank.
  const rank = new Map<string, number>();
  json.model.merges.forEach((m, r) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    if (!rank.has(a! + b!)) rank.set(a! + b!, r);
  });
  const byte = /^<0x[0-9A-F]{2}>$/;
  return {
    pieces: byId.map(([piece, id]) => ({
      piece,
      score: id < 3 || byte.test(piece) ? 0 : rank.has(piece) ? -rank.get(piece)! : -(json.model.merges.length + id),
      type: id === 0 ? PieceType.UNKNOWN : id < 3 ? PieceType.CONTROL : byte.test(piece) ? PieceType.BYTE : PieceType.NORMAL,
    })),
    trainer: { modelType: SpmModelType.BPE, vocabSize: byId.length, byteFallback: true, treatWhitespaceAsSuffix: false, unkId: 0, bosId: 1, eosId: 2, padId: -1 },
    normalizer: { name: 'identity', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: false, escapeWhitespaces: true },
  };
}

describe('a Llama-2 tokenizer.model written by hand', () => {
  let json: Parameters<typeof modelFromLlama2Json>[0];
  let hf: HfTokenizer;
  let file: string;
  before(async () => {
    const dir = lenmlDir('llama2');
    json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    hf = new HfTokenizer(json as unknown as Record<string, unknown>, JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')));
    file = join(tmp, 'llama2', 'tokenizer.model');
    await rm(join(tmp, 'llama2'), { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(join(tmp, 'llama2')));
    await writeFile(file, sentencePieceToBytes(modelFromLlama2Json(json)));
  });

  it('loads from a directory without tokenizer.json and encodes the corpus as tokenizers.js does with tokenizer.json', async () => {
    const tok = await loadTokenizer(join(tmp, 'llama2'));
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.merges.length, json.model.merges.length);
    assert.deepEqual([tok.bosId, tok.eosId, tok.unkId], [1, 2, 0]);
    for (const s of await corpus()) {
      assert.deepEqual(tok.encode(s, { allowSpecial: true }), hf.encode(s).ids, JSON.stringify(s.slice(0, 40)));
      const ids = tok.encode(s, { addSpecialTokens: false });
      if (ids.length) assert.equal(tok.decode(ids), hf.decode(ids, { clean_up_tokenization_spaces: false }));
    }
  });

  it('writes back as a tokenizer.json that tokenizers.js and skymoe encode the same', async () => {
    const tok = await loadTokenizer(file);
    const out = join(tmp, 'llama2-json');
    await saveTokenizer(out, tok);
    const written = JSON.parse(await readFile(join(out, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8'));
    const again = new HfTokenizer(written, config);
    const back = await loadTokenizer(out);
    for (const s of await corpus()) {
      const want = hf.encode(s).ids;
      assert.deepEqual(again.encode(s).ids, want, JSON.stringify(s.slice(0, 40)));
      assert.deepEqual(back.encode(s, { allowSpecial: true }), want);
    }
  });

  it('round-trips the protobuf exactly', async () => {
    const bytes = new Uint8Array(await readFile(file));
    const m = parseSentencePiece(bytes, file);
    assert.deepEqual(sentencePieceToBytes(m), bytes);
    assert.equal(m.pieces[259]!.piece, '▁▁');
    assert.equal(m.pieces[3]!.type, PieceType.BYTE);
    assert.equal(m.trainer.padId, -1); // a negative int32: a 10-byte varint
  });
});

interface Expected {
  samples: string[];
  models: Record<string, { ids: number[][]; legacy_ids: number[][]; decoded: string[]; pieces: number }>;
}

describe('tokenizer.model files trained by the sentencepiece library', () => {
  // expected_precompiled.json: models whose normalization rule is a precompiled map (nmt_nfkc, nfkc_cf).
  const fixtures: Record<string, string[]> = {
    'expected.json': ['bpe_fallback', 'bpe_ws', 'unigram', 'unigram_unk', 'unigram_ws'],
    'expected_precompiled.json': ['unigram_nfkc', 'bpe_nfkc_cf'],
  };
  const expected = new Map<string, Expected>();
  before(async () => {
    for (const file of Object.keys(fixtures)) expected.set(file, JSON.parse(await readFile(join(FIXTURES, file), 'utf8')));
  });

  for (const [file, names] of Object.entries(fixtures)) {
    for (const name of names) {
      it(`${name}: encodes every sample to sentencepiece's ids and decodes to its text, also written back as tokenizer.json`, async () => {
        const { samples, models } = expected.get(file)!;
        const m = models[name]!;
        const bytes = await readFile(join(FIXTURES, `${name}.model`));
        // transformers' default ("legacy") conversion: the text between added tokens is encoded
        // piece by piece, as its slow Llama tokenizer does.
        const legacy = tokenizerFromSentencePiece(bytes, name);
        assert.equal(legacy.vocabSize, m.pieces);
        // legacy: false prepends the dummy prefix once, as sentencepiece does, except that (as in
        // transformers) text already starting with a space gets none.
        const modern = tokenizerFromSentencePiece(bytes, name, { legacy: false });
        const written = async (tok: typeof legacy, dir: string) => {
          await saveTokenizer(join(tmp, dir), tok);
          return loadTokenizer(join(tmp, dir));
        };
        const legacyBack = await written(legacy, `${name}-legacy`);
        const modernBack = await written(modern, `${name}-modern`);
        samples.forEach((s, i) => {
          const opts = { addSpecialTokens: false };
          assert.deepEqual(legacy.encode(s, opts), m.legacy_ids[i], `legacy, sample ${i}`);
          assert.deepEqual(legacyBack.encode(s, opts), m.legacy_ids[i], `legacy, written back, sample ${i}`);
          if (!s.startsWith(' ')) {
            assert.deepEqual(modern.encode(s, opts), m.ids[i], `legacy: false, sample ${i}`);
            assert.deepEqual(modernBack.encode(s, opts), m.ids[i], `legacy: false, written back, sample ${i}`);
          }
          // sentencepiece shows an unknown piece as " ⁇ ", Hugging Face as the unk token's text.
          assert.equal(legacy.decode(m.ids[i]!), m.decoded[i]!.replaceAll(' \u2047 ', '<unk>'), `decode, sample ${i}`);
        });
        assert.equal(legacy.encode('x')[0], legacy.bosId, 'bos first');
      });
    }
  }

  it('a precompiled map becomes the first normalizer of the tokenizer.json, its bytes unchanged', async () => {
    const bytes = await readFile(join(FIXTURES, 'unigram_nfkc.model'));
    const json = tokenizerToJson(tokenizerFromSentencePiece(bytes)) as { normalizer: { normalizers: { type: string; precompiled_charsmap?: string }[] } };
    const first = json.normalizer.normalizers[0]!;
    assert.equal(first.type, 'Precompiled');
    assert.deepEqual(Buffer.from(first.precompiled_charsmap!, 'base64'), Buffer.from(parseSentencePiece(bytes).normalizer.precompiledCharsmap));
  });

  it('remove_extra_whitespaces drops a "▁" the text ends with, as sentencepiece does (it strips "▁" after escaping spaces)', async () => {
    // Checked against sentencepiece: 'x▁', 'x ▁' and 'x▁▁ ' encode as 'x' with bpe_ws and unigram.
    for (const name of ['bpe_ws', 'unigram']) {
      const bytes = await readFile(join(FIXTURES, `${name}.model`));
      for (const legacy of [true, false]) {
        const tok = tokenizerFromSentencePiece(bytes, name, { legacy });
        const x = tok.encode('x', { addSpecialTokens: false });
        for (const s of ['x\u2581', 'x \u2581', 'x\u2581\u2581 ']) assert.deepEqual(tok.encode(s, { addSpecialTokens: false }), x, `${name}, legacy ${legacy}: ${JSON.stringify(s)}`);
        assert.notDeepEqual(tok.encode('x\u2581y', { addSpecialTokens: false }), tok.encode('xy', { addSpecialTokens: false }), 'an inner "▁" stays');
      }
    }
    // Without whitespace removal it stays.
    const keep = tokenizerFromSentencePiece(await readFile(join(FIXTURES, 'bpe_fallback.model')));
    assert.notDeepEqual(keep.encode('x\u2581', { addSpecialTokens: false }), keep.encode('x', { addSpecialTokens: false }));
  });

  it('byte fallback shows: unseen characters become <0xXX> pieces, and unknown ones <unk> without it', async () => {
    const fb = tokenizerFromSentencePiece(await readFile(join(FIXTURES, 'unigram.model')));
    const ids = fb.encode('東', { addSpecialTokens: false });
    assert.deepEqual(ids.slice(-3).map((id) => fb.idToToken(id)), ['<0xE6>', '<0x9D>', '<0xB1>']);
    assert.equal(fb.decode(ids), '東');
    // Control pieces are in the Unigram vocab with score 0: text spelling them must not become them.
    const plain = fb.encode('a </s> b <s>', { addSpecialTokens: false });
    assert.ok(!plain.includes(fb.eosId!) && !plain.includes(fb.bosId!), 'control tokens from plain text');
    assert.deepEqual(fb.encode('</s>', { allowSpecial: true, addSpecialTokens: false }), [fb.eosId]);
    // Byte pieces only stand in for unknown characters: typed "<0x41>" is not the letter A.
    const typed = fb.encode('<0x41>', { addSpecialTokens: false });
    assert.ok(!typed.includes(fb.tokenToId('<0x41>')!), 'a byte piece matched from text');
    assert.equal(fb.decode(typed), '<0x41>');
    const unk = tokenizerFromSentencePiece(await readFile(join(FIXTURES, 'unigram_unk.model')));
    const u = unk.encode('東京', { addSpecialTokens: false });
    assert.ok(u.includes(unk.unkId!), 'an unknown run gives <unk>');
    assert.equal(u.filter((id) => id === unk.unkId).length, 1, 'consecutive unknown characters fuse into one <unk>');
  });
});

describe('long inputs', () => {
  it('a run of 150k characters no piece covers becomes one <unk> (no stack overflow), or its bytes', async () => {
    const unk = tokenizerFromSentencePiece(await readFile(join(FIXTURES, 'unigram_unk.model')));
    const ids = unk.encode('🐳'.repeat(150_000), { addSpecialTokens: false });
    assert.ok(ids.length <= 2 && ids.includes(unk.unkId!), `${ids.length} ids`);
    const fb = tokenizerFromSentencePiece(await readFile(join(FIXTURES, 'unigram.model')));
    const bytes = fb.encode('🐳'.repeat(150_000), { addSpecialTokens: false });
    assert.equal(fb.decode(bytes), '🐳'.repeat(150_000));
  });
});

describe('Unigram Viterbi', () => {
  /** Every segmentation of `s` into pieces (or single unknown characters), best score first. */
  function bruteForce(m: UnigramModel, pieces: [string, number][], s: string): number[] {
    const minScore = Math.min(...pieces.map((p) => p[1]));
    let best = -Infinity;
    let bestIds: number[] = [];
    const rec = (at: number, score: number, ids: number[]) => {
      if (at === s.length) {
        if (score > best) [best, bestIds] = [score, ids];
        return;
      }
      let single = false;
      pieces.forEach(([p, sc], id) => {
        if (s.startsWith(p, at)) {
          if (p.length === 1) single = true;
          rec(at + p.length, score + sc, [...ids, id]);
        }
      });
      if (!single) rec(at + 1, score + minScore - 10, [...ids, m.unkId!]);
    };
    rec(0, 0, []);
    // Fuse consecutive unknowns, as the model does.
    return bestIds.filter((id, i) => !(id === m.unkId && bestIds[i - 1] === m.unkId));
  }

  it('finds the highest-scoring segmentation (checked by enumerating all of them)', () => {
    const pieces: [string, number][] = [
      ['<unk>', 0], ['a', -3], ['b', -3.5], ['c', -4], ['ab', -5], ['bc', -5.2], ['abc', -9.1], ['ca', -6], ['cab', -7.7], ['aa', -5.9], ['d', -8],
    ];
    const m = new UnigramModel({ pieces, unkId: 0 });
    const alphabet = ['a', 'b', 'c', 'd', 'x'];
    let rng = 7;
    for (let t = 0; t < 300; t++) {
      let s = '';
      const n = 1 + (t % 9);
      for (let i = 0; i < n; i++) {
        rng = (rng * 1103515245 + 12345) % 2147483648;
        s += alphabet[rng % alphabet.length];
      }
      const out: number[] = [];
      m.tokenize(s, out);
      assert.deepEqual(out, bruteForce(m, pieces, s), s);
    }
  });
});

describe('damaged and unsupported tokenizer.model files', () => {
  const base = (): SentencePieceModel => ({
    pieces: [
      { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
      { piece: '<s>', score: 0, type: PieceType.CONTROL },
      { piece: '</s>', score: 0, type: PieceType.CONTROL },
      { piece: '▁a', score: -1, type: PieceType.NORMAL },
      { piece: '▁', score: -2, type: PieceType.NORMAL },
      { piece: 'a', score: -3, type: PieceType.NORMAL },
    ],
    trainer: { modelType: SpmModelType.BPE, vocabSize: 6, byteFallback: false, treatWhitespaceAsSuffix: false, unkId: 0, bosId: 1, eosId: 2, padId: -1 },
    normalizer: { name: 'identity', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: false, escapeWhitespaces: true },
  });

  it('a tiny hand-made model encodes by merge score', () => {
    const tok = tokenizerFromSentencePieceModel(base());
    assert.deepEqual(tok.encode('a a', { addSpecialTokens: false }), [3, 3]);
    assert.deepEqual(tok.encode('aq', { addSpecialTokens: false }), [3, 0]); // q: <unk>
    assert.deepEqual(mergesFromPieces(base().pieces), [['▁', 'a']]);
  });

  it('truncated and garbage bytes are named', () => {
    const bytes = sentencePieceToBytes(base());
    assert.throws(() => parseSentencePiece(bytes.subarray(0, bytes.length - 3), 'm.model'), (e: unknown) => e instanceof TokenizerError && /m\.model: not a SentencePiece model: .*(runs past|truncated)/.test(e.message));
    assert.throws(() => parseSentencePiece(new TextEncoder().encode('{"version": "1.0"}'), 'j.model'), /j\.model: not a SentencePiece model/);
    assert.throws(() => parseSentencePiece(new Uint8Array(0), 'e.model'), /e\.model: not a SentencePiece model: no pieces/);
  });

  it('WORD models, damaged precompiled normalization maps and whitespace suffixes are refused by name', () => {
    const word = base();
    word.trainer.modelType = SpmModelType.WORD;
    assert.throws(() => tokenizerFromSentencePieceModel(word, 'w.model'), /w\.model: trainer_spec\.model_type: model type 3 \(WORD\) is not supported/);
    const nfkc = base();
    nfkc.normalizer = { ...nfkc.normalizer, name: 'nmt_nfkc', precompiledCharsmap: new Uint8Array([8, 0, 0, 0, 1, 2, 3]) };
    assert.throws(() => tokenizerFromSentencePieceModel(nfkc, 'n.model'), /n\.model: normalizer_spec\.precompiled_charsmap: damaged precompiled charsmap: trie size 8 runs past the end/);
    const suffix = base();
    suffix.trainer.treatWhitespaceAsSuffix = true;
    assert.throws(() => tokenizerFromSentencePieceModel(suffix), /treat_whitespace_as_suffix/);
    const badId = base();
    badId.trainer.eosId = 99;
    assert.throws(() => tokenizerFromSentencePieceModel(badId), /trainer_spec\.eos_id: id 99 is outside the 6 pieces/);
  });

  it('a tokenizer_config.json naming a token the model lacks is named', () => {
    assert.throws(() => tokenizerFromSentencePieceModel(base(), 't.model', { bos_token: '<bos>' }, 'tokenizer_config.json'), /tokenizer_config\.json: bos_token: "<bos>" is not a piece of t\.model/);
  });
});
