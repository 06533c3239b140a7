/**
 * The HTTP layer on a scripted engine (fake-engine.ts), through the official openai client and raw
 * fetch: routes and their OpenAI shapes, streams (role chunk, finish_reason, usage), every error
 * status with its body, the server still serving after each bad request, a client abort reaching
 * the engine, /health while loading / ready / draining, drain letting running requests finish,
 * and /metrics counting what happened. test/serve/server.test.ts does the same on the real engine.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import OpenAI from 'openai';
import { EngineBusyError, type EngineHandle } from '../../src/infer/types.js';
import { createServer, type SkymoeServer } from '../../src/serve/server.js';
import { FakeEngine } from './fake-engine.js';
import { apiError, smallTokenizer } from './fixtures.js';

const tok = smallTokenizer();
const KEY = 'sk-test-key';

interface Running {
  server: SkymoeServer;
  url: string;
  client: OpenAI;
  engine: FakeEngine;
}

async function start(o: { apiKey?: string; maxQueue?: number; delayMs?: number; maxBodyBytes?: number; maxRequests?: number; engine?: Promise<EngineHandle> } = {}): Promise<Running> {
  const engine = new FakeEngine({ tokenizer: tok, delayMs: o.delayMs ?? 0, maxRequests: o.maxRequests });
  const server = createServer({ engine: o.engine ?? Promise.resolve(engine), tokenizer: tok, modelName: 'tiny', apiKey: o.apiKey, maxQueue: o.maxQueue, maxBodyBytes: o.maxBodyBytes });
  const url = await server.listen('127.0.0.1', 0);
  return { server, url, engine, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: o.apiKey ?? 'none', maxRetries: 0 }) };
}

/** The ids the fake engine generates for a prompt: counting up from its last id, choice i starting i later. */
function fakeText(prompt: number[], count: number, choice = 0): string {
  return tok.decode(Array.from({ length: count }, (_, k) => (prompt.at(-1)! + 1 + choice + k) % tok.vocabSize));
}

/** Samples of a Prometheus text exposition, each line checked against the format. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    out.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return out;
}

const PROMPT = 'Call me Ishmael.';
const promptIds = tok.encodePrompt(PROMPT);
// The fake's token ids count up from the prompt's last; keep the tokenizer's eos (a stop id) out of the way.
const IDS_PROMPT = [10, 20, 30];

describe('on a ready engine', () => {
  let s: Running;
  before(async () => (s = await start()));
  after(() => s.server.close());

  it('lists the model in OpenAI list shape, and retrieves it', async () => {
    const models = await s.client.models.list();
    assert.deepEqual(
      models.data.map((m) => ({ ...m, created: 0 })),
      [{ id: 'tiny', object: 'model', created: 0, owned_by: 'skymoe', max_model_len: 128 }],
    );
    assert.equal((await s.client.models.retrieve('tiny')).id, 'tiny');
    const e = await apiError(s.client.models.retrieve('gpt-4'));
    assert.equal(e.status, 404);
    assert.equal(e.error.code, 'model_not_found');
    assert.equal((await fetch(`${s.url}/v1/models/%E0%A4%A`)).status, 404);
  });

  it('answers completions: text, n choices, usage, logprobs', async () => {
    const r = await s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, max_tokens: 3, n: 2, logprobs: 2 });
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'tiny');
    assert.deepEqual(r.choices.map((c) => [c.index, c.text, c.finish_reason]), [
      [0, fakeText(IDS_PROMPT, 3), 'length'],
      [1, fakeText(IDS_PROMPT, 3, 1), 'length'],
    ]);
    assert.deepEqual(r.usage, { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 });
    const lp = r.choices[0]!.logprobs!;
    assert.deepEqual(lp.tokens, [31, 32, 33].map((id) => tok.decode([id])));
    assert.deepEqual(lp.token_logprobs, [-0.5, -0.5, -0.5]);
    assert.equal(Object.keys(lp.top_logprobs![0]!).length, 2);
    assert.equal(s.engine.seen.at(-1)!.req.params.topLogprobs, 2);
  });

  it('numbers the choices of a list of prompts prompt by prompt', async () => {
    const r = await s.client.completions.create({ model: 'tiny', prompt: [IDS_PROMPT, [40, 50]], max_tokens: 2, n: 2 });
    assert.deepEqual(
      r.choices.map((c) => c.text),
      [fakeText(IDS_PROMPT, 2), fakeText(IDS_PROMPT, 2, 1), fakeText([50], 2), fakeText([50], 2, 1)],
    );
    assert.equal(r.usage!.prompt_tokens, 5);
  });

  it('answers chat, streamed: role first, finish_reason last, usage chunk only with include_usage', async () => {
    const stream = await s.client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
      logprobs: true,
      top_logprobs: 1,
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
    const usage = chunks.at(-1)!;
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage!.completion_tokens, 4);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null && c.object === 'chat.completion.chunk' && c.id === usage.id));
    const last = chunks.at(-2)!.choices[0]!;
    assert.equal(last.finish_reason, 'length');
    assert.ok(chunks.slice(0, -2).every((c) => c.choices[0]!.finish_reason === null));
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const lps = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    assert.equal(lps.length, 4);
    assert.equal(lps.map((l) => l.token).join(''), content);
    assert.ok(lps.every((l) => l.top_logprobs.length === 1 && Array.isArray(l.bytes)));

    const plain = await s.client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, stream: true });
    for await (const c of plain) assert.equal('usage' in c, false);
  });

  it('answers chat, not streamed, with max_completion_tokens', async () => {
    const r = await s.client.chat.completions.create({ model: 'tiny', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], max_completion_tokens: 2 });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0]!.message.role, 'assistant');
    assert.equal(r.choices[0]!.finish_reason, 'length');
    assert.equal(r.choices[0]!.logprobs, null);
    assert.equal(r.usage!.completion_tokens, 2);
    const seen = s.engine.seen.at(-1)!.req;
    assert.equal(r.usage!.prompt_tokens, seen.prompt.length);
    assert.equal(r.choices[0]!.message.content, fakeText(seen.prompt, 2));
  });

  it('echoes the prompt when asked', async () => {
    const r = await s.client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 2, echo: true });
    assert.equal(r.choices[0]!.text, PROMPT + fakeText(promptIds, 2));
  });

  it('refuses bad requests in OpenAI shape and keeps serving', async () => {
    const bad = await apiError(s.client.completions.create({ model: 'tiny', prompt: PROMPT, temperature: 3 }));
    assert.equal(bad.status, 400);
    assert.deepEqual(Object.keys(bad.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(bad.error.type, 'invalid_request_error');
    assert.equal(bad.error.param, 'temperature');

    const refused = await apiError(s.client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], logit_bias: { '5': 1 } }));
    assert.deepEqual([refused.status, refused.error.param, refused.error.code], [400, 'logit_bias', 'unsupported_parameter']);

    const long = await apiError(s.client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 500 }));
    assert.equal(long.status, 400);
    assert.match(String(long.error.message), new RegExp(`maximum context length is 128 tokens.*${promptIds.length + 500} tokens \\(${promptIds.length} in the prompt, 500 in the completion\\)`));

    const model = await apiError(s.client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: PROMPT }));
    assert.deepEqual([model.status, model.error.code, model.error.param], [404, 'model_not_found', 'model']);

    for (const body of ['{"prompt": ', '[1, 2]', '']) {
      const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      assert.equal(r.status, 400, body);
      const e = (await r.json()) as { error: { type: string } };
      assert.equal(e.error.type, 'invalid_request_error');
    }
    const route = await fetch(`${s.url}/v1/embeddings`, { method: 'POST', body: '{}' });
    assert.equal(route.status, 404);
    assert.deepEqual(await route.json(), { error: { message: 'Invalid URL (POST /v1/embeddings)', type: 'invalid_request_error', param: null, code: 'unknown_url' } });
    const method = await fetch(`${s.url}/v1/completions`);
    assert.equal(method.status, 405);
    assert.equal(method.headers.get('allow'), 'POST');
    assert.equal(((await method.json()) as { error: { code: string } }).error.code, 'method_not_allowed');

    const ok = await s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, max_tokens: 1 });
    assert.equal(ok.choices[0]!.text, fakeText(IDS_PROMPT, 1));
  });

  it('refuses a body over the limit with 413 without keeping it, declared or chunked', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(2 << 20) });
    const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: big });
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'request_too_large');
    // No Content-Length: the limit is found while reading.
    const chunks = (async function* () {
      for (let i = 0; i < 64; i++) yield new TextEncoder().encode('x'.repeat(64 << 10));
    })();
    const c = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: ReadableStream.from(chunks), duplex: 'half' } as RequestInit);
    assert.equal(c.status, 413);
    assert.equal((await s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, max_tokens: 1 })).choices.length, 1);
  });

  for (const connection of ['keep-alive', 'close']) {
    it(`lets a client that writes all of a body over the limit before reading get its 413 (Connection: ${connection})`, async () => {
      // 16 MiB: more than the socket buffers on both ends hold, so a server that closed at once would reset the client mid-write.
      const body = Buffer.alloc(16 << 20, 'x');
      const socket = connect(s.server.address!.port, '127.0.0.1');
      socket.pause();
      await new Promise((r) => socket.once('connect', r));
      const written = await new Promise<Error | null | undefined>((resolve) => {
        socket.once('error', resolve);
        socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: ${connection}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
        socket.write(body, resolve);
      });
      assert.equal(written ?? null, null, 'the body could not be sent: the connection was reset');
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
      socket.resume();
      const reply = async (): Promise<{ status: number; body: string }> => {
        for (let end = -1; ; await new Promise((r) => setTimeout(r, 5))) {
          end = got.indexOf('\r\n\r\n');
          const length = /\r\ncontent-length: (\d+)/i.exec(got.slice(0, end));
          if (end >= 0 && length && got.length >= end + 4 + Number(length[1])) {
            const r = { status: Number(got.slice(9, 12)), body: got.slice(end + 4, end + 4 + Number(length[1])) };
            got = got.slice(end + 4 + Number(length[1]));
            return r;
          }
          if (socket.readableEnded || socket.destroyed) assert.fail(`the connection closed without a whole reply: ${JSON.stringify(got.slice(0, 200))}`);
        }
      };
      const refused = await reply();
      assert.equal(refused.status, 413);
      assert.equal((JSON.parse(refused.body) as { error: { code: string } }).error.code, 'request_too_large');
      if (connection === 'keep-alive') {
        socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.equal((await reply()).status, 200);
      }
      socket.destroy();
    });
  }

  it('answers 429 when the engine queue is full, 503 when the engine drains, 500 for an engine fault', async () => {
    s.engine.busy = new EngineBusyError('64 requests waiting', 'queue_full');
    const full = await apiError(s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT }));
    assert.deepEqual([full.status, full.error.type, full.error.code], [429, 'rate_limit_error', 'queue_full']);
    s.engine.busy = new EngineBusyError('draining', 'draining');
    const drain = await apiError(s.client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], stream: true }));
    assert.deepEqual([drain.status, drain.error.type, drain.error.message], [503, 'unavailable_error', 'The engine takes no new requests: draining']);
    s.engine.busy = undefined;

    const failing = s.engine.generate.bind(s.engine);
    s.engine.generate = async function* (req, signal) {
      yield* failing({ ...req, params: { ...req.params, maxTokens: 1 } }, signal);
      yield { type: 'error', requestId: req.id, message: 'KV cache corrupted' };
    };
    try {
      const fault = await apiError(s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT }));
      assert.equal(fault.status, 500);
      assert.equal(fault.error.type, 'server_error');
      // Streamed, the 200 is out: the error comes as an event (the client throws it).
      const stream = await s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, stream: true });
      await assert.rejects(async () => {
        for await (const _ of stream);
      }, /KV cache corrupted/);
    } finally {
      s.engine.generate = failing;
    }
    assert.equal((await s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, max_tokens: 1 })).choices.length, 1);
  });

  it('counts requests, tokens and latencies in /metrics (Prometheus text)', async () => {
    const r = await fetch(`${s.url}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    const m = parseMetrics(await r.text());
    const get = (k: string): number => m.get(k) ?? 0;
    assert.ok(get('skymoe:requests_total{endpoint="/v1/completions",status="200",model_name="tiny"}') >= 6);
    assert.ok(get('skymoe:requests_total{endpoint="/v1/completions",status="400",model_name="tiny"}') >= 5);
    assert.ok(get('skymoe:requests_total{endpoint="/v1/completions",status="413",model_name="tiny"}') >= 2);
    assert.equal(get('skymoe:requests_total{endpoint="/v1/completions",status="429",model_name="tiny"}'), 1);
    assert.equal(get('skymoe:requests_total{endpoint="unknown",status="404",model_name="tiny"}'), 1);
    assert.ok(get('skymoe:generation_tokens_total{model_name="tiny"}') > 20);
    assert.equal(get('vllm:generation_tokens_total{model_name="tiny"}'), get('skymoe:generation_tokens_total{model_name="tiny"}'));
    assert.ok(get('vllm:prompt_tokens_total{model_name="tiny"}') > 0);
    assert.ok(get('skymoe:time_to_first_token_seconds_count{model_name="tiny"}') >= 6);
    assert.ok(get('vllm:inter_token_latency_seconds_count{model_name="tiny"}') > 0);
    for (const g of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'skymoe:kv_cache_usage_perc']) assert.equal(get(`${g}{model_name="tiny"}`), 0, g);
  });
});

describe('a client going away', () => {
  it('aborts its engine request, which frees its blocks', async () => {
    const s = await start({ delayMs: 5 });
    try {
      const controller = new AbortController();
      const stream = await s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, max_tokens: 100, stream: true }, { signal: controller.signal });
      let n = 0;
      // The client's stream ends quietly when aborted.
      for await (const _ of stream) if (++n === 3) controller.abort();
      assert.ok(n < 10, `${n} chunks`);
      for (let i = 0; i < 100 && s.engine.stats().kvBlocksUsed > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.engine.stats().kvBlocksUsed, 0);
      assert.equal(s.engine.seen[0]!.aborted, true);
      const m = parseMetrics(await (await fetch(`${s.url}/metrics`)).text());
      assert.equal(m.get('skymoe:requests_total{endpoint="/v1/completions",status="499",model_name="tiny"}'), 1);
    } finally {
      await s.server.close();
    }
  });
});

describe('an API key', () => {
  it('guards the /v1 routes; /health and /metrics stay open', async () => {
    const s = await start({ apiKey: KEY });
    try {
      assert.equal((await s.client.models.list()).data.length, 1);
      const wrong = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
      const e = await apiError(wrong.completions.create({ model: 'tiny', prompt: PROMPT }));
      assert.deepEqual([e.status, e.error.type, e.error.code], [401, 'invalid_request_error', 'invalid_api_key']);
      assert.equal((await apiError(wrong.models.list())).status, 401);
      assert.equal((await fetch(`${s.url}/v1/models`)).status, 401);
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
      assert.equal((await fetch(`${s.url}/metrics`)).status, 200);
    } finally {
      await s.server.close();
    }
  });
});

describe('/health', () => {
  it("answers llama.cpp's 503 while the engine loads, then 200", async () => {
    let ready!: (e: EngineHandle) => void;
    const fake = new FakeEngine({ tokenizer: tok });
    const s = await start({ engine: new Promise((r) => (ready = r)) });
    try {
      const loading = await fetch(`${s.url}/health`);
      assert.equal(loading.status, 503);
      assert.deepEqual(await loading.json(), { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
      const e = await apiError(s.client.completions.create({ model: 'tiny', prompt: PROMPT }));
      assert.equal(e.status, 503);
      assert.equal(e.error.message, 'Loading model');
      ready(fake);
      await new Promise((r) => setImmediate(r));
      const ok = await fetch(`${s.url}/health`);
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { status: 'ok' });
    } finally {
      await s.server.close();
    }
  });

  it('says so when the model failed to load', async () => {
    const s = await start({ engine: Promise.reject(new Error('config.json: no such file')) });
    try {
      await new Promise((r) => setImmediate(r));
      const r = await fetch(`${s.url}/health`);
      assert.equal(r.status, 503);
      assert.match(((await r.json()) as { error: { message: string } }).error.message, /Model failed to load: config\.json: no such file/);
    } finally {
      await s.server.close();
    }
  });
});

describe('more prompts than the engine holds', () => {
  it('is a 400 naming prompt (retrying cannot help), not a 429; as many as it holds are answered', async () => {
    const s = await start({ maxRequests: 3 });
    try {
      const e = await apiError(s.client.completions.create({ model: 'tiny', prompt: ['a', 'b', 'c', 'd'], max_tokens: 2 }));
      assert.deepEqual([e.status, e.error.param, e.error.code], [400, 'prompt', 'too_many_prompts']);
      assert.match(String(e.error.message), /4 prompts in one request; this server runs at most 3 at once/);
      const ok = await s.client.completions.create({ model: 'tiny', prompt: ['a', 'b', 'c'], max_tokens: 2 });
      assert.equal(ok.choices.length, 3);
    } finally {
      await s.server.close();
    }
  });
});

describe('drain', () => {
  it('refuses new requests with 503, lets the running one finish, then closes', async () => {
    const s = await start({ delayMs: 5 });
    const running = s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT, max_tokens: 20, stream: true });
    const stream = await running;
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const drained = s.server.drain();
    const health = await fetch(`${s.url}/health`);
    assert.equal(health.status, 503);
    assert.deepEqual(await health.json(), { error: { code: 503, message: 'Shutting down', type: 'unavailable_error' } });
    const refused = await apiError(s.client.completions.create({ model: 'tiny', prompt: IDS_PROMPT }));
    assert.deepEqual([refused.status, refused.error.code], [503, 'draining']);
    let text = '';
    let finish: string | null = null;
    for (let r = await it.next(); !r.done; r = await it.next()) {
      text += r.value.choices[0]?.text ?? '';
      finish = r.value.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, 'length');
    assert.equal(text, fakeText(IDS_PROMPT, 20).slice(tok.decode([IDS_PROMPT.at(-1)! + 1]).length));
    await drained;
    await assert.rejects(fetch(`${s.url}/health`));
  });

  it('is not held up by a client that left in the middle of its body', async () => {
    const s = await start();
    const { port } = s.server.address!;
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt": "Call');
    await new Promise((r) => setTimeout(r, 50));
    socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    await s.server.drain();
  });
});

describe('requests node:http answers itself', () => {
  /** The whole reply (status line, headers, body) to raw request bytes; the server closes or the reply has its length. */
  async function raw(port: number, bytes: string): Promise<{ status: number; head: string; body: string }> {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const done = new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        const end = got.indexOf('\r\n\r\n');
        const length = /\r\ncontent-length: (\d+)/i.exec(got.slice(0, end));
        if (end >= 0 && length && got.length >= end + 4 + Number(length[1])) resolve();
      });
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
    });
    socket.write(bytes, 'latin1');
    await done;
    socket.destroy();
    const end = got.indexOf('\r\n\r\n');
    return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0), head: got.slice(0, end), body: got.slice(end + 4) };
  }

  it('answers in OpenAI shape: unparsable bytes, oversized headers, a body cut short, no Host, CONNECT, HTTP/0.9, an unknown Expect', async () => {
    const s = await start();
    try {
      const { port } = s.server.address!;
      const cases: [string, number, string][] = [
        ['FOO /health HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'malformed_request'],
        ['GET /v1/models/\0 HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'malformed_request'],
        ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}', 400, 'malformed_request'],
        ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n', 400, 'malformed_request'],
        [`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
        ['GET /health HTTP/1.1\r\n\r\n', 400, 'missing_host'],
        ['CONNECT localhost:22 HTTP/1.1\r\nHost: x\r\n\r\n', 404, 'unknown_url'],
        // HTTP/0.9 (no version): node closes the connection right after the request unless answered at once.
        ['PRI /health\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}', 405, 'method_not_allowed'],
        ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}', 417, 'expectation_failed'],
      ];
      for (const [bytes, status, code] of cases) {
        const r = await raw(port, bytes);
        assert.equal(r.status, status, bytes.slice(0, 60));
        assert.match(r.head, /\r\nContent-Type: application\/json\r\n/i, bytes.slice(0, 60));
        const e = (JSON.parse(r.body) as { error: Record<string, unknown> }).error;
        assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type'], bytes.slice(0, 60));
        assert.deepEqual([e.type, e.code], ['invalid_request_error', code], bytes.slice(0, 60));
      }
      // The answer to a HEAD has no body, or a client would read it as the next answer.
      const head = await raw(port, `HEAD /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      assert.deepEqual([head.status, head.body], [431, '']);
      // Headers over the limit with a big body, all written before reading: the 431 is still read.
      const big = connect(port, '127.0.0.1');
      big.pause();
      await new Promise((r) => big.once('connect', r));
      const sent = await new Promise<Error | null | undefined>((resolve) => {
        big.once('error', resolve);
        big.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\nContent-Length: ${16 << 20}\r\n\r\n`);
        big.write(Buffer.alloc(16 << 20, 'x'), resolve);
      });
      assert.equal(sent ?? null, null, 'the body could not be sent: the connection was reset');
      let answer = '';
      big.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      big.end();
      big.resume();
      await new Promise((r) => big.once('close', r));
      assert.match(answer, /^HTTP\/1\.1 431 [^]*"code":"headers_too_large"/);
      // A body shorter than its Content-Length, then the end of the request side.
      const socket = connect(port, '127.0.0.1');
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
      const closed = new Promise((r) => socket.on('close', r));
      socket.end('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt": "Call');
      await closed;
      assert.match(got, /^HTTP\/1\.1 400 /);
      assert.equal((JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4)) as { error: { code: string } }).error.code, 'malformed_request');
      assert.equal((await fetch(`${s.url}/health`)).status, 200);
    } finally {
      await s.server.close();
    }
  });
});
