/**
 * End to end on the real engine (infer/engine-worker.ts startEngine, in its worker thread) and a
 * tiny model written to a temp dir as `skymoe init` writes one, with a chat_template in its
 * tokenizer_config.json, through the official openai client: models, completions and chat,
 * streamed and not; stop strings, max_tokens, n, logprobs, seed reproducibility, usage (in streams
 * with include_usage); every error status; an aborted stream freeing its KV blocks; /metrics;
 * /health 503 before ready then 200; drain; and `skymoe serve` as a user runs it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { JsBackend } from '../../src/backend/js/index.js';
import { startEngine, type StartEngineOptions } from '../../src/infer/engine-worker.js';
import type { EngineHandle } from '../../src/infer/types.js';
import { saveModel } from '../../src/io/hf.js';
import { loadTokenizer, saveTokenizer, tokenizerConfigJson, tokenizerFromJson, tokenizerToJson, trainBpe, type Tokenizer } from '../../src/io/tokenizer/index.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';
import { createServer, type SkymoeServer } from '../../src/serve/server.js';
import { apiError, CORPUS } from './fixtures.js';

function start(o: StartEngineOptions): Promise<EngineHandle> {
  return startEngine({ backend: 'wasm', threads: 1, log: () => {}, ...o });
}

/** A template unlike the default one, so the test sees that the file's template is the one used. */
const TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
const KEY = 'sk-e2e';

let dir: string;
let tok: Tokenizer;

/** The tiny preset with random weights and a BPE tokenizer carrying TEMPLATE, saved as HF files. */
async function writeModel(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'skymoe-serve-'));
  const cfg = preset('tiny');
  const model = SkyworkMoE.create(cfg, { seed: 5, backend: new JsBackend() });
  saveModel(model, dir, { dtype: 'F32' });
  model.dispose();
  const base = trainBpe(CORPUS, { vocabSize: cfg.vocabSize });
  const withTemplate = tokenizerFromJson(tokenizerToJson(base), 'tokenizer.json', { ...(tokenizerConfigJson(base) as object), chat_template: TEMPLATE });
  await saveTokenizer(dir, withTemplate, { modelMaxLength: cfg.maxPositions });
  tok = await loadTokenizer(dir);
  assert.equal(tok.chatTemplate, TEMPLATE);
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const PROMPT = 'Call me Ishmael. Some years ago';

describe('the server on the real engine', () => {
  let engine: EngineHandle;
  let server: SkymoeServer;
  let url: string;
  let client: OpenAI;
  let healthSeen!: () => void;

  before(async () => {
    await writeModel();
    const loading = start({ model: dir, modelName: 'tiny', kvCacheBytes: 4 << 20, maxNumSeqs: 8 });
    // The server sees the engine only once the test has seen /health answer 503.
    const seen = new Promise<void>((r) => (healthSeen = r));
    server = createServer({ engine: loading.then(async (e) => (await seen, e)), tokenizer: tok, modelName: 'tiny' });
    url = await server.listen('127.0.0.1', 0);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    engine = await loading;
  });
  after(async () => {
    await server?.close();
    await engine?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /health 503 while loading, then 200', async () => {
    const r = await fetch(`${url}/health`);
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
    healthSeen();
    let ok = await fetch(`${url}/health`);
    for (let i = 0; i < 100 && ok.status !== 200; i++) ok = await fetch(`${url}/health`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { status: 'ok' });
  });

  it('lists the model with its context', async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => [m.id, m.object, m.owned_by, (m as unknown as { max_model_len: number }).max_model_len]), [['tiny', 'model', 'skymoe', 128]]);
  });

  it('completes: max_tokens with the usage to match, n choices', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 6, temperature: 0, n: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(r.choices.length, 2);
    assert.deepEqual(r.choices.map((c) => [c.index, c.finish_reason]), [[0, 'length'], [1, 'length']]);
    // Greedy: both choices are the same text.
    assert.equal(r.choices[0]!.text, r.choices[1]!.text);
    assert.deepEqual(r.usage, { prompt_tokens: tok.encodePrompt(PROMPT).length, completion_tokens: 12, total_tokens: tok.encodePrompt(PROMPT).length + 12 });
  });

  it('is reproducible with a seed, streamed or not', async () => {
    const body = { model: 'tiny', prompt: PROMPT, max_tokens: 12, temperature: 1, seed: 1234, ignore_eos: true };
    const a = await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    const b = await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(a.choices[0]!.text, b.choices[0]!.text);
    const stream = await client.completions.create({ ...body, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    assert.equal(text, a.choices[0]!.text);
    const others = await Promise.all([1, 2, 3].map((seed) => client.completions.create({ ...body, seed } as OpenAI.CompletionCreateParamsNonStreaming)));
    assert.ok(others.some((o) => o.choices[0]!.text !== a.choices[0]!.text), 'four seeds gave the same 12 tokens');
  });

  it('batch invariance: 16 concurrent greedy requests get what each gets alone, logprobs bit for bit', async () => {
    const prompts = Array.from({ length: 16 }, (_, i) => `${PROMPT.slice(0, 8 + i)} and ${i}`);
    const body = (prompt: string) => ({ model: 'tiny', prompt, max_tokens: 8, temperature: 0, logprobs: 2, ignore_eos: true }) as OpenAI.CompletionCreateParamsNonStreaming;
    const alone: OpenAI.Completion[] = [];
    for (const p of prompts) alone.push(await client.completions.create(body(p)));
    const together = await Promise.all(prompts.map((p) => client.completions.create(body(p))));
    together.forEach((r, i) => {
      const a = alone[i]!.choices[0]!, b = r.choices[0]!;
      assert.equal(b.text, a.text, `request ${i} text`);
      assert.deepEqual(b.logprobs!.tokens, a.logprobs!.tokens, `request ${i} tokens`);
      assert.ok(b.logprobs!.token_logprobs!.every((v, j) => Object.is(v, a.logprobs!.token_logprobs![j])), `request ${i} logprobs bit for bit`);
      assert.deepEqual(b.logprobs!.top_logprobs, a.logprobs!.top_logprobs, `request ${i} top logprobs`);
    });
  });

  it('continuous batching: a request sent while a long one streams finishes before it', async () => {
    const long = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 100, temperature: 0, ignore_eos: true, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    const order: string[] = [];
    let chunks = 0;
    let short: Promise<void> | undefined;
    for await (const c of long) {
      if (++chunks === 3) short = client.completions.create({ model: 'tiny', prompt: 'Whale', max_tokens: 3, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming).then(() => void order.push('short'));
      if (c.choices[0]?.finish_reason) order.push('long');
    }
    await short;
    assert.deepEqual(order, ['short', 'long']);
  });

  it('stops at a stop string, which is not in the text, streamed or not', async () => {
    const body = { model: 'tiny', prompt: PROMPT, max_tokens: 24, temperature: 0, ignore_eos: true };
    const full = (await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming)).choices[0]!.text;
    const at = Math.floor(full.length / 2);
    const stop = full.slice(at, at + 2);
    const expected = full.slice(0, full.indexOf(stop));
    const r = await client.completions.create({ ...body, stop: [stop, 'never in the text'] } as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(r.choices[0]!.text, expected);
    assert.equal(r.choices[0]!.finish_reason, 'stop');
    const stream = await client.completions.create({ ...body, stop, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, expected);
    assert.equal(finish, 'stop');
  });

  it('gives completions logprobs: the chosen token with the top alternatives, greedy choosing the most likely', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 3, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const lp = r.choices[0]!.logprobs!;
    assert.equal(lp.tokens!.length, 5);
    assert.equal(lp.tokens!.join(''), r.choices[0]!.text);
    lp.top_logprobs!.forEach((top, i) => {
      const entries = Object.entries(top);
      assert.ok(entries.length >= 1 && entries.length <= 4);
      assert.equal(top[lp.tokens![i]!], lp.token_logprobs![i]);
      assert.equal(Math.max(...entries.map(([, v]) => v)), lp.token_logprobs![i]);
    });
    assert.deepEqual(lp.text_offset, lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length));
  });

  it("chats with the model's own chat_template, with logprobs whose bytes make the content", async () => {
    const messages = [
      { role: 'system' as const, content: 'You are a whaling historian.' },
      { role: 'user' as const, content: 'Who is Ishmael?' },
    ];
    const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 });
    const rendered = 'system: You are a whaling historian.\nuser: Who is Ishmael?\nassistant:';
    assert.equal(r.usage!.prompt_tokens, tok.encode(rendered, { allowSpecial: true, addSpecialTokens: false }).length);
    const c = r.choices[0]!;
    assert.equal(c.message.role, 'assistant');
    const content = c.logprobs!.content!;
    assert.equal(content.length, r.usage!.completion_tokens);
    assert.ok(content.every((t) => t.top_logprobs.length === 2 && t.logprob <= 0));
    assert.equal(Buffer.from(content.flatMap((t) => t.bytes!)).toString('utf8'), c.message.content);
  });

  it('streams chat with usage when include_usage asks, the same as not streamed', async () => {
    const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'Hi' }], max_tokens: 10, temperature: 0 };
    const whole = await client.chat.completions.create(body);
    const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
    assert.deepEqual(chunks.at(-1)!.choices, []);
    assert.deepEqual(chunks.at(-1)!.usage, whole.usage);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, whole.choices[0]!.finish_reason);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), whole.choices[0]!.message.content);
  });

  it('refuses bad requests with OpenAI error bodies and keeps serving', async () => {
    const n = tok.encodePrompt(PROMPT).length;
    const long = await apiError(client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 200 }));
    assert.deepEqual([long.status, long.error.type, long.error.param, long.error.code], [400, 'invalid_request_error', 'max_tokens', 'context_length_exceeded']);
    assert.match(String(long.error.message), new RegExp(`128 tokens.*${n + 200} tokens \\(${n} in the prompt, 200 in the completion\\)`));
    const bad = await apiError(client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], top_p: 7 }));
    assert.deepEqual([bad.status, bad.error.param], [400, 'top_p']);
    const refused = await apiError(client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' } }));
    assert.deepEqual([refused.status, refused.error.param, refused.error.code], [400, 'response_format', 'unsupported_parameter']);
    const model = await apiError(client.completions.create({ model: 'davinci-002', prompt: PROMPT }));
    assert.deepEqual([model.status, model.error.code], [404, 'model_not_found']);
    const json = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{"messages": [' });
    assert.equal(json.status, 400);
    assert.equal(((await json.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
    assert.equal((await fetch(`${url}/v1/nothing`)).status, 404);
    const method = await fetch(`${url}/v1/chat/completions`, { method: 'PUT', body: '{}' });
    assert.deepEqual([method.status, method.headers.get('allow')], [405, 'POST']);
    const big = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(1 << 21) }) });
    assert.equal(big.status, 413);
    const ok = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 2 });
    assert.equal(ok.choices.length, 1);
  });

  it('answers a list of many prompts without a listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const r = await client.completions.create({ model: 'tiny', prompt: Array.from({ length: 24 }, (_, i) => `${PROMPT} ${i}`), max_tokens: 2 });
      assert.equal(r.choices.length, 24);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings, []);
  });

  it('checks the API key on /v1 (401), not on /health and /metrics', async () => {
    const guarded = createServer({ engine: Promise.resolve(engine), tokenizer: tok, modelName: 'tiny', apiKey: KEY });
    const gurl = await guarded.listen('127.0.0.1', 0);
    try {
      const wrong = new OpenAI({ baseURL: `${gurl}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
      const e = await apiError(wrong.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }] }));
      assert.deepEqual([e.status, e.error.code], [401, 'invalid_api_key']);
      assert.equal((await fetch(`${gurl}/v1/models`)).status, 401);
      assert.equal((await fetch(`${gurl}/health`)).status, 200);
      assert.equal((await fetch(`${gurl}/metrics`)).status, 200);
      const right = new OpenAI({ baseURL: `${gurl}/v1`, apiKey: KEY, maxRetries: 0 });
      assert.equal((await right.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 1 })).choices.length, 1);
    } finally {
      await guarded.close();
    }
  });

  it('answers 429 when the engine queue is full', async () => {
    const small = await start({ model: dir, modelName: 'tiny', kvCacheBytes: 4 << 20, maxNumSeqs: 1, maxQueue: 0 });
    const busy = createServer({ engine: Promise.resolve(small), tokenizer: tok, modelName: 'tiny' });
    const burl = await busy.listen('127.0.0.1', 0);
    try {
      const c = new OpenAI({ baseURL: `${burl}/v1`, apiKey: 'none', maxRetries: 0 });
      const long = await c.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 80, ignore_eos: true, stream: true } as OpenAI.CompletionCreateParamsStreaming);
      const it = long[Symbol.asyncIterator]();
      await it.next();
      const e = await apiError(c.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 2 }));
      assert.deepEqual([e.status, e.error.type, e.error.code], [429, 'rate_limit_error', 'queue_full']);
      await it.return?.();
    } finally {
      await busy.close();
      await small.close();
    }
  });

  it('frees the KV blocks of a stream the client aborts', async () => {
    const controller = new AbortController();
    const generated = engine.stats().generatedTokens;
    const stream = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 100, ignore_eos: true, stream: true } as OpenAI.CompletionCreateParamsStreaming, { signal: controller.signal });
    let n = 0;
    for await (const _ of stream) {
      if (++n === 2) {
        assert.ok(engine.stats().kvBlocksUsed > 0);
        controller.abort();
      }
    }
    await until(() => engine.stats().kvBlocksUsed === 0 && engine.stats().running === 0, 'the aborted request to free its blocks');
    // Stopped by the abort, not by max_tokens.
    assert.ok(engine.stats().generatedTokens - generated < 100, `${engine.stats().generatedTokens - generated} tokens generated: the request ran to its end`);
  });

  it('counts requests and tokens in /metrics', async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const sample = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    for (const line of text.split('\n')) if (line && !line.startsWith('#')) assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/, line);
    assert.ok(sample('skymoe:requests_total\\{endpoint="/v1/completions",status="200",model_name="tiny"\\}') >= 8);
    assert.ok(sample('skymoe:requests_total\\{endpoint="/v1/completions",status="400",model_name="tiny"\\}') >= 1);
    assert.ok(sample('vllm:generation_tokens_total\\{model_name="tiny"\\}') >= 60);
    assert.ok(sample('vllm:prompt_tokens_total\\{model_name="tiny"\\}') > 0);
    assert.ok(sample('vllm:time_to_first_token_seconds_count\\{model_name="tiny"\\}') >= 8);
    assert.ok(sample('vllm:kv_cache_usage_perc\\{model_name="tiny"\\}') >= 0);
  });

  it('drains: the running request finishes, new ones get 503, then it closes', async () => {
    const stream = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 100, ignore_eos: true, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const drained = server.drain();
    assert.equal((await fetch(`${url}/health`)).status, 503);
    const refused = await apiError(client.completions.create({ model: 'tiny', prompt: PROMPT }));
    assert.equal(refused.status, 503);
    let finish: string | null = null;
    for (let r = await it.next(); !r.done; r = await it.next()) finish = r.value.choices[0]?.finish_reason ?? finish;
    assert.equal(finish, 'length');
    await drained;
    await assert.rejects(fetch(`${url}/health`));
  });
});

describe('skymoe serve', () => {
  it('prints the URL when ready, serves, and exits 0 on SIGTERM after draining', async () => {
    if (!dir || !existsSync(dir)) await writeModel();
    const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
    const child = spawn(process.execPath, [main, 'serve', '--model', dir, '--port', '0', '--backend', 'wasm', '--threads', '1', '--served-model-name', 'whale'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      child.stderr.on('data', () => {});
      await until(() => /\n/.test(out), 'the ready line', 60_000);
      const m = /^serving 'whale' at (http:\/\/127\.0\.0\.1:\d+)\/v1 \(context 128 tokens\)\n$/.exec(out);
      assert.ok(m, out);
      const c = new OpenAI({ baseURL: `${m[1]}/v1`, apiKey: 'none', maxRetries: 0 });
      assert.equal((await c.completions.create({ model: 'whale', prompt: PROMPT, max_tokens: 2 })).object, 'text_completion');
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
