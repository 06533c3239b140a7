/** The report builds from a real tiny training run and contains every chart. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../src/backend/index.js';
import * as T from '../../src/tensor/index.js';
import { DEFAULT_TRAIN, startRun } from '../../src/train/run.js';
import { buildReport } from '../../src/report/index.js';

process.env.SKYMOE_CACHE = mkdtempSync(join(tmpdir(), 'skymoe-cache-'));

test('a report of a real tiny run has every chart', async () => {
  const be = await createBackend({ name: 'wasm', threads: 2 });
  T.setBackend(be);
  const dir = mkdtempSync(join(tmpdir(), 'skymoe-report-run-'));
  const h = await startRun(dir, { preset: 'tiny', corpus: [], valFraction: 0.05, modelSeed: 0 }, { ...DEFAULT_TRAIN, steps: 12, batch: 2, seq: 32, evalEvery: 4, evalBatches: 2, saveEvery: 0 }, be, { onWarn: () => {} });
  await h.trainer.run();
  h.trainer.dispose();
  h.trainer.model.dispose();
  await be.dispose();
  const r = await buildReport([dir], { outDir: join(dir, 'report') });
  const html = readFileSync(r.html, 'utf8');
  for (const title of ['Loss: train', 'coefficient alpha', 'drop rate per MoE layer', 'Expert load', 'Gate-probability ratios', 'Expert similarity', 'Learning rate']) assert.ok(html.toLowerCase().includes(title.toLowerCase()), `the page has a '${title}' chart`);
  assert.ok(!/no expert similarity recorded/.test(html), 'a real MoE run records expert similarity');
  assert.ok(r.pngs.length >= 7);
  for (const p of r.pngs) {
    assert.ok(existsSync(p));
    assert.deepEqual([...readFileSync(p).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  }
  rmSync(dir, { recursive: true });
});
