/** The step model against published training runs: each error must stay within its stated tolerance (docs/planner.md). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validate } from '../../src/parallel/planner/validation.js';

for (const row of validate()) {
  test(`${row.run.what}: ${row.run.reported} ${row.run.unit} reported`, () => {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    assert.ok(row.evaluation.fits, `the published layout must fit in memory (peak ${(row.evaluation.peakMemory / 1e9).toFixed(1)} GB)`);
    assert.ok(Math.abs(row.error) <= row.run.tolerance, `predicted ${row.predicted.toFixed(1)} ${row.run.unit}: error ${pct(row.error)} exceeds ${pct(row.run.tolerance)}`);
  });
}
