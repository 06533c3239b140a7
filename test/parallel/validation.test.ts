/**
 * The step model against published training runs. The accepted error of each run, and why, lives
 * here rather than beside the predictions it judges (src/parallel/planner/validation.ts), so a
 * change to the model cannot move its own goalposts.
 *
 * Why +-15%: the unpublished inputs alone move predictions by about that much (Skywork: batch 1024
 * vs 4096 sequences changes the bubble from 19% to 5%; Llama 3: interleaving depth 2 vs 8 moves the
 * bubble by 10 points), and real runs carry costs no analytic model sees (stragglers, data loading,
 * checkpointing, launch gaps). The Skywork MFU row gets +-20%: the report's 38% cannot be
 * reproduced from its own 690 tokens/GPU/s with any standard count (31% with Megatron's at seq
 * 4096; SPEC section 5).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validate } from '../../src/parallel/planner/validation.js';

const TOLERANCE: Record<string, number> = {
  'skywork-tokens': 0.15,
  'skywork-mfu': 0.2,
  'mixtral-mcore': 0.15,
  'llama3-405b': 0.15,
  'megatron-145b': 0.15,
  'megatron-1t': 0.15,
};

const rows = validate();
test('every published run has an accepted error, and only those runs', () => {
  assert.deepEqual(rows.map((r) => r.run.id).sort(), Object.keys(TOLERANCE).sort());
});

for (const row of rows) {
  test(`${row.run.what}: ${row.run.reported} ${row.run.unit} reported`, () => {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const tolerance = TOLERANCE[row.run.id]!;
    assert.ok(row.evaluation.fits, `the published layout must fit in memory (peak ${(row.evaluation.peakMemory / 1e9).toFixed(1)} GB)`);
    assert.ok(Math.abs(row.error) <= tolerance, `predicted ${row.predicted.toFixed(1)} ${row.run.unit}: error ${pct(row.error)} exceeds ${pct(tolerance)}`);
  });
}
