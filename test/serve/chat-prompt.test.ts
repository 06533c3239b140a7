/**
 * Chat prompts: the default (ChatML) template rendered for a known conversation, character for
 * character; the real Qwen3 tokenizer_config.json template rendered through the server's path
 * (content parts, the developer role, chat_template_kwargs) against the text Qwen documents; and a
 * template that raises answered as a 400 about the messages.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChatTemplateError, loadTokenizer, tokenizerFromJson, tokenizerToJson } from '../../src/io/tokenizer/index.js';
import { DEFAULT_CHAT_TEMPLATE, renderChatPrompt } from '../../src/serve/chat-prompt.js';
import { ApiError } from '../../src/serve/errors.js';
import { createServer } from '../../src/serve/server.js';
import { planChat } from '../../src/serve/requests.js';
import { chatRequestSchema, parseBody, type ChatRequestMessage } from '../../src/serve/schemas.js';
import { lenmlDir } from '../io/tokenizer-corpus.js';
import { smallTokenizer } from './fixtures.js';

const CONVERSATION: ChatRequestMessage[] = [
  { role: 'system', content: 'You are a whaling historian.' },
  { role: 'user', content: 'Who is Ishmael?' },
  { role: 'assistant', content: 'The narrator of Moby-Dick.' },
  { role: 'user', content: [{ type: 'text', text: 'And Ahab?' }, { type: 'text', text: 'Briefly.' }] },
];

describe('the default chat template', () => {
  const tok = smallTokenizer();

  it('renders ChatML with the bos token first and an open assistant turn', () => {
    assert.equal(tok.chatTemplate, undefined);
    const { text, endOfTurn } = renderChatPrompt(tok, CONVERSATION, { addGenerationPrompt: true });
    assert.equal(
      text,
      '<s><|im_start|>system\nYou are a whaling historian.<|im_end|>\n' +
        '<|im_start|>user\nWho is Ishmael?<|im_end|>\n' +
        '<|im_start|>assistant\nThe narrator of Moby-Dick.<|im_end|>\n' +
        '<|im_start|>user\nAnd Ahab?\nBriefly.<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
    assert.equal(endOfTurn, '<|im_end|>');
  });

  it('leaves out the bos token when the tokenizer has none, and the open turn when not asked', () => {
    const json = tokenizerToJson(tok) as { added_tokens: { content: string }[] };
    const noBos = tokenizerFromJson(json, 'tokenizer.json', { eos_token: '</s>' });
    assert.equal(noBos.roles.bos, undefined);
    assert.equal(renderChatPrompt(noBos, [{ role: 'developer', content: 'Be brief.' }], { addGenerationPrompt: false }).text, '<|im_start|>system\nBe brief.<|im_end|>\n');
    assert.ok(DEFAULT_CHAT_TEMPLATE.includes('bos_token is defined'));
  });

  it('answers a template that raises with a 400 about the messages', () => {
    const strict = tokenizerFromJson(tokenizerToJson(tok), 'tokenizer.json', {
      bos_token: '<s>',
      eos_token: '</s>',
      chat_template: "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user turn') }}{% endif %}{{ messages[0].content }}",
    });
    const r = parseBody(chatRequestSchema, { messages: [{ role: 'assistant', content: 'Hi' }] });
    assert.throws(
      () => planChat(r, { tokenizer: strict, maxContext: 128 }),
      (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === 'messages' && /Conversations must start with a user turn/.test(e.message),
    );
  });

  it('refuses to start a server on a template that does not parse', () => {
    const broken = tokenizerFromJson(tokenizerToJson(tok), 'tokenizer.json', { eos_token: '</s>', chat_template: '{% for m in messages %}{{ m.content }}' });
    assert.throws(
      () => createServer({ engine: new Promise(() => {}), tokenizer: broken, modelName: 'broken' }),
      (e: unknown) => e instanceof ChatTemplateError && /chat_template "default" does not parse/.test(e.message),
    );
  });
});

describe("a real model's chat template: Qwen3", () => {
  it('renders the conversation as Qwen3 documents ChatML, parts joined, developer as system', async () => {
    const qwen3 = await loadTokenizer(lenmlDir('qwen3'));
    const conv: ChatRequestMessage[] = [{ ...CONVERSATION[0]!, role: 'developer' }, ...CONVERSATION.slice(1)];
    const base =
      '<|im_start|>system\nYou are a whaling historian.<|im_end|>\n' +
      '<|im_start|>user\nWho is Ishmael?<|im_end|>\n' +
      '<|im_start|>assistant\nThe narrator of Moby-Dick.<|im_end|>\n' +
      '<|im_start|>user\nAnd Ahab?\nBriefly.<|im_end|>\n' +
      '<|im_start|>assistant\n';
    const own = renderChatPrompt(qwen3, conv, { addGenerationPrompt: true });
    assert.deepEqual(own, { text: base });
    assert.equal(renderChatPrompt(qwen3, conv, { addGenerationPrompt: true, variables: { enable_thinking: false } }).text, `${base}<think>\n\n</think>\n\n`);
    // Through the server's planning: the control tokens become single ids, the eos (<|im_end|>) stops.
    const plan = planChat(parseBody(chatRequestSchema, { messages: conv, chat_template_kwargs: { enable_thinking: false } }), { tokenizer: qwen3, maxContext: 4096 });
    const ids = plan.prompts[0]!.ids;
    assert.equal(ids.filter((id) => id === qwen3.tokenToId('<|im_start|>')).length, 5);
    assert.deepEqual(plan.params.stopTokenIds, [qwen3.tokenToId('<|im_end|>')]);
    assert.deepEqual(plan.params.stop, []);
  });
});
