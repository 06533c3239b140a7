/**
 * Sampling: over many seeded draws, the frequency of every token against the exact probabilities
 * of temperature, top-k and top-p (nucleus) sampling, computed here in float64 from their
 * definitions; greedy ties; parameter validation; generation stopping at EOS and at stop ids.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsBackend } from '../../src/backend/js/index.js';
import { generateTokens } from '../../src/infer/generate.js';
import { sampleToken, SamplingError, validateSampling, type SamplingOptions } from '../../src/infer/sample.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import * as T from '../../src/tensor/index.js';

const logits = Float32Array.from([1.2, -0.3, 2.0, 0.7, 2.0001, -1.5, 0.1, 1.9]);

/** The exact distribution: softmax(logits / t) over the top-k, then the smallest prefix (by probability) reaching top-p. */
function exact(o: SamplingOptions): Float64Array {
  const t = o.temperature ?? 1;
  const order = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b);
  const kept = order.slice(0, o.topK ? o.topK : logits.length);
  const w = kept.map((i) => Math.exp(logits[i]! / t));
  const z = w.reduce((a, b) => a + b, 0);
  let keep = kept.length;
  if (o.topP !== undefined && o.topP < 1) {
    let acc = 0;
    for (let j = 0; j < kept.length; j++) {
      acc += w[j]! / z;
      if (acc >= o.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const z2 = w.slice(0, keep).reduce((a, b) => a + b, 0);
  const p = new Float64Array(logits.length);
  for (let j = 0; j < keep; j++) p[kept[j]!] = w[j]! / z2;
  return p;
}

function frequencies(o: SamplingOptions, n: number, seed: number): Float64Array {
  const rng = new T.Rng(seed);
  const counts = new Float64Array(logits.length);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, o, rng)]! += 1;
  return counts.map((c) => c / n);
}

for (const o of [
  { temperature: 1 },
  { temperature: 0.5 },
  { temperature: 2.5 },
  { temperature: 1, topK: 3 },
  { temperature: 0.8, topK: 1 },
  { temperature: 1, topP: 0.5 },
  { temperature: 1.3, topP: 0.9 },
  { temperature: 0.7, topK: 5, topP: 0.8 },
] as SamplingOptions[]) {
  test(`sampling ${JSON.stringify(o)}: token frequencies match the exact distribution`, () => {
    const n = 40_000;
    const p = exact(o);
    const f = frequencies(o, n, 17);
    for (let i = 0; i < p.length; i++) {
      if (p[i] === 0) assert.equal(f[i], 0, `token ${i} is outside the kept set but was drawn`);
      // 5 standard errors of a binomial frequency: a wrong temperature or a kept set one token off moves it by far more
      else assert.ok(Math.abs(f[i]! - p[i]!) <= 5 * Math.sqrt((p[i]! * (1 - p[i]!)) / n) + 1e-12, `token ${i}: frequency ${f[i]!.toFixed(4)}, exact ${p[i]!.toFixed(4)}`);
    }
  });
}

test('greedy takes the argmax; ties go to the lower id; top-k 1 is greedy too', () => {
  const rng = new T.Rng(1);
  assert.equal(sampleToken(logits, { temperature: 0 }, rng), 4);
  assert.equal(sampleToken(Float32Array.from([0.5, 3, 3, -1]), { temperature: 0 }, rng), 1);
  for (let i = 0; i < 50; i++) assert.equal(sampleToken(logits, { temperature: 1.7, topK: 1 }, rng), 4);
});

test('sampling parameters are validated with errors naming the parameter', () => {
  for (const [o, re] of [
    [{ temperature: -0.1 }, /temperature must be >= 0/],
    [{ temperature: NaN }, /temperature/],
    [{ temperature: Infinity }, /temperature/],
    [{ topK: 2.5 }, /top-k must be a non-negative integer/],
    [{ topK: -1 }, /top-k/],
    [{ topP: 0 }, /top-p must be in \(0, 1\]/],
    [{ topP: 1.01 }, /top-p/],
  ] as const) assert.throws(() => validateSampling(o), (e: Error) => e instanceof SamplingError && re.test(e.message), JSON.stringify(o));
  validateSampling({ temperature: 0, topK: 0, topP: 1 });
});

test('generation stops at EOS (not yielded) and at given stop ids; otherwise at max tokens', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const cfg = { ...preset('tiny'), initializerRange: 0.2 };
  const free = SkyworkMoE.create(cfg, { seed: 5, backend: be });
  const prompt = [1, 40, 41];
  const run = (m: SkyworkMoE, o: Parameters<typeof generateTokens>[2]) => {
    const it = generateTokens(m, prompt, o);
    const ids: number[] = [];
    for (let r = it.next(); ; r = it.next()) {
      if (r.done) return { ids, reason: r.value.reason };
      ids.push(r.value.id);
    }
  };
  const greedy = run(free, { maxTokens: 10, temperature: 0, stopIds: [] });
  assert.equal(greedy.ids.length, 10);
  assert.equal(greedy.reason, 'length');
  // The first token that differs from all before it becomes the EOS of an otherwise identical model.
  const j = greedy.ids.findIndex((id, i) => i >= 2 && !greedy.ids.slice(0, i).includes(id));
  assert.ok(j >= 2, `greedy output ${greedy.ids} has a fresh token after position 2`);
  const eos = greedy.ids[j]!;
  const withEos = SkyworkMoE.fromParams({ ...cfg, eosTokenId: eos }, free.params, be);
  const stopped = run(withEos, { maxTokens: 10, temperature: 0 });
  assert.deepEqual(stopped, { ids: greedy.ids.slice(0, j), reason: 'stop' });
  assert.deepEqual(run(free, { maxTokens: 10, temperature: 0, stopIds: [eos] }), { ids: greedy.ids.slice(0, j), reason: 'stop' });
  free.dispose();
});

test('ids past the tokenizer\'s vocabulary (a padded model vocabulary) are never generated', () => {
  const be = new JsBackend();
  T.setBackend(be);
  const m = SkyworkMoE.create({ ...preset('tiny'), initializerRange: 0.2 }, { seed: 6, backend: be });
  const ids = (o: Parameters<typeof generateTokens>[2]) => {
    const out: number[] = [];
    for (const t of generateTokens(m, [1, 40, 41], o)) out.push(t.id);
    return out;
  };
  const base = { maxTokens: 24, stopIds: [] as number[] };
  // without the bound, a random model picks ids across all 512
  const free = [...ids({ ...base, temperature: 0 }), ...ids({ ...base, temperature: 1, seed: 3 })];
  assert.ok(free.some((id) => id >= 100), `unbounded ids ${free}`);
  for (const o of [{ temperature: 0 }, { temperature: 1, seed: 3 }, { temperature: 1.5, topK: 50, seed: 9 }]) {
    const got = ids({ ...base, ...o, knownVocab: 100 });
    assert.equal(got.length, 24);
    assert.ok(got.every((id) => id < 100), `${JSON.stringify(o)}: ${got}`);
  }
  m.dispose();
});
