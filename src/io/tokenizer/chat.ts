/**
 * Chat templates: the Jinja `chat_template` of tokenizer_config.json rendered with
 * @huggingface/jinja and the variables transformers' `apply_chat_template` passes: `messages`,
 * `add_generation_prompt`, `tools` and `documents` when given, the special tokens by role
 * (`bos_token`, `eos_token`, `pad_token`, `unk_token`), and any extra keyword a template reads
 * (Qwen3's `enable_thinking`, for instance). A file with named templates picks `tool_use` when
 * tools are given and it has one, else `default`, unless a name is asked for.
 */
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from './tokenizer.js';

export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

/** One message of a conversation (OpenAI / transformers shape; extra fields reach the template). */
export interface ChatMessage {
  role: string;
  content?: string | null | readonly Record<string, unknown>[];
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** End with the opening of an assistant turn, so the model writes the reply; default false. */
  addGenerationPrompt?: boolean;
  /** Tool (function) definitions, passed as `tools` (JSON schema objects, as transformers). */
  tools?: readonly unknown[];
  /** Retrieval documents, passed as `documents`. */
  documents?: readonly unknown[];
  /** Which named template to use (files with several); default tool_use with tools, else default. */
  templateName?: string;
  /** Use this template instead of the tokenizer's. */
  template?: string;
  /** More variables for the template, e.g. { enable_thinking: false }. */
  variables?: Record<string, unknown>;
}

const compiled = new Map<string, Template>();
const MAX_COMPILED = 32;

function compile(source: string, what: string): Template {
  let t = compiled.get(source);
  if (t) return t;
  try {
    t = new Template(source);
  } catch (e) {
    throw new ChatTemplateError(`${what}: the template does not parse: ${(e as Error).message}`);
  }
  if (compiled.size >= MAX_COMPILED) compiled.delete(compiled.keys().next().value!);
  compiled.set(source, t);
  return t;
}

/** The template source a tokenizer uses for these options. */
export function selectChatTemplate(tok: Tokenizer, opts: ChatTemplateOptions = {}): string {
  if (opts.template !== undefined) return opts.template;
  const where = tok.file ?? 'tokenizer';
  const ct = tok.chatTemplate;
  if (ct === undefined) {
    throw new ChatTemplateError(`${where}: the tokenizer has no chat_template (tokenizer_config.json); base models usually have none: pass a template`);
  }
  if (typeof ct === 'string') {
    if (opts.templateName !== undefined && opts.templateName !== 'default') {
      throw new ChatTemplateError(`${where}: no chat template named ${JSON.stringify(opts.templateName)} (the file has one unnamed template)`);
    }
    return ct;
  }
  const names = Object.keys(ct);
  const name = opts.templateName ?? (opts.tools?.length && 'tool_use' in ct ? 'tool_use' : 'default');
  const t = ct[name];
  if (t === undefined) throw new ChatTemplateError(`${where}: no chat template named ${JSON.stringify(name)} (the file has ${names.map((n) => JSON.stringify(n)).join(', ')})`);
  return t;
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new ChatTemplateError('messages: expected an array of {role, content}');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null) throw new ChatTemplateError(`messages[${i}]: expected an object with a role`);
    if (typeof m.role !== 'string' || m.role === '') throw new ChatTemplateError(`messages[${i}].role: expected a non-empty string`);
    const c = m.content;
    if (c !== undefined && c !== null && typeof c !== 'string' && !Array.isArray(c)) {
      throw new ChatTemplateError(`messages[${i}].content: expected a string, null or a list of parts`);
    }
  });
}

/**
 * Render a conversation into the prompt text the model was trained on.
 * @example
 * ```ts
 * const text = applyChatTemplate(tok, [{ role: 'user', content: 'Hi!' }], { addGenerationPrompt: true });
 * const ids = tok.encode(text, { allowSpecial: true, addSpecialTokens: false });
 * ```
 */
export function applyChatTemplate(tok: Tokenizer, messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
  checkMessages(messages);
  const source = selectChatTemplate(tok, opts);
  const template = compile(source, tok.file ?? 'chat_template');
  const vars: Record<string, unknown> = {
    messages,
    add_generation_prompt: opts.addGenerationPrompt ?? false,
    ...(opts.tools !== undefined ? { tools: opts.tools } : {}),
    ...(opts.documents !== undefined ? { documents: opts.documents } : {}),
  };
  for (const role of ['bos', 'eos', 'pad', 'unk'] as const) {
    const t = tok.roles[role];
    if (t !== undefined) vars[`${role}_token`] = t;
  }
  Object.assign(vars, opts.variables);
  try {
    return template.render(vars);
  } catch (e) {
    throw new ChatTemplateError(`${tok.file ?? 'chat_template'}: rendering failed: ${(e as Error).message}`);
  }
}
