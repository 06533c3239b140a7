/** The main job and the experiments, end to end at a tiny budget (their figures need the full budget). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const env = { ...process.env, SKYMOE_CACHE: mkdtempSync(join(tmpdir(), 'skymoe-cache-')) };

function skymoe(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('demo prints the comparison table, saves the best model and samples from it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-demo-'));
  const r = skymoe('demo', '--minutes', '0.02', '--out', dir, '--no-report');
  assert.equal(r.code, 0, r.err);
  for (const row of ['dense (phase 1)', 'MoE upcycled from dense', 'dense continued', 'MoE from scratch']) assert.match(r.out, new RegExp(`${row.replace(/[()]/g, '\\$&')} +\\d+ +[\\d.]+ +[\\d.]+ +\\d+`));
  assert.match(r.out, /upcycled MoE vs continued dense: validation loss [\d.]+ vs [\d.]+/);
  assert.match(r.out, /samples from the best model:\n {2}> Call me Ishmael/);
  assert.ok(existsSync(join(dir, 'best-model', 'config.json')) && existsSync(join(dir, 'best-model', 'tokenizer.json')));
  assert.ok(existsSync(join(dir, 'moe-upcycled', 'metrics.jsonl')));
  rmSync(dir, { recursive: true });
});

test('experiment gate-norm writes its runs, a summary and a report', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-gn-'));
  const r = skymoe('experiment', 'gate-norm', '--minutes', '0.02', '--out', dir, '--batch', '4', '--seq', '32');
  assert.equal(r.code, 0, r.err);
  for (const run of ['no-norm', 'lambda-1', 'lambda-2']) assert.ok(existsSync(join(dir, run, 'metrics.jsonl')), run);
  assert.match(readFileSync(join(dir, 'summary.txt'), 'utf8'), /Max1\/Max2/);
  assert.ok(existsSync(join(dir, 'report', 'index.html')));
  assert.ok(existsSync(join(dir, 'report', 'router-ratios.png')));
  rmSync(dir, { recursive: true });
});

test('experiment upcycle-vs-scratch runs the dense model and eight MoE runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-uvs-'));
  const r = skymoe('experiment', 'upcycle-vs-scratch', '--minutes', '0.02', '--out', dir, '--batch', '2', '--seq', '32', '--no-report');
  assert.equal(r.code, 0, r.err);
  for (const b of ['small', 'large']) for (const v of ['scratch', 'upcycle-early', 'upcycle-late-const', 'upcycle-late']) assert.match(r.out, new RegExp(`${b}-${v} `));
  rmSync(dir, { recursive: true });
});
