/**
 * Chat templates: the chat_template of the real Llama-3 and Qwen3 tokenizer_config.json files
 * rendered for fixed conversations, against strings checked by hand against the formats those
 * models document (Llama-3's header/eot blocks; Qwen3's ChatML with <think> handling and tool
 * calls), then tokenized as tokenizers.js tokenizes the same text.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { applyChatTemplate, ChatTemplateError, loadTokenizer, tokenizerFromJson, type ChatMessage, type Tokenizer } from '../../src/io/tokenizer/index.js';
import { lenmlDir } from './tokenizer-corpus.js';

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are a whaling historian.' },
  { role: 'user', content: 'Who is Ishmael?' },
  { role: 'assistant', content: 'The narrator of Moby-Dick.' },
  { role: 'user', content: 'And Ahab?' },
];

const WEATHER_TOOL = {
  type: 'function',
  function: { name: 'get_weather', description: 'Get weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
};

let llama3: Tokenizer;
let qwen3: Tokenizer;
before(async () => {
  llama3 = await loadTokenizer(lenmlDir('llama3'));
  qwen3 = await loadTokenizer(lenmlDir('qwen3'));
});

describe('Llama-3 chat template', () => {
  const expected =
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a whaling historian.<|eot_id|>' +
    '<|start_header_id|>user<|end_header_id|>\n\nWho is Ishmael?<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\nThe narrator of Moby-Dick.<|eot_id|>' +
    '<|start_header_id|>user<|end_header_id|>\n\nAnd Ahab?<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\n';

  it('renders the conversation with bos, header blocks and an open assistant turn', () => {
    assert.equal(applyChatTemplate(llama3, CONVERSATION, { addGenerationPrompt: true }), expected);
  });

  it('tokenizes the rendered text as tokenizers.js does, control tokens as single ids', async () => {
    const dir = lenmlDir('llama3');
    const hf = new HfTokenizer(JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')));
    const ids = llama3.encode(expected, { allowSpecial: true, addSpecialTokens: false });
    assert.deepEqual(ids, hf.encode(expected, { add_special_tokens: false }).ids);
    assert.equal(ids[0], llama3.bosId);
    assert.equal(ids.filter((id) => id === llama3.tokenToId('<|eot_id|>')).length, 4);
  });
});

describe('Qwen3 chat template', () => {
  it('renders ChatML, with the empty think block when thinking is off', () => {
    const base =
      '<|im_start|>system\nYou are a whaling historian.<|im_end|>\n' +
      '<|im_start|>user\nWho is Ishmael?<|im_end|>\n' +
      '<|im_start|>assistant\nThe narrator of Moby-Dick.<|im_end|>\n' +
      '<|im_start|>user\nAnd Ahab?<|im_end|>\n' +
      '<|im_start|>assistant\n';
    assert.equal(applyChatTemplate(qwen3, CONVERSATION, { addGenerationPrompt: true }), base);
    assert.equal(applyChatTemplate(qwen3, CONVERSATION, { addGenerationPrompt: true, variables: { enable_thinking: false } }), `${base}<think>\n\n</think>\n\n`);
    assert.equal(applyChatTemplate(qwen3, CONVERSATION, { addGenerationPrompt: false }), base.slice(0, -'<|im_start|>assistant\n'.length));
  });

  it('drops the reasoning of earlier assistant turns', () => {
    const conv: ChatMessage[] = [
      { role: 'user', content: 'Who is Ishmael?' },
      { role: 'assistant', content: '<think>\nRecall the novel.\n</think>\n\nThe narrator.' },
      { role: 'user', content: 'And Ahab?' },
    ];
    assert.equal(
      applyChatTemplate(qwen3, conv, { addGenerationPrompt: true }),
      '<|im_start|>user\nWho is Ishmael?<|im_end|>\n<|im_start|>assistant\nThe narrator.<|im_end|>\n<|im_start|>user\nAnd Ahab?<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('puts tools in the system turn and renders tool calls and tool responses', () => {
    const withTools = applyChatTemplate(qwen3, [{ role: 'user', content: 'Weather?' }], { addGenerationPrompt: true, tools: [WEATHER_TOOL] });
    assert.equal(
      withTools,
      '<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
        'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
        '{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n' +
        '</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n',
    );
    const calls = applyChatTemplate(qwen3, [
      { role: 'user', content: 'Weather in Nantucket?' },
      { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Nantucket' } } }] },
      { role: 'tool', content: '{"sky": "grey"}' },
    ]);
    assert.equal(
      calls,
      '<|im_start|>user\nWeather in Nantucket?<|im_end|>\n' +
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Nantucket"}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n{"sky": "grey"}\n</tool_response><|im_end|>\n',
    );
  });
});

describe('chat template selection and errors', () => {
  function withTemplate(chatTemplate: unknown): Tokenizer {
    const json = { version: '1.0', model: { type: 'BPE', vocab: { a: 0, '<s>': 1, '</s>': 2 }, merges: [] }, pre_tokenizer: null, decoder: null };
    return tokenizerFromJson(json, 'tokenizer.json', { bos_token: '<s>', eos_token: '</s>', chat_template: chatTemplate });
  }

  it('passes bos_token / eos_token and add_generation_prompt', () => {
    const t = withTemplate('{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}');
    assert.equal(applyChatTemplate(t, [{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }), '<s>[user:hi]></s>');
  });

  it('picks named templates: tool_use with tools, default otherwise, or the one asked for', () => {
    const t = withTemplate([
      { name: 'default', template: 'D' },
      { name: 'tool_use', template: 'T{{ tools | length }}' },
      { name: 'rag', template: 'R{{ documents | length }}' },
    ]);
    assert.equal(applyChatTemplate(t, []), 'D');
    assert.equal(applyChatTemplate(t, [], { tools: [WEATHER_TOOL] }), 'T1');
    assert.equal(applyChatTemplate(t, [], { templateName: 'rag', documents: [{}, {}] }), 'R2');
    assert.throws(() => applyChatTemplate(t, [], { templateName: 'nope' }), /no chat template named "nope" \(the file has "default", "tool_use", "rag"\)/);
  });

  it('names what is wrong: no template, a template that does not parse, raise_exception, bad messages', () => {
    const none = tokenizerFromJson({ version: '1.0', model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }, 'tok.json', {});
    assert.throws(() => applyChatTemplate(none, []), (e: unknown) => e instanceof ChatTemplateError && /tok\.json: the tokenizer has no chat_template/.test(e.message));
    assert.throws(() => applyChatTemplate(withTemplate('{% for %}'), []), /the template does not parse/);
    assert.throws(() => applyChatTemplate(withTemplate("{{ raise_exception('roles must alternate') }}"), []), /rendering failed: .*roles must alternate/);
    assert.throws(() => applyChatTemplate(withTemplate('x'), [{ role: '' } as ChatMessage]), /messages\[0\]\.role: expected a non-empty string/);
    assert.throws(() => applyChatTemplate(withTemplate('x'), [{ role: 'user', content: 5 } as unknown as ChatMessage]), /messages\[0\]\.content/);
    assert.throws(() => withTemplate(42), /tokenizer_config\.json: chat_template: expected a string or a list/);
  });
});
