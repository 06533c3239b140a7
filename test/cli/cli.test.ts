/** End to end through the command line: init, inspect, generate and score on the tiny preset, judged by an independent float64 forward. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsBackend } from '../../src/backend/js/index.js';
import { generateTokens } from '../../src/infer/generate.js';
import { loadModel, openSafetensors, readConfig } from '../../src/io/index.js';
import { loadTokenizer } from '../../src/io/tokenizer/index.js';
import { assertClose } from '../helpers.js';
import { logSoftmax64, ReferenceModel } from '../reference/model64.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function skymoe(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env: { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '2' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('inspect --preset skywork-moe-146b prints 146.4B total and 22.7B active', () => {
  const r = skymoe('inspect', '--preset', 'skywork-moe-146b');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /total 146\.4B/);
  assert.match(r.out, /active 22\.7B/);
});

/** A tiny model written by `skymoe init`, shared by the tests below. */
const work = mkdtempSync(join(tmpdir(), 'skymoe-cli-'));
const model = join(work, 'tiny');
after(() => rmSync(work, { recursive: true, force: true }));

test('init + inspect on the tiny preset', () => {
  let r = skymoe('init', '--preset', 'tiny', '--out', model, '--seed', '3');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /295\.7K parameters/);
  r = skymoe('inspect', model);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /stored +41 tensors/);
});

test('generate --temperature 0 takes the argmax of an independent float64 forward at every step', async () => {
  const prompt = 'Call me';
  const r = skymoe('generate', '--model', model, '--prompt', prompt, '--max-tokens', '12', '--temperature', '0');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /12 tokens in .* stopped by length/);
  // The same greedy decoding through the library (KV cache, js backend), then each step judged by
  // the float64 reference forward over the whole prefix: the chosen token is its argmax.
  const tok = await loadTokenizer(model);
  const be = new JsBackend();
  const m = loadModel(model, be);
  const ids = [m.config.bosTokenId, ...tok.encode(prompt)];
  const generated = [...generateTokens(m, ids, { maxTokens: 12, temperature: 0 })].map((t) => t.id);
  m.dispose();
  assert.equal(generated.length, 12);
  const ref = new ReferenceModel(model);
  const seq = [...ids];
  let smallestGap = Infinity;
  for (const id of generated) {
    const last = ref.forward(seq).at(-1)!;
    const sorted = Array.from(last).sort((a, b) => b - a);
    smallestGap = Math.min(smallestGap, sorted[0]! - sorted[1]!);
    assert.ok(last[id]! >= sorted[0]! - 1e-6, `step ${seq.length - ids.length}: chose ${id} (logit ${last[id]}), the argmax has ${sorted[0]}`);
    seq.push(id);
  }
  assert.ok(smallestGap > 1e-5, `argmax gaps are resolvable in float32 (smallest ${smallestGap})`);
  // The command printed the prompt and exactly these tokens.
  assert.equal(r.out, `${prompt}${tok.decode(generated)}\n`);
  const again = skymoe('generate', '--model', model, '--prompt', prompt, '--max-tokens', '12', '--temperature', '0');
  assert.equal(again.out, r.out, 'greedy generation is deterministic');
});

test('score prints the log-probabilities and perplexity of an independent float64 forward', async () => {
  const text = 'Call me Ishmael. Some years ago';
  const logits = join(work, 'logits.safetensors');
  const r = skymoe('score', '--model', model, '--text', text, '--logits', logits);
  assert.equal(r.code, 0, r.err);
  const tok = await loadTokenizer(model);
  const ids = [readConfig(model).bosTokenId, ...tok.encode(text)];
  const ref = new ReferenceModel(model);
  const rows = ref.forward(ids);
  const lps = ids.slice(1).map((id, t) => logSoftmax64(rows[t]!)[id]!);
  // every printed per-token log-probability (4 decimals) and the perplexity (3 decimals)
  const printed = [...r.out.matchAll(/^ *(\d+) +".*" +(-?[\d.]+)$/gm)].map((x) => [Number(x[1]), Number(x[2])] as const);
  assert.equal(printed.length, ids.length - 1);
  for (const [pos, lp] of printed) assert.ok(Math.abs(lp - lps[pos - 1]!) < 1e-4, `position ${pos}: printed ${lp}, reference ${lps[pos - 1]}`);
  const ppl = Number(/perplexity ([\d.]+)/.exec(r.out)![1]);
  const refPpl = Math.exp(-lps.reduce((a, b) => a + b, 0) / lps.length);
  assert.ok(Math.abs(ppl - refPpl) < 1e-3 * refPpl + 5e-4, `perplexity ${ppl} vs reference ${refPpl}`);
  // the written logits and ids
  const f = openSafetensors(logits);
  const written = f.readF32('logits');
  assert.deepEqual(Array.from(f.readI64('input_ids'), Number), ids);
  f.close();
  const flat = new Float64Array(rows.length * ref.vocab);
  rows.forEach((row, i) => flat.set(row, i * ref.vocab));
  assertClose(written, flat, 'written logits vs the float64 reference', 1e-4, 1e-5);
});

test('bad input gets a clear error naming what is at fault', () => {
  let r = skymoe('inspect', '/nonexistent/model');
  assert.notEqual(r.code, 0);
  assert.match(r.err, /\/nonexistent\/model\/config\.json/);
  r = skymoe('inspect', '--preset', 'huge');
  assert.match(r.err, /unknown preset 'huge'/);
  r = skymoe('init', '--preset', 'skywork-moe-146b', '--out', '/tmp/never');
  assert.notEqual(r.code, 0);
  assert.match(r.err, /146\.4B parameters/);
});
