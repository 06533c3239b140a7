/**
 * TextOutput with the real Llama-2, Llama-3 and Qwen3 tokenizers: on random token sequences (text
 * with emoji and CJK encoded, and random ids that cut characters into bytes), with stop strings
 * cut from the decoded text, the released pieces concatenate to decode(ids) truncated before the
 * first stop string, and no piece ever shows text that a stop string later claims.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer/index.js';
import { TextOutput } from '../../src/infer/text-output.js';
import { Rng } from '../../src/tensor/random.js';
import { corpus, lenmlDir } from '../io/tokenizer-corpus.js';

type Family = 'llama2' | 'llama3' | 'qwen3';
const FAMILIES: Family[] = ['llama2', 'llama3', 'qwen3'];

const toks = new Map<Family, Tokenizer>();
let texts: string[];

before(async () => {
  texts = (await corpus()).filter((t) => t.length > 0);
  for (const f of FAMILIES) toks.set(f, await loadTokenizer(lenmlDir(f)));
});

/**
 * The reference: the first occurrence is the one that ends first (where generation stops), of
 * those ending at the same place the longest; the text is cut before it.
 */
function truncate(full: string, stops: string[]): { text: string; stopped: string | null } {
  for (let end = 1; end <= full.length; end++) {
    const hits = stops.filter((s) => s.length <= end && full.startsWith(s, end - s.length));
    if (hits.length === 0) continue;
    const s = hits.reduce((a, b) => (b.length > a.length ? b : a));
    return { text: full.slice(0, end - s.length), stopped: s };
  }
  return { text: full, stopped: null };
}

/** Stream ids through a TextOutput, checking each release against the reference. */
function stream(tok: Tokenizer, ids: number[], stops: string[], skipSpecialTokens = true): { text: string; stopped: string | null } {
  const want = truncate(tok.decode(ids, { skipSpecialTokens }), stops);
  const out = new TextOutput(tok, stops, skipSpecialTokens);
  let text = '';
  for (const id of ids) {
    text += out.push(id);
    assert.ok(want.text.startsWith(text), `released ${JSON.stringify(text.slice(-20))} is not a prefix of the final ${JSON.stringify(want.text.slice(0, text.length + 5).slice(-25))}`);
    if (out.stopped !== null) break;
  }
  text += out.finish();
  assert.equal(out.push(ids[0] ?? 0), '', 'nothing after the end');
  return { text, stopped: out.stopped };
}

/** A substring of s on code point boundaries (a stop string is valid text). */
function substring(rng: Rng, s: string, maxLength: number): string {
  const cps = [...s];
  const start = rng.int(cps.length);
  return cps.slice(start, start + 1 + rng.int(maxLength)).join('');
}

/** Ids of a random slice of the corpus, or random ids (which cut multi-byte characters). */
function randomIds(rng: Rng, tok: Tokenizer): number[] {
  if (rng.float() < 0.5) {
    const t = texts[rng.int(texts.length)]!;
    const start = rng.int(t.length);
    return tok.encode(t.slice(start, start + 10 + rng.int(120)), { addSpecialTokens: false, allowSpecial: true });
  }
  return Array.from({ length: 1 + rng.int(40) }, () => rng.int(tok.vocabSize));
}

for (const f of FAMILIES) {
  describe(`TextOutput with the ${f} tokenizer`, () => {
    it('releases decode(ids) cut before the first stop string, never a piece of one', () => {
      const tok = toks.get(f)!;
      const rng = new Rng(f.length * 1000 + 7);
      let stopped = 0;
      for (let c = 0; c < 400; c++) {
        const ids = randomIds(rng, tok);
        const full = tok.decode(ids, { skipSpecialTokens: true });
        const stops = Array.from({ length: rng.int(4) }, () => (full.length > 0 && rng.float() < 0.8 ? substring(rng, full, 8) : 'never\u0001'));
        const got = stream(tok, ids, stops);
        const want = truncate(full, stops);
        assert.deepEqual(got, want, `case ${c}: stops ${JSON.stringify(stops)} in ${JSON.stringify(full.slice(0, 80))}`);
        if (want.stopped !== null) stopped++;
      }
      assert.ok(stopped > 150, `${stopped} of the cases stopped`);
    });

    it('a stop string spanning tokens and multi-byte characters is found and withheld', () => {
      const tok = toks.get(f)!;
      const text = 'Le café 東京タワー 🐳🐋 whale song';
      const ids = tok.encode(text, { addSpecialTokens: false });
      for (const stop of ['東京タ', '🐋 wh', 'é 東', '🐳', 'ワー 🐳🐋 whale song']) {
        assert.deepEqual(stream(tok, ids, [stop]), { text: text.slice(0, text.indexOf(stop)), stopped: stop }, stop);
      }
      assert.deepEqual(stream(tok, ids, ['whales']), { text, stopped: null }, 'a prefix that never completes is released at the end');
    });
  });
}

describe('TextOutput stop matching', () => {
  it('matches through self-overlapping prefixes (aab in aaab), and the earliest end wins', () => {
    const tok = toks.get('llama3')!;
    const ids = (s: string) => [...s].map((ch) => tok.encode(ch, { addSpecialTokens: false })[0]!);
    assert.deepEqual(stream(tok, ids('xaaaby'), ['aab']), { text: 'xa', stopped: 'aab' });
    assert.deepEqual(stream(tok, ids('abcd'), ['abcd', 'bc']), { text: 'a', stopped: 'bc' }, 'bc ends before abcd would');
    assert.deepEqual(stream(tok, ids('abcd'), ['bc', 'abc']), { text: '', stopped: 'abc' }, 'of two ending together, the longer');
  });

  it('holds back a possible stop string until it fails, then releases it', () => {
    const tok = toks.get('llama3')!;
    const out = new TextOutput(tok, ['END']);
    const pieces = ['Hello', ' E', 'N', 'x', ' ok', ' EN'].map((s) => out.push(tok.encode(s, { addSpecialTokens: false })[0]!));
    assert.deepEqual(pieces, ['Hello', ' ', '', 'ENx', ' ok', ' ']);
    assert.equal(out.finish(), 'EN');
    assert.equal(out.stopped, null);
  });

  it('special tokens are text stop strings can match only when not skipped', () => {
    const tok = toks.get('qwen3')!;
    const ids = tok.encode('hi<|im_end|>there', { addSpecialTokens: false, allowSpecial: true });
    assert.deepEqual(stream(tok, ids, ['<|im_end|>']), { text: 'hithere', stopped: null });
    assert.deepEqual(stream(tok, ids, ['<|im_end|>'], false), { text: 'hi', stopped: '<|im_end|>' });
    assert.throws(() => new TextOutput(tok, ['']), RangeError);
  });
});
