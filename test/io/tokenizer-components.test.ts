/**
 * The tokenizer.json components one at a time, against expectations worked out by hand from the
 * Hugging Face tokenizers (Rust) semantics: split behaviours, Metaspace prepend schemes, Digits,
 * normalizers, decoders, added-token flags, byte fallback and Oniguruma's \s.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BpeModel,
  compileDecoder,
  compileNormalizer,
  parseDecoder,
  parseNormalizer,
  parsePreTokenizer,
  PreTokenizer,
  Tokenizer,
  type DecoderSpec,
  type PreTokenizerSpec,
} from '../../src/io/tokenizer/index.js';

const split = (spec: unknown, text: string, atStart = true) => new PreTokenizer(parsePreTokenizer(spec, 'pre_tokenizer')).split(text, atStart);

describe('pre-tokenizers', () => {
  it('Split: the five delimiter behaviours on "the-final--countdown"', () => {
    const s = (behavior: string, invert = false) => split({ type: 'Split', pattern: { String: '-' }, behavior, invert }, 'the-final--countdown');
    assert.deepEqual(s('Removed'), ['the', 'final', 'countdown']);
    assert.deepEqual(s('Isolated'), ['the', '-', 'final', '-', '-', 'countdown']);
    assert.deepEqual(s('MergedWithPrevious'), ['the-', 'final-', '-', 'countdown']);
    assert.deepEqual(s('MergedWithNext'), ['the', '-final', '-', '-countdown']);
    assert.deepEqual(s('Contiguous'), ['the', '-', 'final', '--', 'countdown']);
    // invert: the matches are the content, the rest the delimiters.
    assert.deepEqual(split({ type: 'Split', pattern: { Regex: '\\w+' }, behavior: 'Removed', invert: true }, 'hi, you!'), ['hi', 'you']);
  });

  it('Metaspace: spaces to ▁, the prepend schemes, split before each ▁', () => {
    const m = (prepend_scheme: string, splitOn: boolean, text: string, atStart = true) =>
      split({ type: 'Metaspace', replacement: '▁', prepend_scheme, split: splitOn }, text, atStart);
    assert.deepEqual(m('always', true, 'Hey  friend'), ['▁Hey', '▁', '▁friend']);
    assert.deepEqual(m('always', false, 'Hey  friend'), ['▁Hey▁▁friend']);
    assert.deepEqual(m('never', false, 'Hey friend'), ['Hey▁friend']);
    assert.deepEqual(m('first', false, 'Hey', true), ['▁Hey']);
    assert.deepEqual(m('first', false, 'Hey', false), ['Hey'], 'not at the start of the input: no prefix');
    assert.deepEqual(m('always', false, ' Hey'), ['▁Hey'], 'no second prefix before a leading space');
    // Old files say add_prefix_space instead of prepend_scheme.
    assert.deepEqual(split({ type: 'Metaspace', replacement: '▁', add_prefix_space: false }, 'a b'), ['a', '▁b']);
  });

  it('Digits: Unicode digits (char::is_numeric), contiguous or one by one', () => {
    assert.deepEqual(split({ type: 'Digits', individual_digits: false }, 'a123b٣٤½c'), ['a', '123', 'b', '٣٤½', 'c']);
    assert.deepEqual(split({ type: 'Digits', individual_digits: true }, 'x12'), ['x', '1', '2']);
  });

  it('Sequence, Whitespace and WhitespaceSplit', () => {
    assert.deepEqual(split({ type: 'WhitespaceSplit' }, ' a\tb\u0085c '), ['a', 'b', 'c']);
    assert.deepEqual(split({ type: 'Whitespace' }, 'Hey, you_2! é'), ['Hey', ',', 'you_2', '!', 'é']);
    assert.deepEqual(
      split({ type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Digits', individual_digits: true }] }, 'ab12 c3'),
      ['ab', '1', '2', 'c', '3'],
    );
  });

  it("regexes use Oniguruma's \\s (White_Space: U+0085 yes, U+FEFF no), \\d and \\w", () => {
    const s = (re: string, text: string) => split({ type: 'Split', pattern: { Regex: re }, behavior: 'Removed', invert: false }, text);
    assert.deepEqual(s('\\s+', 'a\ufeffb\u0085c'), ['a\ufeffb', 'c']);
    assert.deepEqual(s('[\\s,]+', 'a, b\u0085c'), ['a', 'b', 'c']);
    assert.deepEqual(s('\\d', 'a٣b'), ['a', 'b']);
    assert.deepEqual(s('\\W+', 'é-ü'), ['é', 'ü']);
    // ^ and $ are line anchors in Oniguruma; \A and \z the ends of the text.
    const r = (re: string, text: string) => compileNormalizer(parseNormalizer({ type: 'Replace', pattern: { Regex: re }, content: '' }, 'n'))(text);
    assert.equal(r('^ +| +$', ' a \n b '), 'a\nb');
    assert.equal(r('\\A +| +\\z', ' a \n b '), 'a \n b');
  });
});

describe('normalizers', () => {
  const n = (spec: unknown, text: string) => compileNormalizer(parseNormalizer(spec, 'normalizer'))(text);

  it('Llama-2: Prepend ▁ (only to non-empty text) then spaces to ▁', () => {
    const llama = { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] };
    assert.equal(n(llama, 'Hello  world'), '▁Hello▁▁world');
    assert.equal(n(llama, ''), '');
  });

  it('Replace with a regex, Strip (White_Space, not U+FEFF), Lowercase, NFKC, StripAccents', () => {
    assert.equal(n({ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }, 'a   b  c d'), 'a b c d');
    assert.equal(n({ type: 'Strip', strip_left: true, strip_right: true }, '\u0085 x \ufeff'), 'x \ufeff');
    assert.equal(n({ type: 'Strip', strip_left: false, strip_right: true }, ' x '), ' x');
    assert.equal(n({ type: 'Lowercase' }, 'ÀB'), 'àb');
    assert.equal(n({ type: 'Lowercase' }, 'ΟΔΟΣ ΣΑΣ'), 'οδοσ σασ', 'character by character: no final sigma (Rust)');
    assert.equal(n({ type: 'NFKC' }, 'ﬁ①'), 'fi1');
    assert.equal(n({ type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'StripAccents' }] }, 'café'), 'cafe');
    assert.equal(n({ type: 'Replace', pattern: { String: '$&' }, content: '$1' }, 'a$&b'), 'a$1b', 'replacement text is literal');
  });
});

describe('decoders', () => {
  const d = (spec: unknown, tokens: string[]) => compileDecoder(parseDecoder(spec, 'decoder') as DecoderSpec, () => false)(tokens);
  const llama = {
    type: 'Sequence',
    decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
  };

  it('Llama-2 chain: ▁ to spaces, <0xXX> runs to UTF-8, the dummy prefix space stripped once', () => {
    assert.equal(d(llama, ['▁Hello', '▁', '▁w', 'orld', '<0xE6>', '<0x9D>', '<0xB1>']), 'Hello  world東');
    assert.equal(d(llama, ['▁▁x']), ' x');
  });

  it('ByteFallback: an invalid UTF-8 run gives one U+FFFD per byte (Rust), valid runs decode', () => {
    assert.equal(d({ type: 'ByteFallback' }, ['a', '<0xE6>', '<0x9D>', 'b', '<0x41>']), 'a\ufffd\ufffdbA');
    assert.equal(d({ type: 'ByteFallback' }, ['<0xZZ>', '<0x4>']), '<0xZZ><0x4>', 'not byte tokens');
  });

  it('Metaspace: every ▁ becomes a space, except in the first token when a prefix was prepended', () => {
    assert.equal(d({ type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }, ['▁Hey', '▁friend']), 'Hey friend');
    assert.equal(d({ type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: true }, ['▁Hey', '▁friend']), ' Hey friend');
  });

  it('Strip from both ends, BPEDecoder suffixes, no decoder joins with spaces', () => {
    assert.equal(d({ type: 'Strip', content: 'x', start: 2, stop: 1 }, ['xxxaxx']), 'xax');
    assert.equal(d({ type: 'BPEDecoder', suffix: '</w>' }, ['hel', 'lo</w>', 'you</w>']), 'hello you');
    assert.equal(compileDecoder(null, () => false)(['a', 'b']), 'a b');
  });
});

/** A char-level BPE tokenizer over a tiny vocab, for added-token and byte-fallback tests. */
function tiny(added: { content: string; id: number; special?: boolean; lstrip?: boolean; rstrip?: boolean; singleWord?: boolean; normalized?: boolean }[], opts: { byteFallback?: boolean; pre?: PreTokenizerSpec | null } = {}): Tokenizer {
  const tokens = ['<unk>', '▁', 'a', 'b', 'c', '▁a', 'ab', '<0xC3>', '<0xA9>', ' ', 'x'];
  const vocab = new Map(tokens.map((t, i) => [t, i]));
  const model = new BpeModel({ vocab, merges: [['▁', 'a'], ['a', 'b']], byteLevel: false, byteFallback: opts.byteFallback ?? false, unkToken: '<unk>', fuseUnk: true });
  return new Tokenizer({
    model,
    addedTokens: added.map((a) => ({ special: false, ...a })),
    preTokenizer: opts.pre ?? null,
    decoder: null,
  });
}

describe('BPE details', () => {
  it('byte fallback for characters outside the vocab; fused <unk> otherwise', () => {
    assert.deepEqual(tiny([], { byteFallback: true }).encode('aé'), [2, 7, 8]);
    assert.deepEqual(tiny([]).encode('aééb'), [2, 0, 3], 'two unknown characters fuse into one <unk>');
    // A character whose bytes are not all byte pieces falls back to <unk>.
    assert.deepEqual(tiny([], { byteFallback: true }).encode('東'), [0]);
  });

  it('cuts words before "▁" runs only when no token holds a "▁" after another character', () => {
    const pieces = ['a', 'b', '▁', 'a▁', 'a▁b', '▁b'];
    const model = (extra: string[]) => {
      const vocab = new Map([...pieces, ...extra].map((t, i) => [t, i]));
      return new Tokenizer({ model: new BpeModel({ vocab, merges: [['▁', 'b'], ['a', '▁'], ['a▁', 'b']], byteLevel: false }), decoder: null });
    };
    // "a▁" and "a▁b" exist: a merge crosses the start of "▁b", so the word must stay whole.
    const t = model([]);
    assert.deepEqual(t.encode('a▁b'), [t.tokenToId('a')!, t.tokenToId('▁b')!], '▁ b (rank 0) before a ▁ (rank 1)');
    assert.deepEqual(t.encode('▁ba▁b'), [t.tokenToId('▁b')!, t.tokenToId('a')!, t.tokenToId('▁b')!]);
    const merged = new Tokenizer({ model: new BpeModel({ vocab: new Map(pieces.map((p, i) => [p, i])), merges: [['a', '▁'], ['a▁', 'b'], ['▁', 'b']], byteLevel: false }), decoder: null });
    assert.deepEqual(merged.encode('a▁b'), [merged.tokenToId('a▁b')!], 'a merge across the "▁" run is kept');
  });

  it('a merge listed twice takes its last rank (Rust fills a map in order)', () => {
    const vocab = new Map(['a', 'b', 'c', 'ab', 'bc'].map((t, i) => [t, i]));
    const t = new Tokenizer({ model: new BpeModel({ vocab, merges: [['a', 'b'], ['b', 'c'], ['a', 'b']], byteLevel: false }), decoder: null });
    assert.deepEqual(t.encode('abc'), [0, 4]);
  });

  it('merges by rank across a word: "▁ab" is ▁a + b, not ▁ + ab', () => {
    assert.deepEqual(tiny([]).encode('▁ab'), [5, 3]);
  });
});

describe('added tokens', () => {
  it('lstrip / rstrip swallow the whitespace beside the match', () => {
    const t = tiny([{ content: 'x', id: 10, lstrip: true, rstrip: true }]);
    assert.deepEqual(t.encode('a  x  b'), [2, 10, 3]);
    const plain = tiny([{ content: 'x', id: 10 }]);
    assert.deepEqual(plain.encode('a x b'), [2, 9, 10, 9, 3]);
  });

  it('single_word matches only outside words', () => {
    const t = tiny([{ content: 'bc', id: 11, singleWord: true }], { pre: { type: 'WhitespaceSplit' } });
    assert.deepEqual(t.encode('bc'), [11]);
    assert.deepEqual(t.encode('c bc'), [4, 11]);
    // Inside "abc" it is left to the model, which merges a b.
    assert.deepEqual(t.encode('abc'), [6, 4]);
    assert.deepEqual(tiny([{ content: 'bc', id: 11 }]).encode('abc'), [2, 11], 'without single_word it matches inside words');
    // Word characters are Rust's \w: "_" and combining marks too.
    assert.deepEqual(tiny([{ content: 'bc', id: 11, singleWord: true }]).encode('bc_'), [3, 4, 0]);
    assert.deepEqual(tiny([{ content: 'bc', id: 11, singleWord: true }]).encode('\u0301bc'), [0, 3, 4]);
  });

  it('the longest added token wins at a position, and special ones need allowSpecial', () => {
    const t = tiny([
      { content: 'zz', id: 11, special: true },
      { content: 'z', id: 12, special: true },
    ]);
    assert.deepEqual(t.encode('zz', { allowSpecial: true }), [11]);
    assert.deepEqual(t.encode('czzz', { allowSpecial: true }), [4, 11, 12]);
    assert.deepEqual(t.encode('czz'), [4, 0], 'as plain text: the model (z is unknown, the two fuse)');
  });

  it('normalized added tokens are matched in the normalized text, special ones only with allowSpecial', () => {
    const vocab = new Map(['<unk>', 'a', 'b', ' '].map((t, i) => [t, i]));
    const t = new Tokenizer({
      model: new BpeModel({ vocab, merges: [], byteLevel: false, unkToken: '<unk>', fuseUnk: true }),
      addedTokens: [
        { id: 4, content: '<B>', special: true, normalized: true },
        { id: 5, content: 'AB', special: false, normalized: true },
      ],
      normalizer: { type: 'Lowercase' },
      decoder: null,
    });
    // '<B>' normalizes to '<b>', so '<b>' and '<B>' in text both match it, with allowSpecial.
    assert.deepEqual(t.encode('a<b>', { allowSpecial: true }), [1, 4]);
    assert.deepEqual(t.encode('a<B>', { allowSpecial: true }), [1, 4]);
    assert.ok(!t.encode('a<b>').includes(4), 'a special token from plain text');
    assert.deepEqual(t.encode('xaBy'), [0, 5, 0], 'a plain normalized token matches without allowSpecial');
  });

  it('a normalized added token whose normalized content is empty matches nothing (encoding used to loop forever)', () => {
    const vocab = new Map(['<unk>', 'a', 'b', ' '].map((t, i) => [t, i]));
    const t = new Tokenizer({
      model: new BpeModel({ vocab, merges: [], byteLevel: false, unkToken: '<unk>', fuseUnk: true }),
      // Strip turns '\t' into '': an empty alternative in the matcher matched at every position.
      addedTokens: [{ id: 4, content: '\t', special: false, normalized: true }, { id: 5, content: 'ab', special: false, normalized: true }],
      normalizer: { type: 'Strip', strip_left: true, strip_right: true },
      decoder: null,
    });
    assert.deepEqual(t.encode(' a ab a '), [1, 3, 5, 3, 1]);
    assert.deepEqual(t.encode(''), []);
  });
});
