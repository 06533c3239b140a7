/**
 * SentencePiece's precompiled normalization map (precompiled.ts):
 * - a tiny charsmap laid out here by hand, independently of the parser, pins the lookup (the
 *   shortest key that prefixes the text, as HF's `transform`) and HF's grapheme rule;
 * - the nmt_nfkc map of a model trained by sentencepiece (test/fixtures/sentencepiece) gives the
 *   expectations of the spm_precompiled crate's own tests, and HF's results where HF and
 *   sentencepiece differ (checked against the Rust crate: src/lib.rs built with
 *   unicode-segmentation 1.13);
 * - grapheme clusters found on short windows are those of the whole text;
 * - tokenizer.json's `Precompiled` normalizer applies the map and is written back unchanged;
 * - damaged maps are TokenizerErrors naming the file and the field.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { BpeModel, parseSentencePiece, tokenizerFromJson, tokenizerToJson, TokenizerError } from '../../src/io/tokenizer/index.js';
import { charsmapFromBase64, charsmapToBase64, forEachGrapheme, PrecompiledCharsMap } from '../../src/io/tokenizer/precompiled.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/sentencepiece', import.meta.url));

/**
 * A charsmap as sentencepiece lays one out (u32 trie size, darts-clone units, NUL-terminated
 * strings), built from the format's description rather than from the parser. Each node gets a
 * block of 256 units of its own for its children (child for byte c at block + c) and its leaf
 * (at the block's first unit); darts-clone packs blocks tighter, which the reader does not need.
 */
function buildCharsmap(rules: Record<string, string>): Uint8Array {
  interface Node {
    children: Map<number, Node>;
    value: number;
  }
  const utf8 = new TextEncoder();
  const strings: number[] = [];
  const root: Node = { children: new Map(), value: -1 };
  for (const [key, replacement] of Object.entries(rules)) {
    let node = root;
    for (const b of utf8.encode(key)) {
      if (!node.children.has(b)) node.children.set(b, { children: new Map(), value: -1 });
      node = node.children.get(b)!;
    }
    node.value = strings.length;
    strings.push(...utf8.encode(replacement), 0);
  }
  const units: number[] = [0];
  const place = (node: Node, pos: number, label: number) => {
    const base = Math.ceil(units.length / 256) * 256;
    while (units.length < base + 256) units.push(0);
    units[pos] = label | (node.value >= 0 ? 1 << 8 : 0) | ((pos ^ base) << 10);
    if (node.value >= 0) units[base] = (0x80000000 | node.value) >>> 0;
    for (const [b, child] of node.children) place(child, base ^ b, b);
  };
  place(root, 0, 0);
  const out = new Uint8Array(4 + 4 * units.length + strings.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 4 * units.length, true);
  units.forEach((u, i) => view.setUint32(4 + 4 * i, u >>> 0, true));
  out.set(strings, 4 + 4 * units.length);
  return out;
}

const RULES = {
  A: 'a',
  'A\u0301': 'Á',
  AB: 'x',
  'ﬁ': 'fi',
  '\u3000': ' ',
  '\u0007': '',
  'e\u0301': 'é',
  'ｶ': 'カ',
  'ﾞ': '\u3099',
  'カ\u3099': 'ガ',
};

describe('a hand-built charsmap', () => {
  const map = PrecompiledCharsMap.parse(buildCharsmap(RULES), 'tiny');

  it('looks up the shortest key that prefixes the text, as HF does', () => {
    assert.equal(map.lookup('A'), 'a');
    assert.equal(map.lookup('ﬁ'), 'fi');
    assert.equal(map.lookup('\u0007'), '');
    assert.equal(map.lookup('AB'), 'a', 'A is a key and a prefix of AB: the shorter wins');
    assert.equal(map.lookup('Ax'), 'a', 'a key that prefixes the text matches');
    assert.equal(map.lookup('B'), undefined);
    assert.equal(map.lookup('e'), undefined, 'a prefix of a key is no key');
    assert.equal(map.lookup('\u0000A'), undefined, 'a NUL byte ends the search');
  });

  it('replaces keys and copies the rest, unchanged text coming back as it was', () => {
    assert.equal(map.normalize('ﬁne\u3000A bell\u0007!'), 'fine a bell!');
    const plain = 'nothing to do here: ∑ 東京 🐳';
    assert.equal(map.normalize(plain), plain);
    assert.equal(map.normalize(''), '');
    assert.equal(map.normalize('A\u0000A'), 'a\u0000a');
  });

  it("follows HF's grapheme rule, where sentencepiece (longest key at each byte) differs", () => {
    // A cluster shorter than 6 bytes is looked up whole and replaced by its shortest key's
    // replacement: the accent goes (sentencepiece: Á).
    assert.equal(map.normalize('A\u0301'), 'a');
    assert.equal(map.normalize('e\u0301'), 'é', 'the key is the whole cluster');
    // A key spanning two clusters never applies (sentencepiece: x).
    assert.equal(map.normalize('AB'), 'aB');
    // Clusters of 6 bytes or more are looked up character by character (sentencepiece: ガ).
    assert.equal(map.normalize('カ\u3099'), 'カ\u3099');
    assert.equal(map.normalize('ｶﾞ'), 'カ\u3099');
  });
});

describe('the nmt_nfkc map of a sentencepiece model', () => {
  let map: PrecompiledCharsMap;
  before(async () => {
    const m = parseSentencePiece(await readFile(join(FIXTURES, 'unigram_nfkc.model')));
    map = PrecompiledCharsMap.parse(m.normalizer.precompiledCharsmap, 'unigram_nfkc.model');
  });

  it("gives the spm_precompiled crate's expectations", () => {
    assert.equal(map.lookup('\ufb01'), 'fi');
    assert.equal(map.lookup('𝔾'), 'G');
    assert.equal(map.lookup('𝕠'), 'o');
    assert.equal(map.lookup(' '), undefined);
    assert.equal(map.normalize('เขาไม่ได้พูดสักคำ'), 'เขาไม\u0e48ได\u0e49พ\u0e39ดส\u0e31กค\u0e4dา');
    assert.equal(map.normalize('\u095c\u0940 \u0926\u0941\u0916'), '\u0921\u093c\u0940 \u0926\u0941\u0916');
    assert.equal(map.normalize('\u0627\u0653'), '\u0622', 'a two-character cluster that is one key');
  });

  it('maps NFKC compatibility forms, spaces and control characters', () => {
    assert.equal(map.normalize('Ｈｅｌｌｏ　ﬁ①②㍻ x²\u00a0y\tz\r\n\u0001end\u2581'), 'Hello fi12平成 x2 y z end ');
    assert.equal(map.normalize('e\u0301'), 'é');
  });

  it('differs from sentencepiece as HF does (results of the Rust crate)', () => {
    assert.equal(map.normalize('Ａ\u0301'), 'A'); // sentencepiece: Á
    assert.equal(map.normalize('o\u0302\u0323'), 'ô'); // sentencepiece: ộ
    assert.equal(map.normalize('ｻﾞ'), 'サ\u3099'); // sentencepiece: ザ
    assert.equal(map.normalize('\u1100\u1161'), '\u1100\u1161'); // sentencepiece: 가
    assert.equal(map.normalize('ㄱㅏ'), '\u1100\u1161'); // sentencepiece: 가
    assert.equal(map.normalize('a\r\nb'), 'a b'); // sentencepiece: two spaces
  });
});

describe('grapheme clusters', () => {
  const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  const clusters = (text: string): string[] => {
    const out: string[] = [];
    forEachGrapheme(text, (start, end) => out.push(text.slice(start, end)));
    return out;
  };

  it('found on short windows are those of the whole text', () => {
    const pieces = ['a', 'Z', ' ', '\r', '\n', '\r\n', 'é', 'e\u0301', '\u0301', '\u0323', '\u200d', '👨‍👩‍👧', '🇯🇵', '🇫', '\u1100', '\u1161', '\u11a8', '한', 'क्ष', 'ि', 'ｻﾞ', '東', '\u0600', '𝔾'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 120, size: 'max' }), (parts) => {
        const text = parts.join('');
        assert.deepEqual(clusters(text), Array.from(segmenter.segment(text), (s) => s.segment));
      }),
      { numRuns: 300 },
    );
  });

  it('a cluster longer than the window is kept whole', () => {
    const zalgo = 'x' + '\u0301'.repeat(100);
    assert.deepEqual(clusters(`${zalgo}a${zalgo}`), [zalgo, 'a', zalgo]);
  });
});

describe("tokenizer.json's Precompiled normalizer", () => {
  const b64 = charsmapToBase64(buildCharsmap(RULES));
  /** A character-level BPE tokenizer.json (no merges) over a few letters, with `normalizer`. */
  const file = (normalizer: unknown) => {
    const model = new BpeModel({ vocab: new Map(['<unk>', 'a', 'f', 'i', 'n', 'e', ' ', 'x'].map((t, i) => [t, i])), merges: [], byteLevel: false, unkToken: '<unk>' }).toJson();
    return { version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer, pre_tokenizer: null, post_processor: null, decoder: null, model };
  };

  it('normalizes with the map, in a Sequence, and is written back unchanged', () => {
    const normalizer = { type: 'Sequence', normalizers: [{ type: 'Precompiled', precompiled_charsmap: b64 }, { type: 'Replace', pattern: { String: 'x' }, content: 'a' }] };
    const tok = tokenizerFromJson(file(normalizer));
    // ﬁ -> fi, U+3000 -> space, A -> a, the bell character deleted, then x -> a.
    assert.deepEqual(tok.encode('ﬁne\u3000A\u0007x').map((id) => tok.idToToken(id)).join('|'), 'f|i|n|e| |a|a');
    assert.deepEqual(tokenizerToJson(tok).normalizer, normalizer);
  });

  it('a missing, non-base64 or damaged map is named by file and field', () => {
    const bad = (precompiled: unknown, pattern: RegExp) =>
      assert.throws(() => tokenizerFromJson(file({ type: 'Sequence', normalizers: [{ type: 'Precompiled', precompiled_charsmap: precompiled }] }), 't.json'), pattern);
    bad(undefined, /t\.json: normalizer\.normalizers\[0\]\.precompiled_charsmap: expected a string/);
    bad('not base64!', /t\.json: normalizer\.normalizers\[0\]\.precompiled_charsmap: not standard padded base64/);
    bad(b64.slice(0, 400), /t\.json: normalizer\.normalizers\[0\]\.precompiled_charsmap: damaged precompiled charsmap: trie size \d+ runs past the end/);
  });
});

describe('damaged charsmaps', () => {
  const good = buildCharsmap(RULES);
  const damaged = (bytes: Uint8Array, pattern: RegExp) =>
    assert.throws(
      () => PrecompiledCharsMap.parse(bytes, 'm.model', 'normalizer_spec.precompiled_charsmap'),
      (e: unknown) => e instanceof TokenizerError && e.file === 'm.model' && e.field === 'normalizer_spec.precompiled_charsmap' && pattern.test(e.message),
    );
  const patched = (at: number, u32: number) => {
    const b = good.slice();
    new DataView(b.buffer).setUint32(at, u32, true);
    return b;
  };
  const trieBytes = new DataView(good.buffer).getUint32(0, true);

  it('short, truncated or mis-sized blobs', () => {
    damaged(good.subarray(0, 3), /3 bytes, less than the 4-byte trie size/);
    damaged(good.subarray(0, 4 + trieBytes - 8), /runs past the end .* \(truncated\?\)/);
    damaged(good.subarray(0, good.length - 2), /do not end with NUL \(truncated\?\)/);
    damaged(patched(0, 6), /trie size 6 is not a positive multiple of 4/);
  });

  it('replacement strings that are not UTF-8', () => {
    const b = good.slice();
    b[4 + trieBytes] = 0xff;
    damaged(b, /not UTF-8/);
  });

  it('trie units that point outside the array or the strings', () => {
    damaged(patched(4, 0x1fffff << 10), /trie unit 0 points to units .* past the \d+ units/);
    // The first leaf: key "A", value 0 (the strings start "a\0Á\0").
    const leafAt = [...Array(trieBytes / 4).keys()].find((i) => new DataView(good.buffer).getUint32(4 + 4 * i, true) >>> 31 === 1)!;
    damaged(patched(4 + 4 * leafAt, (0x80000000 | 100000) >>> 0), /holds value 100000, which does not start one of the \d+ bytes/);
    damaged(patched(4 + 4 * leafAt, (0x80000000 | 3) >>> 0), /holds value 3,/); // inside "Á"
  });

  it('base64 must be standard and padded, and round-trips', () => {
    assert.deepEqual(charsmapFromBase64(charsmapToBase64(good)), good);
    for (const bad of ['abc', 'ab$=', 'YQ', 'YQ=\n']) assert.throws(() => charsmapFromBase64(bad, 't.json', 'normalizer.precompiled_charsmap'), /t\.json: normalizer\.precompiled_charsmap: not standard padded base64/);
  });
});
