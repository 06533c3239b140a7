/**
 * One choice stream, two renderers: known EngineEvent sequences rendered as OpenAI's JSON bodies
 * and as the exact SSE text, for completions and chat; logprobs in both of OpenAI's formats
 * (token text from decoding the single id, bytes the token's raw bytes, even half a character);
 * and the merge of several prompts' engine streams (choice numbering, errors, aborts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PARAMS, type EngineEvent, type EngineHandle, type GenerationRequest, type TokenLogprob } from '../../src/infer/types.js';
import { generateChoices, GenerationError, type ChoiceEvent } from '../../src/serve/choices.js';
import { chatLogprobs, completionLogprobs, TokenStrings } from '../../src/serve/logprobs.js';
import { ChatRenderer, CompletionRenderer, SSE_DONE, sseData, type RenderOptions } from '../../src/serve/render.js';
import { smallTokenizer } from './fixtures.js';

const tok = smallTokenizer();
const strings = new TokenStrings(tok);
const [LITTLE, ME] = [tok.encode(' little', { addSpecialTokens: false })[0]!, tok.encode(' me', { addSpecialTokens: false })[0]!];
/** 'é' is two byte tokens in a tokenizer trained on ASCII text: each alone decodes to U+FFFD. */
const [E1, E2] = tok.encode('é', { addSpecialTokens: false }) as [number, number];
const head = { id: 'cmpl-1', created: 1700000000, model: 'tiny' };

function options(o: Partial<RenderOptions> = {}): RenderOptions {
  return { head, choices: 1, promptTokens: [4], logprobs: false, strings, ...o };
}

const tokens = (index: number, ids: number[], text: string, logprobs?: TokenLogprob[]): ChoiceEvent => ({ type: 'tokens', index, ids, text, ...(logprobs ? { logprobs } : {}) });
const finish = (index: number, reason: 'stop' | 'length', text: string, completionTokens: number): ChoiceEvent => ({ type: 'finish', index, reason, text, completionTokens });

/** What the server writes for a stream: the start chunks, each event's chunks, the usage chunk when asked, [DONE]. */
function sseText(r: CompletionRenderer | ChatRenderer, events: ChoiceEvent[], usage: boolean): string {
  const chunks = [...r.start(), ...events.flatMap((e) => r.chunks(e)), ...(usage ? [r.usageChunk()] : [])];
  return chunks.map(sseData).join('') + SSE_DONE;
}

describe('completions', () => {
  // Two choices, interleaved; choice 1 holds text back until its finish.
  const events = [tokens(0, [LITTLE], ' little'), tokens(1, [ME], ''), tokens(0, [ME], ' me'), finish(0, 'length', '', 2), finish(1, 'stop', ' me', 1)];

  it('renders one text_completion body with usage counting the shared prompt once', () => {
    const r = new CompletionRenderer(options({ choices: 2 }));
    for (const e of events) r.add(e);
    assert.deepEqual(r.body(), {
      id: 'cmpl-1',
      object: 'text_completion',
      created: 1700000000,
      model: 'tiny',
      choices: [
        { index: 0, text: ' little me', logprobs: null, finish_reason: 'length' },
        { index: 1, text: ' me', logprobs: null, finish_reason: 'stop' },
      ],
      usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
    });
  });

  it('streams text_completion chunks, skipping events with nothing to show, usage: null until the usage chunk', () => {
    const r = new CompletionRenderer(options({ choices: 2, includeUsage: true }));
    const c = (index: number, text: string, finish: string | null) =>
      `data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"tiny","choices":[{"index":${index},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":${JSON.stringify(finish)}}],"usage":null}\n\n`;
    assert.equal(
      sseText(r, events, true),
      c(0, ' little', null) +
        c(0, ' me', null) +
        c(0, '', 'length') +
        c(1, ' me', 'stop') +
        'data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"tiny","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}\n\n' +
        'data: [DONE]\n\n',
    );
  });

  it('leaves usage out of the chunks when it was not asked for', () => {
    const r = new CompletionRenderer(options());
    assert.equal(sseText(r, [tokens(0, [LITTLE], ' little'), finish(0, 'length', '', 1)], false).includes('usage'), false);
  });

  it('echoes the prompt: first in the body, first chunk of each choice in a stream', () => {
    const r = new CompletionRenderer(options({ choices: 4, promptTokens: [2, 3] }), { texts: ['A', 'B'], n: 2 });
    const evs = [0, 1, 2, 3].flatMap((i) => [tokens(i, [ME], ' me'), finish(i, 'length', '', 1)]);
    for (const e of evs) r.add(e);
    assert.deepEqual(
      (r.body() as { choices: { text: string }[] }).choices.map((c) => c.text),
      ['A me', 'A me', 'B me', 'B me'],
    );
    const s = new CompletionRenderer(options({ choices: 4, promptTokens: [2, 3] }), { texts: ['A', 'B'], n: 2 });
    assert.deepEqual(
      s.start().map((c) => (c as { choices: { index: number; text: string }[] }).choices[0]),
      [0, 1, 2, 3].map((index) => ({ index, text: index < 2 ? 'A' : 'B', logprobs: null, finish_reason: null })),
    );
  });

  it('gives logprobs in the legacy format: the chosen token with the top alternatives, offsets in the text', () => {
    const lp1: TokenLogprob = { id: LITTLE, logprob: -0.25, top: [{ id: LITTLE, logprob: -0.25 }, { id: ME, logprob: -1.5 }] };
    const lp2: TokenLogprob = { id: ME, logprob: -2, top: [{ id: LITTLE, logprob: -0.5 }] };
    const r = new CompletionRenderer(options({ logprobs: true }));
    for (const e of [tokens(0, [LITTLE], ' little', [lp1]), tokens(0, [ME], ' me', [lp2]), finish(0, 'stop', '', 2)]) r.add(e);
    assert.deepEqual((r.body() as { choices: { logprobs: unknown }[] }).choices[0]!.logprobs, {
      tokens: [' little', ' me'],
      token_logprobs: [-0.25, -2],
      top_logprobs: [{ ' little': -0.25, ' me': -1.5 }, { ' little': -0.5, ' me': -2 }],
      text_offset: [0, 7],
    });
    // Streamed, the offsets continue from chunk to chunk, and the finish chunk carries empty lists.
    const s = new CompletionRenderer(options({ logprobs: true }));
    const chunks = [tokens(0, [LITTLE], ' little', [lp1]), tokens(0, [ME], ' me', [lp2]), finish(0, 'stop', '', 2)].flatMap((e) => s.chunks(e));
    assert.deepEqual(
      chunks.map((c) => (c as { choices: { logprobs: { text_offset: number[] } }[] }).choices[0]!.logprobs.text_offset),
      [[0], [7], []],
    );
  });

  it('sends -Infinity as -9999 (JSON has no infinities)', () => {
    const { logprobs } = completionLogprobs([{ id: LITTLE, logprob: -Infinity, top: [] }], strings, 0);
    assert.deepEqual(logprobs.token_logprobs, [-9999]);
  });
});

describe('chat', () => {
  it('renders one chat.completion body', () => {
    const r = new ChatRenderer(options({ head: { ...head, id: 'chatcmpl-1' } }));
    for (const e of [tokens(0, [LITTLE], ' little'), tokens(0, [ME], ''), finish(0, 'stop', ' me', 2)]) r.add(e);
    assert.deepEqual(r.body(), {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1700000000,
      model: 'tiny',
      choices: [{ index: 0, message: { role: 'assistant', content: ' little me' }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
    });
  });

  it('streams: a role chunk per choice first, content deltas, finish_reason on the last chunk, then usage and [DONE]', () => {
    const r = new ChatRenderer(options({ head: { ...head, id: 'chatcmpl-1' }, includeUsage: true }));
    const pre = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"tiny","choices":[';
    assert.equal(
      sseText(r, [tokens(0, [LITTLE], ' little'), tokens(0, [ME], ''), finish(0, 'stop', ' me', 2)], true),
      `data: ${pre}{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
        `data: ${pre}{"index":0,"delta":{"content":" little"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n` +
        `data: ${pre}{"index":0,"delta":{"content":" me"},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n` +
        `data: ${pre}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}\n\n` +
        'data: [DONE]\n\n',
    );
    // With nothing left to show the finish chunk's delta is empty.
    const s = new ChatRenderer(options());
    assert.deepEqual((s.chunks(finish(0, 'length', '', 0))[0] as { choices: unknown[] }).choices[0], { index: 0, delta: {}, logprobs: null, finish_reason: 'length' });
  });

  it('gives logprobs as content entries with bytes, the true bytes of a token that is half a character', () => {
    const lps: TokenLogprob[] = [
      { id: E1, logprob: -0.1, top: [{ id: E1, logprob: -0.1 }, { id: LITTLE, logprob: -3 }] },
      { id: E2, logprob: -0.2, top: [{ id: E2, logprob: -0.2 }, { id: ME, logprob: -4 }] },
    ];
    assert.deepEqual(chatLogprobs(lps, strings), [
      { token: '\ufffd', logprob: -0.1, bytes: [0xc3], top_logprobs: [{ token: '\ufffd', logprob: -0.1, bytes: [0xc3] }, { token: ' little', logprob: -3, bytes: [32, 108, 105, 116, 116, 108, 101] }] },
      { token: '\ufffd', logprob: -0.2, bytes: [0xa9], top_logprobs: [{ token: '\ufffd', logprob: -0.2, bytes: [0xa9] }, { token: ' me', logprob: -4, bytes: [32, 109, 101] }] },
    ]);
    const r = new ChatRenderer(options({ logprobs: true }));
    for (const e of [tokens(0, [E1], '', [lps[0]!]), tokens(0, [E2], 'é', [lps[1]!]), finish(0, 'stop', '', 2)]) r.add(e);
    const choice = (r.body() as { choices: { message: { content: string }; logprobs: { content: { bytes: number[] }[] } }[] }).choices[0]!;
    assert.equal(choice.message.content, 'é');
    assert.equal(Buffer.from(choice.logprobs.content.flatMap((c) => c.bytes)).toString('utf8'), 'é');
    // Streamed, the held-back token still sends its logprobs (with empty content).
    const s = new ChatRenderer(options({ logprobs: true }));
    const first = s.chunks(tokens(0, [E1], '', [lps[0]!]))[0] as { choices: { delta: object; logprobs: { content: unknown[] } }[] };
    assert.deepEqual(first.choices[0]!.delta, { content: '' });
    assert.equal(first.choices[0]!.logprobs.content.length, 1);
  });
});

/** An engine that plays fixed events per request (by prompt's first id), honouring the abort signal. */
function scripted(script: (req: GenerationRequest) => EngineEvent[], seen: AbortSignal[] = []): EngineHandle {
  return {
    modelName: 'scripted',
    maxContext: 64,
    eosTokenIds: [],
    async *generate(req, signal) {
      if (signal) seen.push(signal);
      for (const ev of script(req)) {
        await new Promise((r) => setTimeout(r, 1));
        if (signal?.aborted) return;
        yield ev;
      }
    },
    stats: () => ({ running: 0, waiting: 0, kvBlocksUsed: 0, kvBlocksTotal: 1, promptTokens: 0, generatedTokens: 0, steps: 0, preemptions: 0 }),
    drain: async () => {},
    close: async () => {},
  };
}

const request = (id: string, prompt: number[], n: number): GenerationRequest => ({ id, prompt, params: { ...DEFAULT_PARAMS, n } });
const ev = {
  tokens: (requestId: string, index: number, text: string): EngineEvent => ({ type: 'tokens', requestId, index, ids: [5], text }),
  finish: (requestId: string, index: number, reason: 'stop' | 'length' | 'abort'): EngineEvent => ({ type: 'finish', requestId, index, reason, text: '', promptTokens: 1, completionTokens: 1 }),
};

async function collect(it: AsyncIterable<ChoiceEvent>): Promise<ChoiceEvent[]> {
  const out: ChoiceEvent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

describe('the choice stream of several prompts', () => {
  it('numbers choice i of prompt p as p * n + i', async () => {
    const engine = scripted((req) => [0, 1].flatMap((i) => [ev.tokens(req.id, i, `${req.id}/${i}`), ev.finish(req.id, i, 'length')]));
    const got = await collect(generateChoices(engine, [request('a', [1], 2), request('b', [2], 2)], new AbortController().signal));
    const texts = new Map(got.filter((e) => e.type === 'tokens').map((e) => [e.index, e.text]));
    assert.deepEqual([...texts.entries()].sort((x, y) => x[0] - y[0]), [[0, 'a/0'], [1, 'a/1'], [2, 'b/0'], [3, 'b/1']]);
    assert.equal(got.filter((e) => e.type === 'finish').length, 4);
  });

  it('fails on an engine error event, and on an abort the client did not ask for', async () => {
    const failing = scripted((req) => [ev.tokens(req.id, 0, 'x'), { type: 'error', requestId: req.id, message: 'out of blocks' }]);
    await assert.rejects(collect(generateChoices(failing, [request('a', [1], 1)], new AbortController().signal)), (e: unknown) => e instanceof GenerationError && /out of blocks/.test(e.message));
    const closing = scripted((req) => [ev.finish(req.id, 0, 'abort')]);
    await assert.rejects(collect(generateChoices(closing, [request('a', [1], 1)], new AbortController().signal)), /shutting down/);
  });

  it('ends at once when the client goes away, aborting every engine request', async () => {
    const seen: AbortSignal[] = [];
    const slow = scripted((req) => Array.from({ length: 50 }, () => ev.tokens(req.id, 0, 'x')), seen);
    const client = new AbortController();
    const got: ChoiceEvent[] = [];
    for await (const e of generateChoices(slow, [request('a', [1], 1), request('b', [2], 1)], client.signal)) {
      got.push(e);
      if (got.length === 3) client.abort();
    }
    assert.equal(got.length, 3);
    assert.equal(seen.length, 2);
    assert.ok(seen.every((s) => s.aborted));
  });

  it('aborts the engine requests when the reader leaves early', async () => {
    const seen: AbortSignal[] = [];
    const slow = scripted((req) => Array.from({ length: 50 }, () => ev.tokens(req.id, 0, 'x')), seen);
    for await (const e of generateChoices(slow, [request('a', [1], 1)], new AbortController().signal)) {
      assert.equal(e.type, 'tokens');
      break;
    }
    assert.ok(seen[0]!.aborted);
  });
});
