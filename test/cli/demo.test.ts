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

test('demo: equal tokens for the three phase-2 runs, the best model is the lowest validation loss, the verdict agrees', () => {
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-demo-'));
  const r = skymoe('demo', '--minutes', '0.02', '--out', dir, '--no-report');
  assert.equal(r.code, 0, r.err);
  const rows = new Map<string, { tokens: number; valLoss: number; ppl: number }>();
  for (const label of ['dense (phase 1)', 'MoE upcycled from dense', 'dense continued', 'MoE from scratch']) {
    const m = new RegExp(`^${label.replace(/[()]/g, '\\$&')} +(\\d+) +([\\d.]+) +([\\d.]+) +\\d+$`, 'm').exec(r.out);
    assert.ok(m, `table row '${label}' in:\n${r.out}`);
    rows.set(label, { tokens: Number(m[1]), valLoss: Number(m[2]), ppl: Number(m[3]) });
  }
  for (const [label, row] of rows) assert.ok(Math.abs(Math.exp(row.valLoss) - row.ppl) < 0.01 * row.ppl, `${label}: ppl ${row.ppl} is exp(${row.valLoss})`);
  const phase2 = { 'moe-upcycled': rows.get('MoE upcycled from dense')!, 'dense-continued': rows.get('dense continued')!, 'moe-scratch': rows.get('MoE from scratch')! };
  const tokens = Object.values(phase2).map((x) => x.tokens);
  assert.ok(tokens[0]! > 0 && tokens.every((t) => t === tokens[0]), `phase-2 runs saw ${tokens.join(', ')} tokens`);
  // each run's own metrics agree with the table: the last validation loss and the tokens seen
  for (const [name, row] of Object.entries(phase2)) {
    const lines = readFileSync(join(dir, name, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { valLoss?: number; tokens?: number });
    const lastEval = lines.filter((l) => typeof l.valLoss === 'number').at(-1)!;
    assert.equal(lastEval.valLoss!.toFixed(4), row.valLoss.toFixed(4), `${name}: last validation loss in metrics.jsonl`);
  }
  const [bestName] = Object.entries(phase2).reduce((a, b) => (b[1].valLoss < a[1].valLoss ? b : a));
  assert.match(r.out, new RegExp(`^best model: ${bestName} `, 'm'));
  const bestCfg = JSON.parse(readFileSync(join(dir, 'best-model', 'config.json'), 'utf8')) as { model_type: string };
  assert.equal(bestCfg.model_type, bestName === 'dense-continued' ? 'llama' : 'skywork');
  const up = phase2['moe-upcycled'].valLoss, dense = phase2['dense-continued'].valLoss;
  const verdict = /^upcycled MoE vs continued dense: validation loss ([\d.]+) vs ([\d.]+) \((MoE|dense) better\)$/m.exec(r.out);
  assert.ok(verdict, r.out);
  assert.deepEqual([Number(verdict[1]), Number(verdict[2])], [up, dense]);
  assert.equal(verdict[3], up < dense ? 'MoE' : 'dense');
  assert.match(r.out, /samples from the best model:\n {2}> Call me Ishmael/);
  assert.ok(existsSync(join(dir, 'best-model', 'tokenizer.json')));
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
