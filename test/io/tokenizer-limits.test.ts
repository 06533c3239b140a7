/**
 * Hostile or unusual tokenizer files (the reliability issue's findings): token ids outside
 * [0, 2^31) are refused naming the field; a tokenizer whose ids reach past the model's vocab_size
 * is refused before anything runs; merges whose parts hold spaces are written in the form that
 * reads back (a checkpoint saved from such a tokenizer loads again).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkTokenizerFitsModel } from '../../src/io/hf.js';
import { loadTokenizer, saveTokenizer, tokenizerFromJson, tokenizerToJson, trainBpe, TokenizerError } from '../../src/io/tokenizer/index.js';
import { preset } from '../../src/model/presets.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-toklimits-'));
after(() => rmSync(work, { recursive: true, force: true }));
const CORPUS = 'Call me Ishmael. Some years ago - never mind how long precisely - having little or no money in my purse.';

function json(): Record<string, any> {
  return tokenizerToJson(trainBpe([CORPUS], { vocabSize: 300 })) as Record<string, any>;
}

test('token ids outside [0, 2^31) are refused, naming the field', () => {
  for (const id of [2 ** 32, 2 ** 31, -1, 1.5]) {
    const j = json();
    j.added_tokens = [{ id, content: '<x>', special: true }];
    assert.throws(() => tokenizerFromJson(j, 'tokenizer.json'), (e: Error) => e instanceof TokenizerError && /added_tokens\[0\]\.id/.test(e.message) && e.message.includes(String(id)), `added token id ${id}`);
    const k = json();
    k.model.vocab['zz-big'] = id;
    assert.throws(() => tokenizerFromJson(k, 'tokenizer.json'), (e: Error) => e instanceof TokenizerError && /model\.vocab/.test(e.message), `vocab id ${id}`);
  }
});

test("a tokenizer with ids past the model's vocab_size is refused before the model runs", async () => {
  const cfg = preset('tiny'); // vocab_size 512
  const j = json();
  j.added_tokens = [...j.added_tokens, { id: 600, content: 'QQQ', special: false }];
  const tok = tokenizerFromJson(j, 'tokenizer.json');
  assert.throws(() => checkTokenizerFitsModel(tok, cfg, 'm'), /token id 600 \("QQQ"\) is outside the model's vocab_size 512/);
  checkTokenizerFitsModel(tokenizerFromJson(json(), 'tokenizer.json'), cfg, 'm'); // fits: no error
  // As a user meets it: `skymoe generate` on a model whose tokenizer.json was swapped.
  const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const env = { ...process.env, SKYMOE_BACKEND: 'js' };
  const model = join(work, 'm');
  assert.equal(spawnSync(process.execPath, [main, 'init', '--preset', 'tiny', '--out', model], { env }).status, 0);
  writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(j));
  const r = spawnSync(process.execPath, [main, 'generate', '--model', model, '--prompt', 'QQQ', '--max-tokens', '2'], { encoding: 'utf8', env });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /tokenizer\.json.*token id 600.*vocab_size 512/s);
  assert.equal(r.stdout, '');
});

test('merges whose parts hold a space are saved in the pair form and load back', async () => {
  // A character-level BPE (no byte-level pre-tokenizer) where a merged piece contains a space.
  const j = {
    version: '1.0',
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: { type: 'BPE', unk_token: null, vocab: { a: 0, ' ': 1, b: 2, 'a ': 3, 'a b': 4 }, merges: [['a', ' '], ['a ', 'b']] },
  };
  const tok = tokenizerFromJson(j, 'tokenizer.json');
  assert.deepEqual(tok.encode('a b', { addSpecialTokens: false }), [4]);
  const dir = join(work, 'spaces');
  await saveTokenizer(dir, tok);
  const written = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  assert.deepEqual(written.model.merges, [['a', ' '], ['a ', 'b']]);
  const back = await loadTokenizer(dir);
  assert.deepEqual(back.encode('a b', { addSpecialTokens: false }), [4]);
  // Merges without spaces keep the string form older readers expect.
  const plain = join(work, 'plain');
  await saveTokenizer(plain, trainBpe([CORPUS], { vocabSize: 300 }));
  assert.ok(JSON.parse(readFileSync(join(plain, 'tokenizer.json'), 'utf8')).model.merges.every((m: unknown) => typeof m === 'string'));
});
