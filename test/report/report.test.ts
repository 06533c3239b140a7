/** Reports from synthetic run directories: page, PNGs, summary values, and the loader's errors. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildReport, downsample, expertLoad, expertSimilarityChart, loadRun, lossChart, parseMetrics, ReportError, type ReportStep } from '../../src/report/index.js';

const temps: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'skymoe-report-'));
  temps.push(d);
  return d;
}
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

const LAYERS = 2;
const EXPERTS = 4;

/** A plausible run: loss decaying from `start`, evaluation every 10 steps, skewed expert load. */
function syntheticSteps(n: number, start: number, similarity: boolean): ReportStep[] {
  const steps: ReportStep[] = [];
  for (let i = 1; i <= n; i++) {
    const loss = start * Math.exp(-i / n) + 0.01 * Math.sin(i);
    const s: ReportStep = {
      step: i,
      loss,
      ce: loss - 0.005,
      aux: Array.from({ length: LAYERS }, (_, l) => 0.01 / (l + 1)),
      alpha: Array.from({ length: LAYERS }, (_, l) => 0.01 * (1 - i / (2 * n)) * (l + 1) * 0.5),
      dropRate: Array.from({ length: LAYERS }, (_, l) => 0.1 / (1 + i / 10) + 0.01 * l),
      tokensPerExpert: Array.from({ length: LAYERS }, (_, l) => Array.from({ length: EXPERTS }, (_, e) => 100 + 40 * e * (l + 1))),
      max1OverMax2: Array.from({ length: LAYERS }, (_, l) => 1.2 + i / n + 0.1 * l),
      max2OverMax3: Array.from({ length: LAYERS }, (_, l) => 1.1 + i / (2 * n) + 0.1 * l),
      entropy: Array.from({ length: LAYERS }, () => 1.3),
      gradNorm: 0.5,
      lr: 3e-3 * Math.min(1, i / 5),
      tokensPerSec: 1000 + i,
    };
    if (i % 10 === 0) {
      s.valLoss = loss + 0.1 + (i === 30 ? -1 : 0);
      s.valPpl = Math.exp(s.valLoss);
    }
    if (similarity && i % 5 === 0) s.expertSimilarity = Array.from({ length: LAYERS }, (_, l) => 0.9 - i / (2 * n) - 0.05 * l);
    steps.push(s);
  }
  return steps;
}

function writeRun(root: string, name: string, steps: ReportStep[]): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'metrics.jsonl'), steps.map((s) => `${JSON.stringify(s)}\n`).join(''));
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ version: 1, source: { preset: 'tiny', corpus: [] }, options: { steps: steps.length }, backend: 'wasm x2', createdAt: '2024-06-01T00:00:00Z' }));
  return dir;
}

/** Width and height from a PNG's IHDR chunk, after checking the signature. */
function pngSize(bytes: Buffer): { width: number; height: number } {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(bytes.toString('latin1', 12, 16), 'IHDR');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** The summary table's rows: run name -> the data-value of each column. */
function summaryRows(html: string): Map<string, number[]> {
  const table = /<table class="summary">([\s\S]*?)<\/table>/.exec(html)![1]!;
  const rows = new Map<string, number[]>();
  for (const m of table.matchAll(/<tr><th scope="row">([^<]*)<\/th>(.*?)<\/tr>/g)) {
    rows.set(m[1]!, [...m[2]!.matchAll(/data-value="([^"]*)"/g)].map((v) => (v[1] === '' ? Number.NaN : Number(v[1]))));
  }
  return rows;
}

test('a report of two runs: every chart on the page and as a PNG, and the right summary', async () => {
  const root = tempDir();
  const a = syntheticSteps(40, 4, false);
  const b = syntheticSteps(36, 5, true);
  const dirs = [writeRun(root, 'scratch', a), writeRun(root, 'upcycled', b)];
  const out = join(root, 'out');
  const r = await buildReport(dirs, { outDir: out, title: 'scratch vs upcycled' });

  assert.equal(r.html, join(out, 'index.html'));
  const html = readFileSync(r.html, 'utf8');
  assert.match(html, /<title>scratch vs upcycled<\/title>/);
  assert.doesNotMatch(html, /<script|<link|@import|url\(http/i, 'self-contained');
  const titles = ['Loss: train (loss, ce) and validation', 'Aux-loss coefficient alpha per MoE layer', 'Token drop rate per MoE layer', 'Expert load: scratch', 'Expert load: upcycled', 'Gate-probability ratios (mean over MoE layers)', 'Expert similarity', 'Learning rate and throughput'];
  for (const t of titles) assert.ok(html.includes(`<h2>${t}</h2>`), `chart '${t}' on the page`);
  const svgs = [...html.matchAll(/src="data:image\/svg\+xml;base64,([^"]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'));
  assert.equal(svgs.length, titles.length);
  for (const svg of svgs) assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svgs.some((s) => s.includes('scratch') && s.includes('upcycled')), 'run names in a legend');

  assert.equal(r.pngs.length, titles.length);
  for (const p of r.pngs) {
    assert.ok(existsSync(p), p);
    const { width, height } = pngSize(readFileSync(p));
    assert.ok(width >= 300 && width <= 4000 && height >= 100 && height <= 4000, `${p}: ${width}x${height}`);
  }

  const rows = summaryRows(html);
  assert.deepEqual([...rows.keys()], ['scratch', 'upcycled']);
  for (const [name, steps] of [['scratch', a], ['upcycled', b]] as const) {
    const [lastStep, finalLoss, bestVal, bestPpl, finalVal, finalPpl, tps, drop] = rows.get(name)!;
    const last = steps[steps.length - 1]!;
    const evals = steps.filter((s) => s.valLoss !== undefined);
    const best = evals.reduce((x, s) => (s.valLoss! < x.valLoss! ? s : x));
    assert.equal(lastStep, last.step);
    assert.equal(finalLoss, last.loss);
    assert.equal(bestVal, best.valLoss);
    assert.equal(best.step, 30, 'the dip at step 30 is the best validation');
    assert.equal(bestPpl, best.valPpl);
    assert.equal(finalVal, evals[evals.length - 1]!.valLoss);
    assert.equal(finalPpl, evals[evals.length - 1]!.valPpl);
    assert.ok(Math.abs(tps! - steps.reduce((s, x) => s + x.tokensPerSec, 0) / steps.length) < 1e-9);
    assert.ok(Math.abs(drop! - (last.dropRate[0]! + last.dropRate[1]!) / 2) < 1e-12);
    assert.ok(html.includes(`>${last.loss.toFixed(4)}<`), 'final loss shown to 4 decimals');
  }
  assert.equal(r.summaries[1]!.bestValStep, 30);
});

test('one run: default output folder RUN_DIR/report, and the similarity chart says it has none', async () => {
  const root = tempDir();
  const dir = writeRun(root, 'solo', syntheticSteps(12, 3, false));
  const r = await buildReport([dir], {});
  assert.equal(r.html, join(dir, 'report', 'index.html'));
  const html = readFileSync(r.html, 'utf8');
  const svgs = [...html.matchAll(/src="data:image\/svg\+xml;base64,([^"]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'));
  assert.ok(svgs.some((s) => s.includes('no expert similarity recorded')));
  assert.ok(existsSync(join(dir, 'report', 'expert-similarity.png')));
});

test('a malformed line is reported with its file and line number', () => {
  const root = tempDir();
  const dir = writeRun(root, 'bad', syntheticSteps(5, 3, false));
  const path = join(dir, 'metrics.jsonl');
  const lines = readFileSync(path, 'utf8').split('\n');
  lines[2] = '{"step": 3, "loss": ';
  writeFileSync(path, lines.join('\n'));
  assert.throws(() => loadRun(dir), (e: unknown) => e instanceof ReportError && e.path === path && e.line === 3 && e.message.startsWith(`${path}:3: malformed JSON`));
  lines[2] = JSON.stringify({ step: 3, loss: 1 });
  writeFileSync(path, lines.join('\n'));
  assert.throws(() => loadRun(dir), /metrics\.jsonl:3: not a metrics record: field 'ce'/);
  assert.throws(() => parseMetrics('{"step":1,"loss":1,"ce":1,"aux":[],"alpha":["x"]}', 'm.jsonl'), /m\.jsonl:1: .*field 'alpha\[0\]'/);
});

test('a directory without metrics.jsonl, and an empty run, get clear errors', () => {
  const root = tempDir();
  const dir = join(root, 'nothing');
  mkdirSync(dir);
  assert.throws(() => loadRun(dir), (e: unknown) => e instanceof ReportError && e.message.includes(dir) && /no metrics\.jsonl/.test(e.message));
  writeFileSync(join(dir, 'metrics.jsonl'), '\n');
  assert.throws(() => loadRun(dir), /metrics\.jsonl: empty run/);
  assert.throws(() => loadRun(join(root, 'missing')), /not a run directory/);
});

test('a NaN loss written as null reads back as NaN and is left out of the loss chart', () => {
  const steps = syntheticSteps(3, 3, false);
  const text = steps.map((s) => JSON.stringify({ ...s, loss: s.step === 2 ? Number.NaN : s.loss })).join('\n');
  const run = { name: 'r', dir: '.', steps: parseMetrics(text, 'm.jsonl') };
  assert.ok(Number.isNaN(run.steps[1]!.loss));
  const values = (lossChart([run]).spec as { data: { values: { series: string }[] } }).data.values;
  assert.equal(values.filter((v) => v.series === 'train loss').length, 2);
});

test('long series are thinned to at most 500 points, keeping the first and last step', () => {
  const xs = Array.from({ length: 2001 }, (_, i) => i);
  const d = downsample(xs, 500);
  assert.equal(d.length, 500);
  assert.equal(d[0], 0);
  assert.equal(d[d.length - 1], 2000);
  assert.deepEqual(downsample([1, 2, 3], 500), [1, 2, 3]);
  const steps = syntheticSteps(2000, 3, true);
  const values = (lossChart([{ name: 'long', dir: '.', steps }]).spec as { data: { values: { series: string; step: number }[] } }).data.values;
  const train = values.filter((v) => v.series === 'train loss');
  assert.equal(train.length, 500);
  assert.equal(train[0]!.step, 1);
  assert.equal(train[train.length - 1]!.step, 2000);
  assert.equal(values.filter((v) => v.series === 'validation loss').length, 200);
  const sim = (expertSimilarityChart([{ name: 'long', dir: '.', steps }]).spec as { layer?: unknown[]; data: { values: unknown[] } });
  assert.ok(sim.layer && sim.data.values.length === 400);
});

test('expert load pools token counts and normalizes each layer', () => {
  const load = expertLoad([
    { tokensPerExpert: [[1, 3], [2, 2]] },
    { tokensPerExpert: [[3, 1], [0, 0]] },
  ] as ReportStep[]);
  assert.deepEqual(load, [[0.5, 0.5], [0.5, 0.5]]);
  assert.deepEqual(expertLoad([{ tokensPerExpert: [[0, 0]] }] as ReportStep[]).map((r) => r.map(Number.isNaN)), [[true, true]]);
});
