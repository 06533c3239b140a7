/**
 * The continuous-batching engine: the paged forward against the plain forward; batch invariance
 * (a request's tokens and logprobs bit-identical alone, among 15 others, chunked, preempted and
 * recomputed); continuous batching (a request added while a long one runs starts and ends before
 * it); KV blocks freed on finish and abort; n > 1; limits.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backend/backend.js';
import { Engine, EngineError, type EngineOptions } from '../../src/infer/engine.js';
import { DEFAULT_PARAMS, type EngineEvent, type GenerationRequest, type SamplingParams } from '../../src/infer/types.js';
import { trainBpe, type Tokenizer } from '../../src/io/tokenizer/index.js';
import { PagedKVCache } from '../../src/model/paged-kv.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import * as T from '../../src/tensor/index.js';
import { allBackends, assertClose, tryCreate } from '../helpers.js';

const CORPUS = 'Call me Ishmael. Some years ago - never mind how long precisely - having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.';

interface Choice {
  ids: number[];
  logprobs: number[];
  top: string[];
  text: string;
  reason?: string;
}

/** Run the engine until every request is done; choices by `${requestId}/${index}`. */
function runAll(engine: Engine, reqs: GenerationRequest[], onStep?: (step: number, events: EngineEvent[]) => void): Map<string, Choice> {
  const out = new Map<string, Choice>();
  for (const r of reqs) engine.add(r);
  let step = 0;
  while (engine.hasWork()) {
    const events = engine.step();
    onStep?.(step++, events);
    collect(out, events);
  }
  return out;
}

function collect(out: Map<string, Choice>, events: EngineEvent[]): void {
  for (const e of events) {
    if (e.type === 'error') throw new Error(e.message);
    const key = `${e.requestId}/${e.index}`;
    const c = out.get(key) ?? { ids: [], logprobs: [], top: [], text: '' };
    out.set(key, c);
    c.text += e.text;
    if (e.type === 'tokens') {
      c.ids.push(...e.ids);
      for (const lp of e.logprobs ?? []) {
        c.logprobs.push(lp.logprob);
        c.top.push(lp.top.map((t) => `${t.id}:${t.logprob}`).join(','));
      }
    } else c.reason = e.reason;
  }
}

const params = (o: Partial<SamplingParams>): SamplingParams => ({ ...DEFAULT_PARAMS, ...o });

for (const bc of allBackends()) {
  describe(`engine on ${bc.label}`, () => {
    let be: Backend | undefined;
    let model: SkyworkMoE;
    let tok: Tokenizer;
    before(async () => {
      be = await tryCreate(bc);
      if (!be) return;
      T.setBackend(be);
      model = SkyworkMoE.create(preset('tiny'), { seed: 7, backend: be });
      tok = trainBpe([CORPUS], { vocabSize: 400 });
    });
    after(async () => {
      model?.dispose();
      await be?.dispose();
    });

    it('the paged forward gives the plain forward\'s logits, chunk by chunk, whatever blocks hold the sequence', (t) => {
      if (!be) return t.skip(`${bc.label} unavailable`);
      const cfg = model.config;
      const ids = Int32Array.from({ length: 23 }, (_, i) => (i * 37 + 5) % cfg.vocabSize);
      const full = T.noGrad(() => T.tidy(() => model.forward(T.tensor(ids, [1, ids.length], 'i32', be)).logits.toFloat32()));
      const kv = new PagedKVCache(cfg, 12, 4, be);
      try {
        const table = [9, 2, 11, 0, 5, 7]; // 6 blocks of 4 positions, out of order
        let start = 0;
        for (const count of [7, 1, 9, 6]) {
          const positions = Int32Array.from({ length: count }, (_, j) => start + j);
          const logits = model.forwardPaged(
            {
              ids: ids.subarray(start, start + count),
              positions,
              slots: positions.map((p) => table[Math.floor(p / 4)]! * 4 + (p % 4)),
              rowSeq: new Int32Array(count),
              blockTables: Int32Array.from(table),
              maxBlocks: table.length,
              logitRows: Int32Array.from(positions.keys()),
            },
            kv,
          );
          const V = cfg.vocabSize;
          assertClose(logits, full.subarray(start * V, (start + count) * V), `positions ${start}..${start + count - 1}`, 1e-4, 1e-5);
          start += count;
        }
      } finally {
        kv.dispose();
      }
    });

    it('batch invariance: 16 requests together (chunked prefill, preemption) give each request alone\'s tokens and logprobs bit for bit', (t) => {
      if (!be) return t.skip(`${bc.label} unavailable`);
      const reqs: GenerationRequest[] = Array.from({ length: 16 }, (_, i) => ({
        id: `r${i}`,
        prompt: Array.from({ length: 3 + ((i * 7) % 29) }, (_, j) => (i * 13 + j * 31 + 1) % 400),
        params: params({ temperature: i % 4 === 0 ? 0 : 0.9, topP: i % 3 === 0 ? 0.8 : 1, seed: 100 + i, maxTokens: 6 + (i % 7), logprobs: true, topLogprobs: 3, ignoreEos: true }),
      }));
      const alone = new Map<string, Choice>();
      for (const r of reqs) {
        const e = new Engine(model, tok, { kvCacheBytes: 1 << 22 });
        try {
          for (const [k, v] of runAll(e, [r])) alone.set(k, v);
          assert.equal(e.kv.usedBlocks, 0, 'every block back');
        } finally {
          e.dispose();
        }
      }
      // Together, in another order, with a small token budget (prompts split into chunks) and a
      // cache too small for all of them (the youngest are preempted and recomputed).
      const cfg = model.config;
      const perBlock = 2 * cfg.numLayers * 4 * cfg.numKvHeads * cfg.headDim * 4;
      const opts: EngineOptions = { blockSize: 4, kvCacheBytes: 60 * perBlock, maxBatchedTokens: 24 };
      const e = new Engine(model, tok, opts);
      try {
        const together = runAll(e, [...reqs].reverse());
        assert.ok(e.stats().preemptions > 0, 'the small cache forced preemptions');
        assert.equal(e.kv.usedBlocks, 0);
        for (const [k, a] of alone) {
          const b = together.get(k)!;
          assert.deepEqual(b.ids, a.ids, `${k} ids`);
          assert.equal(a.logprobs.length, a.ids.length);
          assert.ok(b.logprobs.every((v, i) => Object.is(v, a.logprobs[i])), `${k} logprobs bit for bit`);
          assert.deepEqual(b.top, a.top, `${k} top logprobs`);
          assert.equal(b.text, a.text, `${k} text`);
          assert.equal(b.reason, 'length');
        }
      } finally {
        e.dispose();
      }
    });

    it('continuous batching: a short request added while a long one runs gets its first token at the next step and ends first', (t) => {
      if (!be) return t.skip(`${bc.label} unavailable`);
      const e = new Engine(model, tok, { kvCacheBytes: 1 << 22 });
      try {
        const out = new Map<string, Choice>();
        e.add({ id: 'long', prompt: [1, 2, 3, 4, 5], params: params({ temperature: 0, maxTokens: 40, ignoreEos: true }) });
        for (let i = 0; i < 5; i++) collect(out, e.step());
        e.add({ id: 'short', prompt: [7, 8, 9], params: params({ temperature: 0, maxTokens: 3, ignoreEos: true }) });
        collect(out, e.step());
        assert.equal(out.get('short/0')?.ids.length, 1, 'the short request sampled in the step after it arrived');
        assert.equal(e.stats().running, 2);
        while (!out.get('short/0')?.reason) collect(out, e.step());
        assert.equal(out.get('long/0')?.reason, undefined, 'the long one is still running');
        while (e.hasWork()) collect(out, e.step());
        assert.equal(out.get('long/0')!.ids.length, 40);
      } finally {
        e.dispose();
      }
    });

    it('blocks are freed when a request finishes or is aborted', (t) => {
      if (!be) return t.skip(`${bc.label} unavailable`);
      const e = new Engine(model, tok, { kvCacheBytes: 1 << 22, blockSize: 4 });
      try {
        for (const id of ['a', 'b', 'c']) e.add({ id, prompt: [1, 2, 3, 4, 5, 6, 7, 8, 9], params: params({ maxTokens: 50, ignoreEos: true, seed: 1 }) });
        for (let i = 0; i < 4; i++) e.step();
        const used = e.kv.usedBlocks;
        // 9 prompt tokens and 4 sampled, of which 3 computed: 12 positions cached each, in blocks of 4.
        assert.equal(used, 3 * 3);
        const ev = e.abort('b');
        assert.deepEqual(ev.map((x) => x.type === 'finish' && x.reason), ['abort']);
        assert.equal(e.kv.usedBlocks, used - 3);
        assert.deepEqual(e.abort('b'), [], 'a second abort does nothing');
        e.abort('a');
        e.abort('c');
        assert.equal(e.kv.usedBlocks, 0);
        assert.equal(e.hasWork(), false);
      } finally {
        e.dispose();
      }
    });

    it('n choices: each reproducible from the seed, different from each other; stop ids end a choice without being output', (t) => {
      if (!be) return t.skip(`${bc.label} unavailable`);
      const run = (p: Partial<SamplingParams>) => {
        const e = new Engine(model, tok, { kvCacheBytes: 1 << 22 });
        try {
          return runAll(e, [{ id: 'x', prompt: [5, 6, 7], params: params({ ignoreEos: true, maxTokens: 10, ...p }) }]);
        } finally {
          e.dispose();
        }
      };
      const a = run({ n: 3, seed: 42 }), b = run({ n: 3, seed: 42 });
      assert.equal(a.size, 3);
      for (const [k, v] of a) assert.deepEqual(b.get(k)!.ids, v.ids, `${k} reproducible`);
      assert.notDeepEqual(a.get('x/0')!.ids, a.get('x/1')!.ids, 'choices differ');
      const greedy = run({ temperature: 0 }).get('x/0')!;
      const stopAt = greedy.ids[4]!;
      const stopped = run({ temperature: 0, stopTokenIds: [stopAt] }).get('x/0')!;
      assert.deepEqual(stopped.ids, greedy.ids.slice(0, greedy.ids.indexOf(stopAt)));
      assert.equal(stopped.reason, 'stop');
    });

    it('refuses what cannot run: empty prompts, unknown ids, prompts at the context, more than the cache holds', (t) => {
      if (!be) return t.skip(`${bc.label} unavailable`);
      const e = new Engine(model, tok, { kvCacheBytes: 1 << 16, blockSize: 4 });
      try {
        const p = params({ maxTokens: 4 });
        assert.throws(() => e.add({ id: 'a', prompt: [], params: p }), /no tokens/);
        assert.throws(() => e.add({ id: 'a', prompt: [1, 512], params: p }), /token id 512 is outside the vocabulary of 512/);
        assert.throws(() => e.add({ id: 'a', prompt: Array(128).fill(1), params: p }), /128 tokens; the model's context is 128/);
        assert.throws(() => e.add({ id: 'a', prompt: Array(100).fill(1), params: p }), EngineError);
        assert.equal(e.hasWork(), false);
      } finally {
        e.dispose();
      }
    });
  });
}
