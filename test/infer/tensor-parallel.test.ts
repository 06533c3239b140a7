/**
 * Tensor-parallel inference (infer/tensor-parallel.ts): the rank-ordered all-reduce; paged steps
 * over 2 and 3 ranks (heads that do not divide, GQA, edp and etp experts, a dense model) against
 * one rank, and batch invariance under TP; a rank's slice loaded from a checkpoint (f32, bf16,
 * fp8 per tensor and per row; mapped on native) equal to the slice of the whole; the serving engine
 * over 2 and 3 ranks generating one rank's greedy tokens; a rank that fails to load named.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsBackend } from '../../src/backend/js/index.js';
import { EngineStartError, startEngine } from '../../src/infer/engine-worker.js';
import { DEFAULT_PARAMS, type EngineHandle } from '../../src/infer/types.js';
import { checkpointTensors, loadModelWithReport, saveModel } from '../../src/io/hf.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { saveTokenizer, trainBpe, type Tokenizer } from '../../src/io/tokenizer/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { PagedKVCache } from '../../src/model/paged-kv.js';
import { denseTwin, preset } from '../../src/model/presets.js';
import { shardPlan, sliceValues } from '../../src/model/shard.js';
import { paramValues, SkyworkMoE } from '../../src/model/skywork-moe.js';
import { runRanks } from '../../src/parallel/runtime/ranks.js';
import { allBackends, tryCreate } from '../helpers.js';
import { BLOCK, pagedSteps, reduceInput, runSteps, type StepRankCase } from './tp-step-rank.js';

const entry = new URL('./tp-step-rank.js', import.meta.url);
const ranks = (size: number, data: StepRankCase) => runRanks<StepRankCase, Float32Array[]>({ size, entry, data, backend: 'js', log: () => {} });

/** 6 heads in 3 key/value groups (GQA): over 2 ranks heads 4+2, over 3 ranks 2+2+2; 4 experts. */
const gqa: ModelConfig = { ...preset('tiny'), hiddenSize: 48, numHeads: 6, numKvHeads: 3, headDim: 8, intermediateSize: 96, moeIntermediateSize: 96, vocabSize: 96 };
/** 5 heads, one per key/value group: over 2 ranks 3+2 (FFN 48+47 under etp). */
const mha: ModelConfig = { ...gqa, hiddenSize: 40, numHeads: 5, numKvHeads: 5, intermediateSize: 95, moeIntermediateSize: 95 };

function closeRel(got: Float32Array, want: Float32Array, what: string, rel = 1e-5): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= rel * scale, `${what}[${i}]: ${got[i]} vs ${want[i]} (scale ${scale})`);
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

describe('rank-ordered all-reduce', () => {
  for (const size of [1, 2, 3, 4])
    it(`over ${size} rank(s): every element is x0 + x1 + ... in rank order, whatever the length`, { timeout: 30_000 }, async () => {
      const lengths = [1, 2, 5, 12, 37, 1000];
      const res = await ranks(size, { kind: 'reduce', lengths, seed: size });
      lengths.forEach((n, k) => {
        const want = reduceInput(n, size, 0);
        for (let r = 1; r < size; r++) {
          const x = reduceInput(n, size, r);
          for (let i = 0; i < n; i++) want[i] = want[i]! + x[i]!;
        }
        for (let r = 0; r < size; r++) assert.equal(bits(res[r]![k]!), bits(want), `length ${n}, rank ${r}`);
      });
    });
});

describe('paged steps under tensor parallelism', () => {
  const oneRank = (config: ModelConfig, only?: 'A' | 'B') => {
    const model = SkyworkMoE.create(config, { seed: 3, backend: new JsBackend() });
    try {
      return runSteps(model, pagedSteps(config.vocabSize, only), new PagedKVCache(config, 8, BLOCK, model.backend));
    } finally {
      model.dispose();
    }
  };
  const CASES: [string, ModelConfig, 'edp' | 'etp', number][] = [
    ['GQA 6 heads / 3 kv over 2 ranks (heads 4+2), experts 2+2 by edp', gqa, 'edp', 2],
    ['GQA 6 heads / 3 kv over 3 ranks, experts 2+1+1 by edp', gqa, 'edp', 3],
    ['5 heads over 2 ranks (3+2), experts split 48+47 by etp', mha, 'etp', 2],
    ['dense, 5 heads over 3 ranks (2+2+1), MLP 32+32+31', denseTwin(mha), 'etp', 3],
  ];
  for (const [what, config, experts, size] of CASES)
    it(`${what}: every step's logits equal one rank's (1e-5 relative), the same bits on every rank`, { timeout: 30_000 }, async () => {
      const want = oneRank(config);
      const res = await ranks(size, { kind: 'steps', config, experts, seed: 3 });
      for (let r = 0; r < size; r++)
        want.forEach((w, k) => {
          closeRel(res[r]![k]!, w, `rank ${r} step ${k}`);
          assert.equal(bits(res[r]![k]!), bits(res[0]![k]!), `rank ${r} step ${k}: not rank 0's bits`);
        });
    });

  it("batch invariance over 3 ranks: a sequence's logits are bit-identical alone and beside another", { timeout: 30_000 }, async () => {
    const c = { kind: 'steps', config: mha, experts: 'edp', seed: 3 } as const;
    const [both, alone] = await Promise.all([ranks(3, c), ranks(3, { ...c, only: 'B' })]);
    const V = mha.vocabSize;
    // B's rows: its logit row is the second of steps 1 and 2 beside A, the only one alone
    for (const k of [1, 2]) assert.equal(bits(both[0]![k]!.subarray(V, 2 * V)), bits(alone[0]![k]!), `step ${k}`);
  });
});

describe("a rank's slice from a checkpoint", () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const write = (cfg: ModelConfig, dtype: 'F32' | 'BF16') => {
    const dir = mkdtempSync(join(tmpdir(), 'skymoe-tp-load-'));
    dirs.push(dir);
    const model = SkyworkMoE.create(cfg, { seed: 9, backend: new JsBackend() });
    saveModel(model, dir, { dtype });
    model.dispose();
    return dir;
  };
  for (const bc of allBackends().filter((b) => b.label === 'js' || b.label.startsWith('native')))
    it(`on ${bc.label}: every parameter of every rank is the slice of the whole (f32, bf16; dtype auto, f32, fp8; edp and etp)`, async (t) => {
      const be = await tryCreate(bc);
      if (!be) return t.skip(`${bc.label} unavailable`);
      try {
        for (const [cfg, file] of [[gqa, 'F32'], [mha, 'BF16']] as const) {
          const dir = write(cfg, file);
          for (const dtype of ['auto', 'f32', 'fp8'] as const) {
            const whole: SkyworkMoE = loadModelWithReport(dir, be, { dtype }).model;
            for (const [experts, size] of [['edp', 2], ['etp', 3]] as const)
              for (let index = 0; index < size; index++) {
                const shard = { size, index, experts };
                const plan = shardPlan(cfg, shard);
                const { model, report } = loadModelWithReport(dir, be, { dtype, tp: { shard, copy: (x) => x, reduce: (x) => x } });
                // on native the row slices of stored weights are read in place
                if (bc.label.startsWith('native') && dtype === 'auto') assert.ok(report.mappedBytes > 0, 'nothing mapped');
                for (const [name, p] of model.params) {
                  const w = whole.params.get(name)!, cut = plan.get(name);
                  const want: Float32Array = cut ? sliceValues(paramValues(w), w.shape, cut) : paramValues(w);
                  assert.equal(bits(paramValues(p)), bits(want), `${file} ${dtype} ${experts} rank ${index}/${size}: ${name}`);
                }
                model.dispose();
              }
            whole.dispose();
          }
        }
      } finally {
        await be.dispose();
      }
    });
});

describe('the serving engine over tensor-parallel ranks', () => {
  let dir: string;
  let tok: Tokenizer;
  const PROMPTS = ['Call me Ishmael.', 'Some years ago', 'never mind how long precisely, having little', 'I'];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skymoe-tp-engine-'));
    tok = trainBpe(['Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.'], { vocabSize: 300 });
    const model = SkyworkMoE.create({ ...gqa, vocabSize: tok.vocabSize }, { seed: 5, backend: new JsBackend() });
    saveModel(model, dir, { dtype: 'F32' });
    model.dispose();
    await saveTokenizer(dir, tok, { modelMaxLength: gqa.maxPositions });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Greedy ids of every prompt, all requests at once (one running batch). */
  async function greedy(engine: EngineHandle): Promise<number[][]> {
    return Promise.all(
      PROMPTS.map(async (p, i) => {
        const ids: number[] = [];
        for await (const ev of engine.generate({ id: `r${i}`, prompt: tok.encodePrompt(p), params: { ...DEFAULT_PARAMS, temperature: 0, maxTokens: 12 + i, ignoreEos: true } })) {
          if (ev.type === 'error') throw new Error(ev.message);
          if (ev.type === 'tokens') ids.push(...ev.ids);
        }
        return ids;
      }),
    );
  }

  it('tp=2 and tp=3 (edp) and tp=3 (etp) generate one rank\'s greedy tokens for a batch of requests, then close', { timeout: 60_000 }, async () => {
    const start = (tp?: number, tpExperts?: 'edp' | 'etp') => startEngine({ model: dir, backend: 'wasm', threads: 2, tp, tpExperts, log: () => {} });
    const one = await start();
    const want = await greedy(one);
    await one.close();
    assert.ok(want.every((ids, i) => ids.length === 12 + i));
    for (const [tp, experts] of [[2, 'edp'], [3, 'edp'], [3, 'etp']] as const) {
      const engine = await start(tp, experts);
      assert.deepEqual(await greedy(engine), want, `tp=${tp} ${experts}`);
      assert.equal(engine.stats().kvBlocksUsed, 0);
      await engine.close();
    }
  });

  it('a rank that fails stops the engine with the rank named (its experts are stored in a dtype it cannot read)', { timeout: 30_000 }, async () => {
    const bad = mkdtempSync(join(tmpdir(), 'skymoe-tp-bad-'));
    try {
      const model = SkyworkMoE.create({ ...gqa, vocabSize: tok.vocabSize }, { seed: 5, backend: new JsBackend() });
      saveModel(model, bad, { dtype: 'F32' });
      // expert 3 (rank 1's under edp over 2 ranks) as F64: rank 0 loads, rank 1 refuses
      const tensors = checkpointTensors(model, 'F32').map((t) => (t.name.includes('experts.3.') ? { ...t, dtype: 'F64' as const } : t));
      writeSafetensors(join(bad, 'model.safetensors'), tensors, { format: 'pt' });
      model.dispose();
      await saveTokenizer(bad, tok, { modelMaxLength: gqa.maxPositions });
      await assert.rejects(startEngine({ model: bad, backend: 'wasm', threads: 2, tp: 2, log: () => {} }), (e: Error) => {
        assert.ok(e instanceof EngineStartError, String(e));
        assert.match(e.message, /^rank 1: .*experts\.3\..* is F64/);
        return true;
      });
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
