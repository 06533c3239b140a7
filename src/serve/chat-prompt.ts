/**
 * A chat request's messages as the prompt text the model reads: the tokenizer's own
 * `chat_template` (tokenizer_config.json), or DEFAULT_CHAT_TEMPLATE when the model has none.
 */
import { Template } from '@huggingface/jinja';
import { applyChatTemplate, ChatTemplateError, type ChatMessage, type Tokenizer } from '../io/tokenizer/index.js';
import { selectChatTemplate } from '../io/tokenizer/chat.js';
import type { ChatRequestMessage } from './schemas.js';

/**
 * ChatML (as Qwen and many fine-tunes use), with the tokenizer's bos token first when it has
 * one. A model without a chat_template was not trained on any chat format, so this is a
 * convention, not the model's own: it gives base models a readable transcript to continue.
 */
export const DEFAULT_CHAT_TEMPLATE =
  '{% if bos_token is defined %}{{ bos_token }}{% endif %}' +
  "{% for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The text that ends a turn in DEFAULT_CHAT_TEMPLATE: generation stops there. */
export const DEFAULT_END_OF_TURN = '<|im_end|>';

export interface ChatPrompt {
  text: string;
  /** Where a reply ends when the template is the default one (the model's own templates end turns with its eos). */
  endOfTurn?: string;
}

/**
 * Throw ChatTemplateError when the tokenizer's chat_template does not parse: a fault of the
 * model's files, to report at start rather than as an error on every chat request.
 */
export function checkChatTemplate(tok: Tokenizer): void {
  if (tok.chatTemplate === undefined) return;
  const names = typeof tok.chatTemplate === 'string' ? ['default'] : Object.keys(tok.chatTemplate);
  for (const name of names) {
    try {
      new Template(selectChatTemplate(tok, { templateName: name }));
    } catch (e) {
      throw new ChatTemplateError(`${tok.file ?? 'tokenizer_config.json'}: chat_template ${JSON.stringify(name)} does not parse: ${(e as Error).message}`);
    }
  }
}

/**
 * Messages as the template sees them: content parts joined into one string (with '\n', as
 * vLLM joins text parts), `developer` as `system` (OpenAI's newer name for it), absent fields left out.
 */
export function templateMessages(messages: readonly ChatRequestMessage[]): ChatMessage[] {
  return messages.map((m) => {
    const content = typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join('\n');
    const out: ChatMessage = { role: m.role === 'developer' ? 'system' : m.role, content };
    if (m.name != null) out.name = m.name;
    if (m.tool_call_id != null) out.tool_call_id = m.tool_call_id;
    if (m.tool_calls != null) out.tool_calls = m.tool_calls;
    return out;
  });
}

/**
 * @example
 * ```ts
 * const { text } = renderChatPrompt(tok, [{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 * const ids = tok.encode(text, { allowSpecial: true, addSpecialTokens: false });
 * ```
 */
export function renderChatPrompt(
  tok: Tokenizer,
  messages: readonly ChatRequestMessage[],
  opts: { addGenerationPrompt: boolean; variables?: Record<string, unknown> },
): ChatPrompt {
  const own = tok.chatTemplate !== undefined;
  const text = applyChatTemplate(tok, templateMessages(messages), {
    addGenerationPrompt: opts.addGenerationPrompt,
    variables: opts.variables,
    ...(own ? {} : { template: DEFAULT_CHAT_TEMPLATE }),
  });
  return own ? { text } : { text, endOfTurn: DEFAULT_END_OF_TURN };
}

/**
 * Make the default template's end of turn stop generation: as a token id when the vocabulary
 * has it as a special token, else as a stop string (the model's own templates end turns with its
 * eos, which stops already). Nothing when the prompt came from the model's own template.
 */
export function addEndOfTurnStop(tok: Tokenizer, prompt: ChatPrompt, params: { stop: string[]; stopTokenIds: number[] }): void {
  if (prompt.endOfTurn === undefined) return;
  const id = tok.tokenToId(prompt.endOfTurn);
  if (id !== undefined && tok.isSpecial(id)) params.stopTokenIds.push(id);
  else params.stop.push(prompt.endOfTurn);
}
