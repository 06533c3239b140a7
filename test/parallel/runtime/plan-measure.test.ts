/**
 * `skymoe plan --measure`: two training steps of the tiny preset under each layout the trainer
 * runs, every rank counting what it sent; the step traffic equals the planner's bytes model per
 * collective kind and group within 1% (here exactly; the expert all-to-all on its routed bytes,
 * sent plus kept: which share leaves the rank depends on routing, which the planner assumes even),
 * and the control traffic (setup, metric sums, the stop agreement, the checkpoint) is counted apart.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runPlan } from '../../../src/cli/plan.js';
import { checkTraffic, type TrafficCheck } from '../../../src/parallel/traffic-check.js';
import { tempRoot } from '../../helpers.js';

const root = tempRoot('skymoe-measure-test-');

const measure = (layout: string, zero?: number) => checkTraffic({ layout, zero, steps: 2, batch: 2, seq: 32, backend: 'js' });

function assertMatches(r: TrafficCheck, want: string[]): void {
  assert.equal(r.notRun, null);
  const seen = r.rows.map((x) => `${x.kind} ${x.group}`);
  assert.deepEqual(seen.sort(), [...want].sort(), `${r.layout}: kinds and groups`);
  for (const row of r.rows) {
    assert.ok(row.predicted > 0, `${r.layout} ${row.kind} ${row.group}: predicted`);
    if (row.kind === 'all-to-all') {
      // every routed copy of a rank's rows, sent or kept, exactly; the sent share is routing's
      assert.equal(row.routed?.measured, row.routed?.predicted, `${r.layout} ${row.kind} ${row.group}: routed bytes measured vs predicted`);
      assert.ok(row.routed!.keptShare! > 0 && row.routed!.keptShare! < 1, `${r.layout}: some copies stay, some leave`);
      assert.ok(Math.abs(row.measured! - row.predicted) <= 0.5 * row.predicted, `${r.layout}: the bytes sent near the even spread's`);
    } else assert.equal(row.measured, row.predicted, `${r.layout} ${row.kind} ${row.group}: measured vs predicted`);
  }
  assert.ok(r.ok);
  // setup broadcasts the tokenizer, the stop agreement runs over every rank: control, never step traffic
  assert.ok(r.control.some((c) => c.kind === 'broadcast' && c.group === 'world'), `${r.layout}: setup counted as control`);
  assert.ok(!r.rows.some((x) => x.kind === 'broadcast' || x.kind === 'barrier'));
}

const LAYOUTS: [string, number | undefined, string[]][] = [
  ['dp=2', 0, ['all-reduce dp']],
  ['dp=2', 1, ['reduce-scatter dp', 'all-gather dp']],
  ['tp=2,expert=edp', undefined, ['all-reduce tp']],
  ['tp=3,expert=etp', undefined, ['all-reduce tp']], // heads 2+1+1, FFN 43+43+42
  ['tp=2,dp=2,expert=edp', 1, ['all-reduce tp', 'reduce-scatter dp', 'all-gather dp']],
  ['tp=2,dp=2,expert=ep', 1, ['all-reduce tp', 'all-to-all ep', 'reduce-scatter dp', 'all-gather dp']],
  ['tp=2,dp=2,sp=1', 1, ['all-gather tp', 'reduce-scatter tp', 'all-reduce tp', 'reduce-scatter dp', 'all-gather dp']],
  ['tp=2,pp=2,recompute=full', 0, ['all-reduce tp', 'p2p pp']],
];
for (const [layout, zero, want] of LAYOUTS) {
  test(`--measure ${layout}${zero !== undefined ? ` --zero ${zero}` : ''}: bytes sent per kind and group equal the planner's`, { timeout: 60_000 }, async () => {
    assertMatches(await measure(layout, zero), want);
  });
}

test('--measure prints one line per kind and group, control apart, a summary; a layout not run yet gets its prediction and says so', { timeout: 60_000 }, async () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(' '));
  const code = process.exitCode;
  try {
    await runPlan({ measure: true, preset: 'tiny', layout: 'dp=2', steps: 2, batch: 2, seq: 32, backend: 'js' });
    await runPlan({ measure: true, preset: 'demo', layout: 'pp=2,vp=2', steps: 2, batch: 2, seq: 32 }); // 4 layers: 2 virtual stages of 1
  } finally {
    console.log = log;
  }
  assert.equal(process.exitCode, code, 'a match leaves the exit code alone');
  const text = lines.join('\n');
  assert.match(text, /^measure layout=dp=2 kind=reduce-scatter group=dp predicted_bytes=(\d+) measured_bytes=\1 ratio=1\.000$/m);
  assert.match(text, /^measure layout=dp=2 kind=all-gather group=dp predicted_bytes=(\d+) measured_bytes=\1 ratio=1\.000$/m);
  // the losses summed for the metrics and the checkpoint's gather of the ZeRO-1 moments are control traffic
  assert.match(text, /^measure layout=dp=2 phase=control kind=all-reduce group=dp run_bytes=\d+ \(not modeled\)$/m);
  assert.match(text, /^measure layout=dp=2 phase=control kind=all-gather group=dp run_bytes=\d+ \(not modeled\)$/m);
  assert.match(text, /^measure layout=dp=2 summary .* result=ok$/m);
  assert.match(text, /^measure layout=pp=2,vp=2 kind=p2p group=pp predicted_bytes=\d+ measured_bytes=- ratio=- not run$/m);
  assert.match(text, /^measure layout=pp=2,vp=2 summary .* result=not-run \(skymoe train does not run this layout yet: .*vp=2/m);
  await assert.rejects(async () => runPlan({ measure: true, preset: 'tiny' }), /--layout: --measure needs a layout/);
  await assert.rejects(async () => runPlan({ measure: true, config: 'x.json', layout: 'dp=2' }), /--config: --measure trains the model/);
});
