/**
 * SequenceSampler against a naive reference written here from the definitions (full sort of the
 * vocabulary, float64): penalties, min_p, top_k, top_p and temperature on random logits of many
 * vocabulary sizes, with ties and -Infinity; greedy; draw frequencies against the reference
 * distribution; seeded streams; logprobs against a float64 log-softmax; parameter validation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SamplingError } from '../../src/infer/sample.js';
import { choiceStream, PARAM_LIMITS, SequenceSampler, validateParams } from '../../src/infer/sampler.js';
import { DEFAULT_PARAMS, type SamplingParams } from '../../src/infer/types.js';
import { Rng } from '../../src/tensor/random.js';

type Kind = 'normal' | 'ties' | 'masked' | 'peaked';

function randomLogits(rng: Rng, V: number, kind: Kind): Float32Array {
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    if (kind === 'ties') x[i] = rng.int(7) - 3;
    else if (kind === 'masked') x[i] = rng.float() < 0.4 ? -Infinity : 2 * rng.normal();
    else if (kind === 'peaked') x[i] = 2 * rng.normal() + (rng.float() < 0.002 ? 14 : 0);
    else x[i] = 3 * rng.normal();
  }
  if (kind === 'masked' && x.every((v) => v === -Infinity)) x[rng.int(V)] = 0;
  return x;
}

/** Rank order: descending logit, ties lower id first (a full sort). */
function ranked(x: Float32Array): number[] {
  return [...x.keys()].sort((a, b) => (x[b]! > x[a]! ? 1 : x[b]! < x[a]! ? -1 : a - b));
}

/** Steps 2-3 from their definitions, rounding to float32 where the logits are stored. */
function referencePenalize(raw: Float32Array, prompt: number[], output: number[], p: SamplingParams): Float32Array {
  const x = Float32Array.from(raw);
  const seen = new Set([...prompt, ...output]);
  if (p.repetitionPenalty !== 1) for (const id of seen) x[id] = x[id]! > 0 ? x[id]! / p.repetitionPenalty : x[id]! * p.repetitionPenalty;
  const counts = new Map<number, number>();
  for (const id of output) counts.set(id, (counts.get(id) ?? 0) + 1);
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) for (const [id, c] of counts) x[id] = x[id]! - (c * p.frequencyPenalty + (c > 0 ? p.presencePenalty : 0));
  return x;
}

/** Step 4-5 from their definitions: the probability of every id (0 for the filtered ones). */
function referenceDistribution(x: Float32Array, p: SamplingParams): Float64Array {
  const V = x.length;
  const order = ranked(x);
  const probs = new Float64Array(V);
  if (p.temperature === 0) {
    probs[order[0]!] = 1;
    return probs;
  }
  const max = x[order[0]!]!;
  const w = (i: number) => Math.exp((x[i]! - max) / p.temperature);
  let kept = order.filter((i) => w(i) >= p.minP);
  if (p.topK > 0) kept = kept.slice(0, p.topK);
  const mass = kept.reduce((s, i) => s + w(i), 0);
  if (p.topP < 1) {
    let acc = 0;
    const n = kept.findIndex((i) => (acc += w(i)) >= p.topP * mass);
    if (n >= 0) kept = kept.slice(0, n + 1);
  }
  const z = kept.reduce((s, i) => s + w(i), 0);
  for (const i of kept) probs[i] = w(i) / z;
  return probs;
}

function assertDistribution(s: SequenceSampler, x: Float32Array, want: Float64Array, what: string): void {
  const got = s.distribution(x);
  const wantIds = [...want.keys()].filter((i) => want[i]! > 0);
  assert.deepEqual(got.ids, wantIds, `${what}: kept ids`);
  got.probs.forEach((q, j) => assert.ok(Math.abs(q - want[got.ids[j]!]!) <= 1e-12 * Math.max(1, want[got.ids[j]!]!), `${what}: p(${got.ids[j]}) = ${q}, reference ${want[got.ids[j]!]}`));
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;

test('min_p, top_k, top_p and temperature keep exactly the reference distribution (random logits, ties, -Infinity)', () => {
  const rng = new Rng(2024);
  for (let c = 0; c < 600; c++) {
    const V = pick(rng, [1, 2, 3, 7, 64, 1000, 5000]);
    const kind = pick(rng, ['normal', 'ties', 'masked', 'peaked'] as const);
    const p: SamplingParams = {
      ...DEFAULT_PARAMS,
      temperature: pick(rng, [0, 0.3, 1, 1, 1.7]),
      topK: pick(rng, [0, 0, 1, 3, 50, 5000]),
      topP: pick(rng, [1, 1, 0.5, 0.9, 0.999]),
      minP: pick(rng, [0, 0, 0.05, 0.5]),
      seed: c,
    };
    const x = randomLogits(rng, V, kind);
    assertDistribution(new SequenceSampler(p, [], V), x, referenceDistribution(x, p), `case ${c} V=${V} ${kind} ${JSON.stringify(p)}`);
  }
});

test('at the full serving vocabulary (151936) the filters still match the reference', () => {
  const rng = new Rng(7);
  const V = 151936;
  for (const p of [
    { temperature: 1, topP: 0.9 },
    { temperature: 0.7, topP: 0.95, minP: 0.01 },
    { temperature: 1.3, topK: 50, topP: 0.8 },
    { temperature: 2, topP: 0.5 },
  ]) {
    const params = { ...DEFAULT_PARAMS, ...p, seed: 1 };
    const x = randomLogits(rng, V, 'peaked');
    assertDistribution(new SequenceSampler(params, [], V), x, referenceDistribution(x, params), JSON.stringify(p));
  }
});

test('top_p within rounding of 1 keeps all but a rounding-sized mass of the reference', () => {
  const rng = new Rng(31);
  for (const V of [10, 1000, 50000]) {
    for (const kind of ['normal', 'peaked', 'ties'] as const) {
      const x = randomLogits(rng, V, kind);
      const p = { ...DEFAULT_PARAMS, topP: 1 - 2 ** -53, seed: 1 };
      const want = referenceDistribution(x, p);
      const got = new SequenceSampler(p, [], V).distribution(x);
      const have = new Float64Array(V);
      got.ids.forEach((id, j) => (have[id] = got.probs[j]!));
      let differ = 0;
      for (let i = 0; i < V; i++) differ += Math.abs(have[i]! - want[i]!);
      assert.ok(differ <= 1e-12, `V=${V} ${kind}: total variation ${differ}`);
    }
  }
});

test('penalties change exactly the prompt and output ids, by the CTRL and OpenAI formulas', () => {
  const rng = new Rng(99);
  for (let c = 0; c < 200; c++) {
    const V = pick(rng, [5, 50, 3000]);
    const p: SamplingParams = {
      ...DEFAULT_PARAMS,
      repetitionPenalty: pick(rng, [1, 1.3, 0.8, 2]),
      frequencyPenalty: pick(rng, [0, 0.5, -1, 2]),
      presencePenalty: pick(rng, [0, 1.5, -0.5]),
      temperature: pick(rng, [0, 0.8, 1]),
      topK: pick(rng, [0, 10]),
      topP: pick(rng, [1, 0.9]),
      seed: c,
    };
    const prompt = Array.from({ length: rng.int(20) }, () => rng.int(V));
    const output = Array.from({ length: rng.int(30) }, () => rng.int(Math.min(V, 8)));
    const raw = randomLogits(rng, V, pick(rng, ['normal', 'ties', 'masked'] as const));
    const s = new SequenceSampler(p, prompt, V);
    for (const id of output) s.record(id);
    const got = s.penalizedLogits(raw);
    const want = referencePenalize(raw, prompt, output, p);
    const what = `case ${c} ${JSON.stringify(p)}`;
    assert.deepEqual(got, want, what);
    const touched = new Set([...(p.repetitionPenalty !== 1 ? prompt : []), ...(p.repetitionPenalty !== 1 || p.frequencyPenalty || p.presencePenalty ? output : [])]);
    for (let i = 0; i < V; i++) if (!touched.has(i)) assert.ok(Object.is(got[i], raw[i]), `${what}: id ${i} is in neither prompt nor output but changed`);
    assertDistribution(s, raw, referenceDistribution(want, p), what);
    assert.deepEqual(raw, Float32Array.from(raw), 'the logits are not modified');
  }
});

test('presence and frequency penalties count the output only; repetition counts the prompt too', () => {
  const raw = Float32Array.from([2, 2, 2, -2]);
  const freq = new SequenceSampler({ ...DEFAULT_PARAMS, frequencyPenalty: 0.5, presencePenalty: 0.25 }, [0, 1, 3], 4);
  freq.record(1);
  freq.record(1);
  freq.record(3);
  assert.deepEqual([...freq.penalizedLogits(raw)], [2, 2 - 2 * 0.5 - 0.25, 2, -2 - 0.5 - 0.25]);
  const rep = new SequenceSampler({ ...DEFAULT_PARAMS, repetitionPenalty: 2 }, [0, 3], 4);
  rep.record(1);
  assert.deepEqual([...rep.penalizedLogits(raw)], [1, 1, 2, -4]);
});

test('greedy is the argmax of the penalized logits, ties to the lowest id', () => {
  const rng = new Rng(5);
  for (let c = 0; c < 300; c++) {
    const V = pick(rng, [1, 4, 100, 2000]);
    const x = randomLogits(rng, V, pick(rng, ['normal', 'ties', 'masked'] as const));
    const s = new SequenceSampler({ ...DEFAULT_PARAMS, temperature: 0, seed: c }, [], V);
    assert.equal(s.next(x).id, ranked(x)[0]);
  }
  const rep = new SequenceSampler({ ...DEFAULT_PARAMS, temperature: 0, repetitionPenalty: 2 }, [1], 3);
  assert.equal(rep.next(Float32Array.from([1, 1.5, 0.9])).id, 0, 'the penalized logit of id 1 is 0.75');
});

test('every logit -Infinity is an error; a single finite one is always chosen', () => {
  for (const p of [{ temperature: 0 }, { temperature: 1 }, { topK: 2 }, { topP: 0.5 }]) {
    const s = new SequenceSampler({ ...DEFAULT_PARAMS, ...p, seed: 3 }, [], 4);
    assert.throws(() => s.next(new Float32Array(4).fill(-Infinity)), SamplingError);
    const one = Float32Array.from([-Infinity, -Infinity, 3, -Infinity]);
    for (let i = 0; i < 20; i++) assert.equal(s.next(one).id, 2);
  }
});

/** Pearson's chi-square of n draws against p; cells of probability 0 must never be drawn. */
function chiSquare(counts: number[], p: Float64Array, n: number): { chi2: number; df: number } {
  let chi2 = 0;
  let df = -1;
  p.forEach((q, i) => {
    if (q === 0) assert.equal(counts[i] ?? 0, 0, `id ${i} has probability 0 but was drawn`);
    else {
      chi2 += ((counts[i] ?? 0) - n * q) ** 2 / (n * q);
      df++;
    }
  });
  return { chi2, df };
}

test('draw frequencies match the reference distribution (chi-square, fixed seed)', () => {
  const rng = new Rng(11);
  const x = randomLogits(rng, 40, 'normal');
  const n = 30_000;
  for (const p of [
    { temperature: 1 },
    { temperature: 0.5 },
    { temperature: 1.8, minP: 0.1 },
    { topK: 5 },
    { topP: 0.6 },
    { temperature: 0.8, topK: 12, topP: 0.9 },
    { temperature: 1.2, topP: 0.95, minP: 0.02 },
  ]) {
    const params = { ...DEFAULT_PARAMS, ...p, seed: 1234 };
    const s = new SequenceSampler(params, [], x.length);
    const counts: number[] = [];
    for (let i = 0; i < n; i++) {
      const id = s.next(x).id;
      counts[id] = (counts[id] ?? 0) + 1;
    }
    const { chi2, df } = chiSquare(counts, referenceDistribution(x, params), n);
    // Mean df, sd sqrt(2 df): 5 sd is beyond any fixed-seed fluke, a wrong rule is far beyond it.
    assert.ok(chi2 <= df + 5 * Math.sqrt(2 * df), `${JSON.stringify(p)}: chi2 ${chi2.toFixed(1)} with ${df} degrees of freedom`);
  }
});

test('a seed reproduces its choices; the choices of one request differ; a null seed is fresh per sampler', () => {
  const rng = new Rng(3);
  const x = randomLogits(rng, 500, 'normal');
  const draws = (seed: number | null, index: number) => {
    const s = new SequenceSampler({ ...DEFAULT_PARAMS, seed, topP: 0.95 }, [], x.length, index);
    return Array.from({ length: 100 }, () => s.next(x).id);
  };
  assert.deepEqual(draws(42, 0), draws(42, 0));
  assert.deepEqual(draws(42, 3), draws(42, 3));
  assert.notDeepEqual(draws(42, 0), draws(42, 1));
  assert.notDeepEqual(draws(42, 0), draws(43, 0));
  assert.notDeepEqual(draws(null, 0), draws(null, 0));
  const sizes = [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, -Number.MAX_SAFE_INTEGER, -1, 0, 2 ** 32, 2 ** 32 + 1];
  const firsts = sizes.map((seed) => choiceStream(seed, 0).nextU32());
  assert.equal(new Set(firsts).size, sizes.length, 'seeds differing beyond 32 bits give different streams');
  const fresh = new SequenceSampler({ ...DEFAULT_PARAMS }, [], 10);
  assert.ok(Number.isSafeInteger(fresh.seed) && fresh.seed >= 0);
});

/** log-softmax in float64 by its definition: x_i - log sum_j exp(x_j), shifted by the max. */
function referenceLogSoftmax(x: Float32Array): Float64Array {
  const max = Math.max(...x);
  const lse = max + Math.log([...x].reduce((s, v) => s + Math.exp(v - max), 0));
  return Float64Array.from(x, (v) => v - lse);
}

test('logprobs are the raw log-softmax (before penalties and temperature), top alternatives most likely first', () => {
  const rng = new Rng(8);
  for (let c = 0; c < 120; c++) {
    const V = pick(rng, [3, 30, 4000]);
    const kind = pick(rng, ['normal', 'ties', 'masked'] as const);
    const p: SamplingParams = {
      ...DEFAULT_PARAMS,
      logprobs: true,
      topLogprobs: pick(rng, [0, 1, 5, 20]),
      temperature: pick(rng, [0, 1, 1, 0.6]),
      topK: pick(rng, [0, 5]),
      topP: pick(rng, [1, 0.9]),
      repetitionPenalty: pick(rng, [1, 1.5]),
      presencePenalty: pick(rng, [0, 1]),
      seed: c,
    };
    const s = new SequenceSampler(p, [0, 1], V);
    for (let step = 0; step < 3; step++) {
      const x = randomLogits(rng, V, kind);
      const lp = referenceLogSoftmax(x);
      const { id, logprob } = s.next(x);
      const what = `case ${c} step ${step} ${JSON.stringify(p)}`;
      assert.ok(logprob, what);
      assert.equal(logprob.id, id);
      assert.ok(Math.abs(logprob.logprob - lp[id]!) <= 1e-12 * Math.max(1, Math.abs(lp[id]!)), `${what}: ${logprob.logprob} vs ${lp[id]}`);
      const top = ranked(x).slice(0, Math.min(p.topLogprobs, V));
      assert.deepEqual(logprob.top.map((t) => t.id), top, what);
      logprob.top.forEach((t) => assert.ok(t.logprob === lp[t.id] || Math.abs(t.logprob - lp[t.id]!) <= 1e-12 * Math.max(1, Math.abs(lp[t.id]!)), what));
    }
  }
  const plain = new SequenceSampler({ ...DEFAULT_PARAMS, seed: 1 }, [], 3);
  assert.equal(plain.next(Float32Array.from([1, 2, 3])).logprob, undefined);
});

test('validateParams accepts the defaults and names the field of each out-of-range value', () => {
  assert.equal(validateParams(DEFAULT_PARAMS), null);
  assert.equal(validateParams({ ...DEFAULT_PARAMS, temperature: 0, topP: 1, topK: 0, seed: -5, stop: ['\n\n', '🐳'], logprobs: true, topLogprobs: 20, n: PARAM_LIMITS.maxN, repetitionPenalty: 3 }), null);
  for (const [bad, field] of [
    [{ temperature: -0.1 }, 'temperature'],
    [{ temperature: NaN }, 'temperature'],
    [{ temperature: 2.5 }, 'temperature'],
    [{ topP: 0 }, 'top_p'],
    [{ topP: 1.01 }, 'top_p'],
    [{ topK: -1 }, 'top_k'],
    [{ topK: 2.5 }, 'top_k'],
    [{ minP: 1.5 }, 'min_p'],
    [{ minP: -0.1 }, 'min_p'],
    [{ presencePenalty: 2.1 }, 'presence_penalty'],
    [{ frequencyPenalty: -3 }, 'frequency_penalty'],
    [{ repetitionPenalty: 0 }, 'repetition_penalty'],
    [{ repetitionPenalty: Infinity }, 'repetition_penalty'],
    [{ seed: 1.5 }, 'seed'],
    [{ seed: 2 ** 53 }, 'seed'],
    [{ maxTokens: 0 }, 'max_tokens'],
    [{ maxTokens: 3.5 }, 'max_tokens'],
    [{ stop: Array.from({ length: PARAM_LIMITS.maxStop + 1 }, (_, i) => `s${i}`) }, 'stop'],
    [{ stop: ['ok', ''] }, 'stop[1]'],
    [{ stop: ['\ud83d'] }, 'stop[0]'],
    [{ stopTokenIds: [3, -1] }, 'stop_token_ids[1]'],
    [{ topLogprobs: 21, logprobs: true }, 'top_logprobs'],
    [{ topLogprobs: 2 }, 'top_logprobs'],
    [{ n: 0 }, 'n'],
    [{ n: PARAM_LIMITS.maxN + 1 }, 'n'],
  ] as [Partial<SamplingParams>, string][]) {
    const msg = validateParams({ ...DEFAULT_PARAMS, ...bad });
    assert.ok(msg !== null && msg.startsWith(`${field} `), `${JSON.stringify(bad)}: ${msg}`);
  }
});
