/**
 * Tensor parallelism of the whole model over 2-3 worker-thread ranks (uneven head and expert
 * splits, ETP and EDP experts, a dense model): the loss, the logits and every parameter's gradient
 * (this rank's slice of the split ones, the whole of the replicated ones) equal one rank's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createJsBackend } from '../../../src/backend/js/index.js';
import { preset } from '../../../src/model/presets.js';
import { denseTwin } from '../../../src/model/presets.js';
import { headSplit, shardPlan, sliceValues } from '../../../src/model/shard.js';
import { parameterSpecs, SkyworkMoE } from '../../../src/model/skywork-moe.js';
import { runRanks } from '../../../src/parallel/runtime/ranks.js';
import * as T from '../../../src/tensor/index.js';
import { lossAndGrads, type TpModelCase, type TpModelResult } from './tp-model-rank.js';

function makeCase(config: TpModelCase['config'], experts: 'etp' | 'edp'): TpModelCase {
  const batch = 2, seq = 12;
  const ids = Array.from({ length: batch * seq }, (_, i) => (i * 37 + 5) % config.vocabSize);
  const targets = Array.from({ length: batch * seq }, (_, i) => (i * 53 + 1) % config.vocabSize);
  return { config, experts, ids, targets, batch, seq };
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * scale + 1e-7, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

const tiny = preset('tiny');
const CASES: [string, TpModelCase, number][] = [
  ['MoE, experts by EDP, 2 ranks', makeCase(tiny, 'edp'), 2],
  ['MoE, experts by EDP, 3 ranks (heads 2+1+1, experts 2+1+1)', makeCase(tiny, 'edp'), 3],
  ['MoE, experts by ETP, 3 ranks (heads 2+1+1, FFN 43+43+42)', makeCase(tiny, 'etp'), 3],
  ['dense, 3 ranks', makeCase(denseTwin(tiny), 'etp'), 3],
];

for (const [what, c, size] of CASES)
  test(`tensor parallel ${what}: loss, logits and every gradient equal one rank's`, { timeout: 60_000 }, async () => {
    T.setBackend(createJsBackend());
    const ref = lossAndGrads(SkyworkMoE.create(c.config, { seed: 11 }), c);
    const res = await runRanks<TpModelCase, TpModelResult>({ size, entry: new URL('./tp-model-rank.js', import.meta.url), data: c, backend: 'js' });
    const specs = new Map(parameterSpecs(c.config).map((s) => [s.name, s.shape]));
    for (let r = 0; r < size; r++) {
      const o = res[r]!;
      close([o.loss], [ref.loss], `rank ${r} loss`);
      close(o.logits, ref.logits, `rank ${r} logits`);
      const plan = shardPlan(c.config, { size, index: r, experts: c.experts });
      for (const [name, want] of Object.entries(ref.grads)) {
        const cut = plan.get(name);
        close(o.grads[name]!, cut ? sliceValues(want, specs.get(name)!, cut) : want, `rank ${r} d ${name}${cut ? ` (rows/cols ${cut.from}..${cut.from + cut.count} of dim ${cut.dim})` : ''}`);
      }
    }
  });

test("Skywork's inference split: 36 heads over 8 ranks are [5,5,5,5,4,4,4,4] (SPEC section 6); what cannot be split is refused by name", () => {
  const c = { ...preset('tiny'), numHeads: 36, numKvHeads: 36, headDim: 4, hiddenSize: 144 };
  assert.deepEqual(Array.from({ length: 8 }, (_, index) => headSplit(c, { size: 8, index, experts: 'edp' }).heads), [5, 5, 5, 5, 4, 4, 4, 4]);
  const gqa = { ...c, numKvHeads: 4 };
  assert.deepEqual(Array.from({ length: 3 }, (_, index) => headSplit(gqa, { size: 3, index, experts: 'edp' })), [
    { heads: 18, kvHeads: 2, kvFrom: 0 },
    { heads: 9, kvHeads: 1, kvFrom: 2 },
    { heads: 9, kvHeads: 1, kvFrom: 3 },
  ]);
  assert.throws(() => shardPlan(gqa, { size: 5, index: 0, experts: 'edp' }), /4 key\/value heads cannot be split over 5 ranks/);
  assert.throws(() => shardPlan(tiny, { size: 8, index: 0, experts: 'edp' }), /4 key\/value heads cannot be split over 8 ranks/);
});
