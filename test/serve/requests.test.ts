/**
 * Request validation and planning, without HTTP: every honoured OpenAI / vLLM parameter lands in
 * SamplingParams as documented (OpenAI's defaults when absent or null), every refused one is a
 * 400 naming it, bad values name the field at fault (nested fields by path), prompts of every form
 * become the right token ids, and a prompt that cannot fit the context is refused with both numbers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PARAMS } from '../../src/infer/types.js';
import { ApiError } from '../../src/serve/errors.js';
import { planChat, planCompletion } from '../../src/serve/requests.js';
import { chatRequestSchema, completionRequestSchema, parseBody, refuseUnsupportedChat, refuseUnsupportedCompletion } from '../../src/serve/schemas.js';
import { smallTokenizer } from './fixtures.js';

const tok = smallTokenizer();
const ctx = { tokenizer: tok, maxContext: 128 };
const eos = tok.eosId!;

function completion(body: Record<string, unknown>) {
  const r = parseBody(completionRequestSchema, body);
  refuseUnsupportedCompletion(r);
  return planCompletion(r, ctx);
}

function chat(body: Record<string, unknown>) {
  const r = parseBody(chatRequestSchema, { messages: [{ role: 'user', content: 'Hi' }], ...body });
  refuseUnsupportedChat(r);
  return planChat(r, ctx);
}

/** `f` throws a 400 ApiError naming `param`, with a message matching `message`. */
function refused(f: () => unknown, param: string | null, message?: RegExp, code?: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.type, 'invalid_request_error');
    assert.equal(e.param, param, e.message);
    if (message) assert.match(e.message, message);
    if (code) assert.equal(e.code, code);
    return true;
  });
}

describe('completions: mapping to SamplingParams', () => {
  it("uses OpenAI's defaults when nothing is given (max_tokens 16) and stops at the tokenizer's eos", () => {
    const p = completion({ prompt: 'Call me Ishmael.' });
    assert.deepEqual(p.params, { ...DEFAULT_PARAMS, maxTokens: 16, stopTokenIds: [eos] });
  });

  it('treats null as not given', () => {
    const nulls = Object.fromEntries(['max_tokens', 'temperature', 'top_p', 'n', 'stream', 'stop', 'seed', 'logprobs', 'top_k', 'echo', 'suffix', 'logit_bias', 'best_of', 'user'].map((k) => [k, null]));
    assert.deepEqual(completion({ prompt: 'Call me', ...nulls }).params, completion({ prompt: 'Call me' }).params);
  });

  it('maps every honoured parameter', () => {
    const p = completion({
      prompt: 'Call me',
      max_tokens: 7,
      temperature: 0.3,
      top_p: 0.9,
      n: 3,
      stop: ['\n', 'Ahab'],
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      seed: 42,
      logprobs: 3,
      top_k: 5,
      min_p: 0.05,
      repetition_penalty: 1.1,
      stop_token_ids: [7, 9],
      best_of: 3,
      user: 'ignored',
    }).params;
    assert.deepEqual(p, {
      temperature: 0.3,
      topP: 0.9,
      topK: 5,
      minP: 0.05,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      repetitionPenalty: 1.1,
      seed: 42,
      maxTokens: 7,
      stop: ['\n', 'Ahab'],
      stopTokenIds: [7, 9, eos],
      ignoreEos: false,
      logprobs: true,
      topLogprobs: 3,
      n: 3,
    });
  });

  it("reads vLLM's top_k -1 as all tokens, a single stop string as a list, logprobs 0 as the chosen token only, ignore_eos as no eos stop", () => {
    const p = completion({ prompt: 'Call me', top_k: -1, stop: 'Ahab', logprobs: 0, ignore_eos: true }).params;
    assert.equal(p.topK, 0);
    assert.deepEqual(p.stop, ['Ahab']);
    assert.equal(p.logprobs, true);
    assert.equal(p.topLogprobs, 0);
    assert.equal(p.ignoreEos, true);
    assert.deepEqual(p.stopTokenIds, []);
  });

  it('ignores fields it does not know, as OpenAI clients send them', () => {
    assert.deepEqual(completion({ prompt: 'Call me', store: true, metadata: { a: 1 }, frobnicate: 'x' }).params, completion({ prompt: 'Call me' }).params);
  });

  it('accepts the trivial values of refused parameters', () => {
    assert.doesNotThrow(() => completion({ prompt: 'x', logit_bias: {}, suffix: '', best_of: 2, n: 2 }));
  });
});

describe('completions: prompts', () => {
  it('encodes a string with bos first, as the model reads prompts', () => {
    const p = completion({ prompt: 'Call me Ishmael.' });
    assert.deepEqual(p.prompts, [{ ids: tok.encodePrompt('Call me Ishmael.'), text: 'Call me Ishmael.' }]);
    assert.equal(p.prompts[0]!.ids[0], tok.bosId);
  });

  it('makes one engine request per prompt of a list of strings, and of a list of id lists', () => {
    assert.deepEqual(completion({ prompt: ['Call me', 'Ishmael'] }).prompts.map((p) => p.ids), [tok.encodePrompt('Call me'), tok.encodePrompt('Ishmael')]);
    const ids = tok.encode('Call me', { addSpecialTokens: false });
    assert.deepEqual(completion({ prompt: ids }).prompts, [{ ids, text: 'Call me' }]);
    assert.deepEqual(completion({ prompt: [ids, [5, 6]] }).prompts.map((p) => p.ids), [ids, [5, 6]]);
  });

  it('refuses ids outside the vocabulary, naming the position', () => {
    refused(() => completion({ prompt: [[1, 2], [3, tok.vocabSize]] }), 'prompt[1][1]', new RegExp(`token id ${tok.vocabSize} is outside the vocabulary`));
    refused(() => completion({ prompt: 'x', stop_token_ids: [1, 99999] }), 'stop_token_ids[1]');
  });

  it('refuses prompts of the wrong shape', () => {
    refused(() => completion({ prompt: 5 }), 'prompt', /a string, a list of strings, a list of token ids/);
    refused(() => completion({ prompt: [] }), 'prompt');
    refused(() => completion({}), 'prompt');
    refused(() => completion({ prompt: [[1], []] }), 'prompt[1]');
    refused(() => completion({ prompt: [1, -2] }), 'prompt[1]');
  });
});

describe('the context limit', () => {
  it('refuses prompt + max_tokens beyond the context, naming both numbers', () => {
    const n = tok.encodePrompt('Call me Ishmael.').length;
    refused(() => completion({ prompt: 'Call me Ishmael.', max_tokens: 128 }), 'max_tokens', new RegExp(`maximum context length is 128 tokens.*${n + 128} tokens \\(${n} in the prompt, 128 in the completion\\)`), 'context_length_exceeded');
    assert.equal(completion({ prompt: 'Call me Ishmael.', max_tokens: 128 - n }).params.maxTokens, 128 - n);
  });

  it('refuses a prompt that fills the context, and cuts the default budget to what is left', () => {
    refused(() => completion({ prompt: Array.from({ length: 128 }, () => 5) }), 'prompt', /the prompt has 128 tokens/);
    refused(() => completion({ prompt: [[5], Array.from({ length: 130 }, () => 5)] }), 'prompt[1]', /the prompt has 130 tokens/);
    assert.equal(completion({ prompt: Array.from({ length: 120 }, () => 5) }).params.maxTokens, 8);
    refused(() => chat({ max_completion_tokens: 200 }), 'max_completion_tokens', /maximum context length is 128/);
  });

  it('gives chat the rest of the context by default', () => {
    const p = chat({});
    assert.equal(p.params.maxTokens, 128 - p.prompts[0]!.ids.length);
  });
});

describe('chat: mapping', () => {
  it('prefers max_completion_tokens to max_tokens, and maps logprobs + top_logprobs', () => {
    const p = chat({ max_tokens: 5, max_completion_tokens: 9, logprobs: true, top_logprobs: 4 }).params;
    assert.equal(p.maxTokens, 9);
    assert.equal(p.logprobs, true);
    assert.equal(p.topLogprobs, 4);
    assert.equal(chat({ max_tokens: 5 }).params.maxTokens, 5);
    assert.equal(chat({ logprobs: true }).params.topLogprobs, 0);
  });

  it("renders with the default template (this tokenizer has none), whose end of turn stops generation", () => {
    const p = chat({});
    assert.equal(p.prompts[0]!.text, '<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    assert.deepEqual(p.prompts[0]!.ids, tok.encode(p.prompts[0]!.text, { allowSpecial: true, addSpecialTokens: false }));
    assert.equal(p.prompts[0]!.ids[0], tok.bosId);
    assert.deepEqual(p.params.stop, ['<|im_end|>']);
    assert.deepEqual(chat({ stop: 'Ahab' }).params.stop, ['Ahab', '<|im_end|>']);
    assert.deepEqual(chat({ ignore_eos: true }).params.stop, []);
    assert.equal(chat({ add_generation_prompt: false }).prompts[0]!.text, '<s><|im_start|>user\nHi<|im_end|>\n');
  });

  it('refuses chat_template_kwargs that would replace the messages', () => {
    refused(() => chat({ chat_template_kwargs: { messages: [] } }), 'chat_template_kwargs.messages');
    assert.doesNotThrow(() => chat({ chat_template_kwargs: { enable_thinking: false } }));
  });

  it('accepts the trivial values of refused parameters', () => {
    assert.doesNotThrow(() => chat({ tools: [], tool_choice: 'none', response_format: { type: 'text' }, logit_bias: null, modalities: ['text'], parallel_tool_calls: false }));
  });
});

describe('refused parameters and bad values: 400 naming the parameter', () => {
  const completionCases: [Record<string, unknown>, string, RegExp?][] = [
    [{ logit_bias: { '50256': -100 } }, 'logit_bias', /not supported/],
    [{ suffix: 'end' }, 'suffix', /not supported/],
    [{ best_of: 3 }, 'best_of', /only best_of = n/],
    [{ best_of: 1, n: 2 }, 'best_of', /at least 'n'/],
    [{ echo: true, logprobs: 1 }, 'echo', /prompt's log-probabilities/],
    [{ stream_options: { include_usage: true } }, 'stream_options', /only allowed when 'stream' is true/],
    [{ temperature: 2.5 }, 'temperature'],
    [{ temperature: 'hot' }, 'temperature', /expected number/],
    [{ top_p: 1.5 }, 'top_p'],
    [{ n: 0 }, 'n'],
    [{ n: 1.5 }, 'n'],
    [{ max_tokens: 0 }, 'max_tokens'],
    [{ logprobs: 6 }, 'logprobs'],
    [{ presence_penalty: 3 }, 'presence_penalty'],
    [{ frequency_penalty: -3 }, 'frequency_penalty'],
    [{ seed: 1.5 }, 'seed'],
    [{ stop: '' }, 'stop'],
    [{ stop: ['a', ''] }, 'stop[1]', /must not be empty/],
    [{ top_k: -2 }, 'top_k'],
    [{ min_p: 2 }, 'min_p'],
    [{ repetition_penalty: 0 }, 'repetition_penalty'],
    [{ stream: 'yes' }, 'stream'],
    [{ model: 7 }, 'model'],
  ];
  for (const [body, param, message] of completionCases) {
    it(`completions ${JSON.stringify(body)}`, () => refused(() => completion({ prompt: 'x', ...body }), param, message));
  }

  const chatCases: [Record<string, unknown>, string, RegExp?][] = [
    [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', /not supported/],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ functions: [{ name: 'f' }] }, 'functions'],
    [{ function_call: { name: 'f' } }, 'function_call'],
    [{ response_format: { type: 'json_object' } }, 'response_format', /only \{type: 'text'\}/],
    [{ audio: { voice: 'alloy' } }, 'audio'],
    [{ modalities: ['text', 'audio'] }, 'modalities'],
    [{ prediction: { type: 'content', content: 'x' } }, 'prediction'],
    [{ web_search_options: {} }, 'web_search_options'],
    [{ top_logprobs: 2 }, 'top_logprobs', /needs 'logprobs': true/],
    [{ logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
    [{ logprobs: 3 }, 'logprobs'],
    [{ messages: [] }, 'messages'],
    [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 'a' }, { role: 'user', content: [{ type: 'text', text: 'b' }, { type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[1].content[1].type', /only content parts of type 'text'/],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{ chat_template_kwargs: 'x' }, 'chat_template_kwargs'],
  ];
  for (const [body, param, message] of chatCases) {
    it(`chat ${JSON.stringify(body)}`, () => refused(() => chat(body), param, message));
  }

  it('refuses a body that is not a JSON object', () => {
    for (const body of [null, [], 'x', 3]) refused(() => parseBody(completionRequestSchema, body), null, /must be a JSON object/);
  });
});
