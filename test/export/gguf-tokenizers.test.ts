/**
 * The tokenizers a GGUF carries, checked by llama.cpp itself (node-llama-cpp, when the peer is
 * installed): tiny models exported with the real Llama-2 (SentencePiece-style BPE, "llama"),
 * Llama-3 ("gpt2" + "llama-bpe") and Qwen3 ("gpt2" + "qwen2") tokenizers, and with a
 * tokenizer.model trained by the sentencepiece library, must be tokenized by llama.cpp exactly as
 * skymoe tokenizes them. What llama.cpp has no tokenizer for is refused by name.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsBackend } from '../../src/backend/js/index.js';
import { exportGguf } from '../../src/export/gguf.js';
import { GgufReader } from '../../src/io/gguf.js';
import { saveModel } from '../../src/io/hf.js';
import { loadTokenizer, type Tokenizer } from '../../src/io/tokenizer/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { llamaTokenize, loadLlamaPeer } from '../../bench/peers/llama.js';
import { corpus, lenmlDir } from '../io/tokenizer-corpus.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-gguf-tok-'));
after(() => rmSync(work, { recursive: true, force: true }));
const SPM = fileURLToPath(new URL('../../../test/fixtures/sentencepiece', import.meta.url));

/** A one-layer model of `layout` with `vocabSize` tokens, its tokenizer files copied beside it. */
function tinyModel(name: string, layout: 'llama' | 'qwen3', vocabSize: number, tokenizerFiles: [string, string][], ids: { bos: number; eos: number; pad: number }): string {
  const base = preset('tiny-dense');
  const cfg: ModelConfig = {
    ...base,
    layout,
    vocabSize,
    hiddenSize: 16,
    numHeads: 2,
    numKvHeads: 2,
    headDim: 8,
    intermediateSize: 16,
    moeIntermediateSize: 16,
    numLayers: 1,
    tieWordEmbeddings: true,
    bosTokenId: ids.bos,
    eosTokenId: ids.eos,
    padTokenId: ids.pad,
    ...(layout === 'qwen3' ? { qkNorm: 'head' as const } : {}),
  };
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const m = SkyworkMoE.create(cfg, { seed: 1, backend: new JsBackend() });
  saveModel(m, dir);
  m.dispose();
  for (const [src, dst] of tokenizerFiles) copyFileSync(src, join(dir, dst));
  return dir;
}

interface Case {
  name: string;
  dir: string;
  tok: Tokenizer;
  model: string;
  pre?: string;
}
const cases: Case[] = [];
let texts: string[];

before(async () => {
  // Texts without special-token markup: llama.cpp is asked to tokenize them as plain text.
  texts = (await corpus()).filter((t) => !/<\||<\/?s>|<unk>|<think>/.test(t) && t.length > 0);
  const files = (d: string): [string, string][] => [
    [join(d, 'tokenizer.json'), 'tokenizer.json'],
    [join(d, 'tokenizer_config.json'), 'tokenizer_config.json'],
  ];
  const add = async (name: string, dir: string, model: string, pre?: string) => cases.push({ name, dir, tok: await loadTokenizer(dir), model, pre });
  await add('llama2', tinyModel('llama2', 'llama', 32000, files(lenmlDir('llama2')), { bos: 1, eos: 2, pad: 0 }), 'llama');
  await add('spm', tinyModel('spm', 'llama', 700, [[join(SPM, 'bpe_fallback.model'), 'tokenizer.model']], { bos: 1, eos: 2, pad: 0 }), 'llama');
  await add('llama3', tinyModel('llama3', 'llama', 128256, files(lenmlDir('llama3')), { bos: 128000, eos: 128001, pad: 128001 }), 'gpt2', 'llama-bpe');
  await add('qwen3', tinyModel('qwen3', 'qwen3', 151936, files(lenmlDir('qwen3')), { bos: 151643, eos: 151645, pad: 151643 }), 'gpt2', 'qwen2');
  for (const c of cases) await exportGguf(c.dir, join(work, `${c.name}.gguf`), { type: 'f16' });
});

test('the GGUF names the tokenizer llama.cpp should run, with its vocabulary, types and scores', () => {
  for (const c of cases) {
    const g = GgufReader.open(join(work, `${c.name}.gguf`));
    try {
      const m = g.metadata;
      assert.equal(m.get('tokenizer.ggml.model'), c.model, c.name);
      assert.equal(m.get('tokenizer.ggml.pre'), c.pre, c.name);
      const tokens = m.get('tokenizer.ggml.tokens') as string[];
      for (const id of [0, 5, c.tok.vocabSize - 1]) assert.equal(tokens[id], c.tok.idToToken(id), `${c.name} token ${id}`);
      const types = m.get('tokenizer.ggml.token_type') as number[];
      if (c.model === 'llama') {
        assert.deepEqual([types[0], types[1], types[c.tok.tokenToId('<0x41>')!]], [2, 3, 6], `${c.name}: unknown, control, byte`);
        if (c.name === 'spm') assert.equal(types[c.tok.tokenToId('<tool>')!], 4, 'a user-defined piece');
        const scores = m.get('tokenizer.ggml.scores') as number[];
        // merged pieces score by merge rank: the first merge's result scores highest
        const [a, b] = c.tok.merges[0]!;
        assert.equal(scores[c.tok.tokenToId(a + b)!], 0);
        assert.equal(m.get('tokenizer.ggml.add_space_prefix'), true);
      } else {
        assert.equal((m.get('tokenizer.ggml.merges') as string[]).length, c.tok.merges.length);
      }
      assert.equal(m.get('tokenizer.ggml.add_bos_token'), c.name !== 'qwen3', `${c.name}: bos as the tokenizer puts it`);
    } finally {
      g.close();
    }
  }
});

test("llama.cpp tokenizes the corpus exactly as skymoe does (Llama-2, a sentencepiece .model, Llama-3, Qwen3)", async (t) => {
  const peer = await loadLlamaPeer();
  if ('unavailable' in peer) return t.skip(peer.unavailable);
  t.diagnostic(`node-llama-cpp ${peer.version}`);
  try {
    for (const c of cases) {
      // llama.cpp applies no NFC: compare on NFC text, as Qwen3's normalizer makes it.
      const input = texts.map((s) => s.normalize('NFC'));
      const theirs = await llamaTokenize(peer, join(work, `${c.name}.gguf`), input);
      let n = 0;
      input.forEach((s, i) => {
        const ours = c.tok.encode(s, { addSpecialTokens: false });
        assert.deepEqual(theirs[i], ours, `${c.name}: ${JSON.stringify(s.slice(0, 40))}`);
        n += ours.length;
      });
      assert.ok(n > 5000, `${c.name}: ${n} tokens compared`);
      // Special and added tokens in the text, matched as tokens on both sides (llama.cpp's legacy
      // SentencePiece handling puts a space prefix after each, as transformers' legacy mode).
      const marked = ['Hello <tool>world', 'a <s> b </s>c', '<tool> <tool>x', 'end</s>', ' lead <s>  two'].filter((s) => s.split(/(<\/?s>|<tool>)/).every((p) => !/^<.*>$/.test(p) || c.tok.isAdded(c.tok.tokenToId(p) ?? -1)));
      const special = await llamaTokenize(peer, join(work, `${c.name}.gguf`), marked, true);
      marked.forEach((s, i) => assert.deepEqual(special[i], c.tok.encode(s, { allowSpecial: true, addSpecialTokens: false }), `${c.name}: ${JSON.stringify(s)}`));
    }
  } finally {
    await peer.llama.dispose();
  }
});

test('tokenizers llama.cpp has no equivalent for are refused, naming why', async () => {
  const dir = tinyModel('unigram', 'llama', 600, [[join(SPM, 'unigram.model'), 'tokenizer.model']], { bos: 1, eos: 2, pad: 0 });
  await assert.rejects(exportGguf(dir, join(work, 'u.gguf'), { type: 'f16' }), /tokenizer\.model: cannot export the tokenizer to GGUF: llama\.cpp has no Unigram tokenizer/);
  // legacy: false: llama.cpp would put a space after every special token and before leading spaces
  const modern = tinyModel('modern', 'llama', 700, [[join(SPM, 'bpe_fallback.model'), 'tokenizer.model']], { bos: 1, eos: 2, pad: 0 });
  writeFileSync(join(modern, 'tokenizer_config.json'), JSON.stringify({ legacy: false }));
  await assert.rejects(exportGguf(modern, join(work, 'm.gguf'), { type: 'f16' }), /cannot export the tokenizer to GGUF: its dummy prefix comes from a Metaspace pre-tokenizer \(legacy: false\)/);
});
