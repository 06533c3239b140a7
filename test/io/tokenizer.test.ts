/** Byte-level BPE: round trips, merge-rank order, training, special tokens, streaming decode. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BYTE_TO_CHAR,
  Tokenizer,
  GPT2_PRE_TOKENIZER,
  PreTokenizer,
  TokenizerError,
  tokenizerFromJson,
  trainBpe,
} from '../../src/io/tokenizer/index.js';

/** A small corpus with repeated English words, digits, punctuation, CJK, emoji and accents. */
export const CORPUS = [
  'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.',
  'However little known the feelings or views of such a man may be on his first entering a neighbourhood,',
  'this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property',
  "of some one or other of their daughters. \"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that",
  "Netherfield Park is let at last?\" Mr. Bennet replied that he had not. It's 1813; they'll say we've 42 reasons.",
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse,',
  '  indented line\twith tabs\r\nand CRLF line ends\r\n\n\nthree newlines   trailing spaces   ',
  '東京は日本の首都です。東京タワー。 naïve café résumé — “quotes” 🐳🐋 whale 🐳 emoji 👩‍👩‍👧 family',
].join('\n');

function trained(vocabSize = 600, minFrequency = 2): Tokenizer {
  return trainBpe([CORPUS, CORPUS.toUpperCase()], { vocabSize, minFrequency });
}

const TOK = trained();

describe('byte-level alphabet', () => {
  it('maps the 256 bytes to 256 distinct printable characters, GPT-2 style', () => {
    assert.equal(new Set(BYTE_TO_CHAR).size, 256);
    assert.equal(BYTE_TO_CHAR[0x20], 'Ġ');
    assert.equal(BYTE_TO_CHAR[0x0a], 'Ċ');
    assert.equal(BYTE_TO_CHAR[0x41], 'A');
    assert.equal(BYTE_TO_CHAR[0xad], '\u0143'); // the last of the 68 non-printable bytes
    for (const c of BYTE_TO_CHAR) assert.ok(!/\s/u.test(c), `whitespace char ${c}`);
  });
});

describe('pre-tokenizer', () => {
  it("splits text on GPT-2's pattern", () => {
    const pre = new PreTokenizer(GPT2_PRE_TOKENIZER);
    assert.deepEqual(pre.split("Hello world's  123 ok!?\n\n x"), ['Hello', ' world', "'s", ' ', ' 123', ' ok', '!?', '\n\n', ' x']);
  });
});

describe('encode / decode', () => {
  it('decode(encode(s)) === s for arbitrary full-unicode strings', () => {
    const words = CORPUS.split(/(\s+)/);
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.array(fc.oneof(fc.constantFrom(...words), fc.string({ unit: 'binary', maxLength: 6 })), { maxLength: 20 }).map((a) => a.join('')),
    );
    fc.assert(
      fc.property(text, (s) => {
        assert.equal(TOK.decode(TOK.encode(s)), s);
        assert.equal(TOK.decode(TOK.encode(s, { allowSpecial: true })), s);
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips edge cases: empty, lone whitespace, CRLF, NUL, BOM, combining marks, emoji ZWJ', () => {
    const cases = ['', ' ', '\t', '\n', '\r\n', '   ', '\0', '\0a\0', '\uFEFF', '\uFEFFx', 'e\u0301\u0301'];
    cases.push('👩‍👩‍👧', '🐳', '\u{10FFFF}', 'a\u00A0b', '東京', 'x\u200Dy', '\u2028');
    for (const s of cases) {
      assert.equal(TOK.decode(TOK.encode(s)), s, JSON.stringify(s));
    }
  });

  it('uses merged tokens on corpus text, and every id is within the vocab', () => {
    const s = 'It is a truth universally acknowledged';
    const ids = TOK.encode(s);
    assert.ok(ids.length < Buffer.byteLength(s) / 1.5, `${ids.length} ids`);
    for (const id of ids) assert.ok(id >= 0 && id < TOK.vocabSize);
  });

  it('decodes a cut multi-byte character as U+FFFD', () => {
    const byteId = (b: number): number => TOK.tokenToId(BYTE_TO_CHAR[b]!)!;
    const whale = [...Buffer.from('🐳')].map(byteId);
    assert.equal(TOK.decode(whale.slice(0, 2)), '\uFFFD');
    assert.equal(TOK.decode([...whale.slice(0, 3), TOK.tokenToId('a')!]), '\uFFFDa');
    assert.equal(TOK.decode(whale), '🐳');
  });

  it('applies merges like the naive spec: repeatedly merge the lowest-rank (then leftmost) pair', () => {
    const rank = new Map(TOK.merges.map(([a, b], r) => [`${a} ${b}`, r]));
    const pre = new PreTokenizer(GPT2_PRE_TOKENIZER);
    const naive = (text: string): number[] =>
      pre.split(text).flatMap((word) => {
        const syms = [...Buffer.from(word, 'utf8')].map((b) => BYTE_TO_CHAR[b]!);
        for (;;) {
          let best = -1;
          let bestRank = Infinity;
          for (let i = 0; i + 1 < syms.length; i++) {
            const r = rank.get(`${syms[i]} ${syms[i + 1]}`) ?? Infinity;
            if (r < bestRank) [best, bestRank] = [i, r];
          }
          if (best < 0) return syms.map((t) => TOK.tokenToId(t)!);
          syms.splice(best, 2, syms[best]! + syms[best + 1]!);
        }
      });
    const words = CORPUS.split(/(\s+)/);
    const piece = fc.oneof(fc.constantFrom(...words), fc.string({ unit: 'binary', maxLength: 4 }));
    const text = fc.array(piece, { maxLength: 30 }).map((a) => a.join(''));
    fc.assert(fc.property(text, (s) => assert.deepEqual(TOK.encode(s), naive(s))), { numRuns: 300 });
    const long = 'the '.repeat(500) + 'a'.repeat(3000); // words long enough to exercise the heap
    assert.deepEqual(TOK.encode(long), naive(long));
  });

  it('rejects ids outside the vocab', () => {
    assert.throws(() => TOK.decode([TOK.vocabSize]), TokenizerError);
  });
});

describe('merge-rank application (hand-written tokenizer.json)', () => {
  // Ranks deliberately not left-to-right: in "hello", "l o" (rank 0) must win over "l l"
  // (rank 2) although "l l" comes first in the word.
  const vocab: Record<string, number> = {
    h: 0, e: 1, l: 2, o: 3, 'Ġ': 4, w: 5, r: 6, d: 7,
    lo: 8, he: 9, ll: 10, hel: 11, hello: 12, 'Ġw': 13, or: 14, 'Ġwor': 15, ld: 16,
  };
  const merges = ['l o', 'h e', 'l l', 'he l', 'hel lo', 'Ġ w', 'o r', 'Ġw or', 'l d'];
  const json = {
    version: '1.0',
    added_tokens: [],
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', vocab, merges },
  };

  it('encodes "hello world" to ids computed by hand', () => {
    // hello: h e l l o -> (l o) h e l lo -> (h e) he l lo -> (he l) hel lo -> (hel lo) hello
    // " world": Ġ w o r l d -> (Ġ w) Ġw o r l d -> (o r) Ġw or l d -> (Ġw or) Ġwor l d -> (l d) Ġwor ld
    const tok = tokenizerFromJson(json);
    assert.deepEqual(tok.encode('hello world'), [12, 15, 16]);
    assert.deepEqual(tok.encode('hell'), [9, 10]); // h e l l -> he l l -> (l l) he ll; "he l" gone
    assert.deepEqual(tok.encode('lllo'), [10, 8]); // l l l o: "l o" first -> l l lo -> ll lo
    assert.equal(tok.decode([12, 15, 16]), 'hello world');
  });

  it('accepts merges as [left, right] arrays (newer HF format) with the same result', () => {
    const tok = tokenizerFromJson({ ...json, model: { ...json.model, merges: merges.map((m) => m.split(' ')) } });
    assert.deepEqual(tok.encode('hello world'), [12, 15, 16]);
  });

  it('names the byte when the text needs a byte the vocab lacks', () => {
    const tok = tokenizerFromJson(json, 'tiny.json');
    assert.throws(() => tok.encode('x'), (e: unknown) => e instanceof TokenizerError && /tiny\.json.*byte 0x78/.test(e.message));
  });
});

describe('training', () => {
  it('reaches the requested vocab size with dense ids', () => {
    for (const size of [300, 800]) {
      const tok = trained(size, 1);
      assert.equal(tok.vocabSize, size);
      for (let id = 0; id < size; id++) assert.notEqual(tok.idToToken(id), undefined, `id ${id}`);
    }
  });

  it('is deterministic', () => {
    const a = trained();
    const b = trained();
    assert.deepEqual(a.merges, b.merges);
    assert.deepEqual(a.encode(CORPUS), b.encode(CORPUS));
  });

  it('stops when no pair reaches minFrequency', () => {
    // Pairs: (a b) x3, (Ġ a) x2, (Ġ c) x1, (c d) x1; after a+b: (Ġ ab) x2, then only singles.
    const tok = trainBpe(['ab ab ab cd'], { vocabSize: 1000, minFrequency: 2 });
    assert.deepEqual(tok.merges, [['a', 'b'], ['Ġ', 'ab']]);
    assert.equal(tok.vocabSize, 4 + 256 + 2);
  });

  it('matches a from-scratch reference trainer (full recount every step)', () => {
    const texts = fc.sample(fc.array(fc.constantFrom('aa', 'ab', 'aab', 'ba', 'a', 'b', ' ', '!', 'é', 'aaa'), { maxLength: 40 }), {
      numRuns: 30,
      seed: 7,
    }).map((a) => a.join(''));
    const unicode = fc.sample(fc.string({ unit: 'binary', maxLength: 60 }), { numRuns: 20, seed: 11 });
    for (const text of [...texts, ...unicode, CORPUS]) {
      const tok = trainBpe([text], { vocabSize: 4 + 256 + 40, minFrequency: 1 });
      assert.deepEqual(tok.merges, referenceMerges(text, 40), JSON.stringify(text));
    }
  });

  it('finishes 4k-style training quickly on a 100 KB corpus', () => {
    const big = Array.from({ length: 60 }, (_, i) => CORPUS.replace(/a/g, String.fromCharCode(97 + (i % 26)))).join('\n');
    const t0 = performance.now();
    const tok = trainBpe([big], { vocabSize: 2048 });
    assert.ok(performance.now() - t0 < 5000);
    assert.equal(tok.decode(tok.encode(big)), big);
  });
});

/**
 * Naive BPE training: recount every adjacent pair of every word each step, take the most
 * frequent (ties: smaller left string, then smaller right string), merge it everywhere.
 */
function referenceMerges(text: string, maxNew: number): [string, string][] {
  const pre = new PreTokenizer(GPT2_PRE_TOKENIZER);
  const words = pre.split(text).map((w) => [...Buffer.from(w, 'utf8')].map((b) => BYTE_TO_CHAR[b]!));
  const vocab = new Set([...BYTE_TO_CHAR, '<pad>', '<s>', '</s>', '<unk>']);
  const merges: [string, string][] = [];
  let added = 0;
  while (added < maxNew) {
    const counts = new Map<string, { pair: [string, string]; n: number }>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.length; i++) {
        const k = JSON.stringify([w[i], w[i + 1]]);
        const e = counts.get(k) ?? { pair: [w[i]!, w[i + 1]!] as [string, string], n: 0 };
        e.n++;
        counts.set(k, e);
      }
    }
    let best: { pair: [string, string]; n: number } | undefined;
    for (const e of counts.values()) {
      const [l, r] = e.pair;
      if (!best || e.n > best.n || (e.n === best.n && (l < best.pair[0] || (l === best.pair[0] && r < best.pair[1])))) best = e;
    }
    if (!best) break;
    const [l, r] = best.pair;
    merges.push([l, r]);
    if (!vocab.has(l + r)) {
      vocab.add(l + r);
      added++;
    }
    for (const w of words) {
      for (let i = 0; i + 1 < w.length; i++) {
        if (w[i] === l && w[i + 1] === r) w.splice(i, 2, l + r);
      }
    }
  }
  return merges;
}

describe('special tokens', () => {
  it('encodePrompt puts bos first once, with or without a bos template', () => {
    assert.deepEqual(TOK.encodePrompt('Call me'), [1, ...TOK.encode('Call me')]);
    const withBos = trainBpe([CORPUS], { vocabSize: 400, addBos: true });
    assert.deepEqual(withBos.encodePrompt('Call me'), withBos.encode('Call me'));
    assert.equal(withBos.encodePrompt('Call me').filter((id) => id === 1).length, 1);
  });

  it('has Skywork ids by default: pad 0, bos 1, eos 2, unk 3', () => {
    assert.equal(TOK.padId, 0);
    assert.equal(TOK.bosId, 1);
    assert.equal(TOK.eosId, 2);
    assert.equal(TOK.unkId, 3);
    assert.equal(TOK.idToToken(1), '<s>');
    assert.equal(TOK.tokenToId('</s>'), 2);
    assert.ok(TOK.isSpecial(0) && !TOK.isSpecial(100));
  });

  it('matches special-token text only with allowSpecial', () => {
    const s = 'one</s><s>two<pad>';
    const plain = TOK.encode(s);
    assert.ok(!plain.some((id) => TOK.isSpecial(id)));
    const special = TOK.encode(s, { allowSpecial: true });
    assert.deepEqual(special.filter((id) => TOK.isSpecial(id)), [2, 1, 0]);
    assert.deepEqual(special, [...TOK.encode('one'), 2, 1, ...TOK.encode('two'), 0]);
    assert.equal(TOK.decode(special), s);
    assert.equal(TOK.decode(special, { skipSpecialTokens: true }), 'onetwo');
  });

  it('honours custom ids and roles, and puts bos first with addBos', () => {
    const tok = trainBpe([CORPUS], {
      vocabSize: 400,
      specialTokens: [
        { content: '<|endoftext|>', role: 'eos', id: 399 },
        { content: '<|bos|>', role: 'bos' },
      ],
      addBos: true,
    });
    assert.equal(tok.eosId, 399);
    assert.equal(tok.bosId, 0);
    assert.equal(tok.padId, undefined);
    assert.equal(tok.idToToken(1), BYTE_TO_CHAR[0]);
    assert.deepEqual(tok.encode('hi').slice(0, 1), [0]);
    assert.deepEqual(tok.encode('hi', { addSpecialTokens: false }), tok.encode('hi').slice(1));
    assert.equal(tok.vocabSize, 400);
  });
});

describe('streaming decode', () => {
  it('emits a multi-byte character only once it is complete', () => {
    const byteId = (b: number): number => TOK.tokenToId(BYTE_TO_CHAR[b]!)!;
    const stream = TOK.decodeStream();
    const bytes = [...Buffer.from('🐳')];
    assert.equal(stream.push(TOK.tokenToId('a')!), 'a');
    assert.equal(stream.push(byteId(bytes[0]!)), '');
    assert.equal(stream.push(byteId(bytes[1]!)), '');
    assert.equal(stream.push(byteId(bytes[2]!)), '');
    assert.equal(stream.push(byteId(bytes[3]!)), '🐳');
    assert.equal(stream.push(byteId(0xe6)), ''); // first byte of 東, never finished
    assert.equal(stream.end(), '\uFFFD');
  });

  it('concatenates to decode(ids) for any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (s) => {
        const ids = TOK.encode(s, { allowSpecial: true });
        const stream = TOK.decodeStream();
        let out = '';
        for (const id of ids) out += stream.push(id);
        out += stream.end();
        assert.equal(out, s);
      }),
      { numRuns: 200 },
    );
  });
});
