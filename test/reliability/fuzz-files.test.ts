/**
 * The fast slice of the file-format fuzzing campaign (campaign/fuzz-files.ts, issue 12): 250
 * mutated real files per format (safetensors single and sharded, tokenizer.json, config.json,
 * GGUF), each loaded and used in a child process with a watchdog. Every case must load, or fail
 * with a typed skymoe error naming the file or the field: no untyped error, no loaded file that
 * then fails a use it must support, no hang, no crash. Cases are drawn from a fixed seed, so the
 * counts are the same on every run: a change in them is a change of the product.
 * The harness is checked first: cases that throw, hang and crash on purpose are counted as such.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FUZZ_TARGETS, fuzzTarget, makeSeeds } from '../../campaign/fuzz-files.js';
import type { CampaignOptions } from '../../campaign/lines.js';

const work = mkdtempSync(join(tmpdir(), 'skymoe-fuzz-files-'));
after(() => rmSync(work, { recursive: true, force: true }));
const seedsDir = join(work, 'seeds');
const CASES = 250;
const logs: string[] = [];
const opts: CampaignOptions = { seed: 20261129, scale: CASES / 10_000, log: (m) => logs.push(m), workDir: work };

before(() => makeSeeds(seedsDir, { heavy: false }));

test('the harness counts what a case does: loaded, typed, untyped, hang (watchdog), crash (the child died)', async () => {
  // _selftest case i: 0 returns, 1 throws a SafetensorsError naming its file, 2 a TypeError,
  // 3 loops forever, 4 kills its own process.
  const { line } = await fuzzTarget('_selftest', opts, { cases: 5, seedsDir, hangMs: 1000 });
  const { loaded, typed, untyped, unusable, hangs, crashes } = line;
  assert.deepEqual({ loaded, typed, untyped, unusable, hangs, crashes }, { loaded: 1, typed: 1, untyped: 1, unusable: 0, hangs: 1, crashes: 1 });
});

for (const target of FUZZ_TARGETS) {
  test(`${target}: ${CASES} mutated real files each load or fail with a typed error naming the file or field`, async () => {
    logs.length = 0;
    const { line } = await fuzzTarget(target, opts, { cases: CASES, seedsDir, keep: 3 });
    const why = `${JSON.stringify(line)}\n${logs.join('\n')}`;
    assert.equal(line.untyped, 0, why);
    assert.equal(line.unusable, 0, why);
    assert.equal(line.hangs, 0, why);
    assert.equal(line.crashes, 0, why);
    // The mutations reach both outcomes: a loader refusing everything, or accepting everything, fails here.
    assert.ok((line.loaded as number) >= CASES / 40, `too few cases loaded: ${why}`);
    assert.ok((line.typed as number) >= CASES / 4, `too few cases failed: ${why}`);
    assert.equal((line.loaded as number) + (line.typed as number), CASES);
    // Nothing left behind but the seeds.
    assert.deepEqual(readdirSync(work).filter((f) => f !== 'seeds'), []);
  });
}
