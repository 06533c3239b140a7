/** End to end through the command line: init, inspect, generate, score on the tiny preset. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSafetensors } from '../../src/io/index.js';
import { logSoftmax } from '../../src/infer/sample.js';

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

test('init + inspect + generate + score on the tiny preset', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-cli-'));
  const model = join(dir, 'tiny');
  let r = skymoe('init', '--preset', 'tiny', '--out', model, '--seed', '3');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /295\.7K parameters/);
  r = skymoe('inspect', model);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /stored +41 tensors/);
  r = skymoe('generate', '--model', model, '--prompt', 'Call me', '--max-tokens', '12', '--temperature', '0');
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.startsWith('Call me'));
  assert.match(r.err, /\d+ tokens in/);
  const again = skymoe('generate', '--model', model, '--prompt', 'Call me', '--max-tokens', '12', '--temperature', '0');
  assert.equal(again.out, r.out, 'greedy generation is deterministic');
  const logits = join(dir, 'logits.safetensors');
  r = skymoe('score', '--model', model, '--text', 'Call me Ishmael.', '--logits', logits);
  assert.equal(r.code, 0, r.err);
  const ppl = Number(/perplexity ([\d.]+)/.exec(r.out)![1]);
  // Recompute the perplexity from the written logits and ids.
  const f = openSafetensors(logits);
  const [Tn, V] = f.info('logits').shape as [number, number];
  const ids = f.readI64('input_ids');
  const lg = f.readF32('logits');
  f.close();
  assert.equal(ids.length, Tn);
  let total = 0;
  for (let t = 1; t < Tn; t++) total += logSoftmax(lg.subarray((t - 1) * V, t * V))[Number(ids[t])]!;
  assert.ok(Math.abs(Math.exp(-total / (Tn - 1)) - ppl) / ppl < 1e-3, `perplexity ${ppl} vs recomputed ${Math.exp(-total / (Tn - 1))}`);
  rmSync(dir, { recursive: true });
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
