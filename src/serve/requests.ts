/**
 * What a validated request asks the engine for: the prompts as token ids and one SamplingParams
 * (OpenAI defaults: temperature 1, top_p 1; max_tokens 16 for completions, as OpenAI's legacy
 * endpoint, and the rest of the context for chat). Requests that cannot fit the model's context
 * are refused here, naming both numbers.
 */
import { ChatTemplateError, type Tokenizer } from '../io/tokenizer/index.js';
import { DEFAULT_PARAMS, type SamplingParams } from '../infer/types.js';
import { addEndOfTurnStop, renderChatPrompt } from './chat-prompt.js';
import { invalidRequest } from './errors.js';
import type { ChatRequest, CompletionRequest } from './schemas.js';

/** What the server knows of the model when it plans a request. */
export interface ModelContext {
  tokenizer: Tokenizer;
  /** Prompt + generated tokens must fit (the engine's maxContext). */
  maxContext: number;
}

export interface PromptPlan {
  ids: number[];
  /** The prompt as text (what `echo` prepends). */
  text: string;
}

/** The engine requests one HTTP request becomes: one per prompt, each with `params.n` choices. */
export interface GenerationPlan {
  prompts: PromptPlan[];
  params: SamplingParams;
}

/** OpenAI's legacy completions default. */
export const COMPLETION_DEFAULT_MAX_TOKENS = 16;

/** The fields both endpoints map the same way. */
function baseParams(r: CompletionRequest | ChatRequest, tok: Tokenizer): SamplingParams {
  const stop = r.stop == null ? [] : typeof r.stop === 'string' ? [r.stop] : [...r.stop];
  const stopTokenIds = [...(r.stop_token_ids ?? [])];
  stopTokenIds.forEach((id, i) => {
    if (id >= tok.vocabSize) throw invalidRequest(`Invalid value for 'stop_token_ids[${i}]': ${id} is outside the vocabulary (${tok.vocabSize} tokens)`, `stop_token_ids[${i}]`);
  });
  // The tokenizer's eos ends a reply too (chat models name their end-of-turn token there), as vLLM does.
  const ignoreEos = r.ignore_eos ?? false;
  if (!ignoreEos && tok.eosId !== undefined && !stopTokenIds.includes(tok.eosId)) stopTokenIds.push(tok.eosId);
  return {
    ...DEFAULT_PARAMS,
    temperature: r.temperature ?? DEFAULT_PARAMS.temperature,
    topP: r.top_p ?? DEFAULT_PARAMS.topP,
    // vLLM spells "all tokens" -1; the engine spells it 0.
    topK: r.top_k == null || r.top_k === -1 ? 0 : r.top_k,
    minP: r.min_p ?? DEFAULT_PARAMS.minP,
    presencePenalty: r.presence_penalty ?? DEFAULT_PARAMS.presencePenalty,
    frequencyPenalty: r.frequency_penalty ?? DEFAULT_PARAMS.frequencyPenalty,
    repetitionPenalty: r.repetition_penalty ?? DEFAULT_PARAMS.repetitionPenalty,
    seed: r.seed ?? null,
    stop,
    stopTokenIds,
    ignoreEos,
    n: r.n ?? 1,
  };
}

/**
 * The completion budget of a prompt: `asked` when prompt + asked fits the context, else a 400
 * naming both numbers; without `asked`, `fallback` cut to what is left of the context.
 */
export function completionBudget(
  promptTokens: number,
  maxContext: number,
  asked: { value: number | null | undefined; param: string },
  fallback: number,
  promptParam: string,
): number {
  if (promptTokens >= maxContext) {
    throw invalidRequest(
      `This model's maximum context length is ${maxContext} tokens. However, the prompt has ${promptTokens} tokens, which leaves no room for the completion. Please shorten the prompt.`,
      promptParam,
      'context_length_exceeded',
    );
  }
  if (asked.value == null) return Math.min(fallback, maxContext - promptTokens);
  if (promptTokens + asked.value > maxContext) {
    throw invalidRequest(
      `This model's maximum context length is ${maxContext} tokens. However, you requested ${promptTokens + asked.value} tokens (${promptTokens} in the prompt, ${asked.value} in the completion). Please reduce the prompt or the completion length.`,
      asked.param,
      'context_length_exceeded',
    );
  }
  return asked.value;
}

function completionPrompts(r: CompletionRequest, tok: Tokenizer): PromptPlan[] {
  const p = r.prompt;
  const checkIds = (ids: number[], param: string): PromptPlan => {
    ids.forEach((id, i) => {
      if (id >= tok.vocabSize) throw invalidRequest(`Invalid value for '${param}[${i}]': token id ${id} is outside the vocabulary (${tok.vocabSize} tokens)`, `${param}[${i}]`);
    });
    return { ids, text: tok.decode(ids) };
  };
  const fromText = (text: string, param: string): PromptPlan => {
    const ids = tok.encodePrompt(text);
    if (ids.length === 0) throw invalidRequest(`'${param}' is empty`, param);
    return { ids, text };
  };
  if (typeof p === 'string') return [fromText(p, 'prompt')];
  if (p.every((x): x is string => typeof x === 'string')) return p.map((s, i) => fromText(s, `prompt[${i}]`));
  if (p.every((x): x is number => typeof x === 'number')) return [checkIds(p, 'prompt')];
  return (p as number[][]).map((ids, i) => checkIds(ids, `prompt[${i}]`));
}

/** A /v1/completions request as engine requests (one per prompt). */
export function planCompletion(r: CompletionRequest, m: ModelContext): GenerationPlan {
  const prompts = completionPrompts(r, m.tokenizer);
  const params = baseParams(r, m.tokenizer);
  const many = prompts.length > 1;
  // One budget for all prompts: the one asked for, checked against each prompt.
  let maxTokens = Infinity;
  prompts.forEach((p, i) => {
    const b = completionBudget(p.ids.length, m.maxContext, { value: r.max_tokens, param: 'max_tokens' }, COMPLETION_DEFAULT_MAX_TOKENS, many ? `prompt[${i}]` : 'prompt');
    maxTokens = Math.min(maxTokens, b);
  });
  params.maxTokens = maxTokens;
  params.logprobs = r.logprobs != null;
  params.topLogprobs = r.logprobs ?? 0;
  return { prompts, params };
}

/** A /v1/chat/completions request: the conversation rendered by the chat template, then encoded. */
export function planChat(r: ChatRequest, m: ModelContext): GenerationPlan {
  const tok = m.tokenizer;
  const variables = { ...(r.chat_template_kwargs ?? {}) };
  for (const reserved of ['messages', 'add_generation_prompt']) {
    if (reserved in variables) throw invalidRequest(`'chat_template_kwargs.${reserved}' would replace the request's own '${reserved}': set it there`, `chat_template_kwargs.${reserved}`);
  }
  let prompt;
  try {
    prompt = renderChatPrompt(tok, r.messages, { addGenerationPrompt: r.add_generation_prompt ?? true, variables });
  } catch (e) {
    // A template raising (e.g. "Conversation roles must alternate") is about these messages.
    if (e instanceof ChatTemplateError) throw invalidRequest(`The chat template refused the messages: ${e.message}`, 'messages');
    throw e;
  }
  // Encoded as transformers' apply_chat_template(tokenize=True) does: the template writes the special tokens.
  const ids = tok.encode(prompt.text, { allowSpecial: true, addSpecialTokens: false });
  if (ids.length === 0) throw invalidRequest('The messages render to an empty prompt', 'messages');
  const params = baseParams(r, tok);
  if (!params.ignoreEos) addEndOfTurnStop(tok, prompt, params);
  const asked = r.max_completion_tokens != null ? { value: r.max_completion_tokens, param: 'max_completion_tokens' } : { value: r.max_tokens, param: 'max_tokens' };
  params.maxTokens = completionBudget(ids.length, m.maxContext, asked, Infinity, 'messages');
  params.logprobs = r.logprobs ?? false;
  params.topLogprobs = r.logprobs ? (r.top_logprobs ?? 0) : 0;
  return { prompts: [{ ids, text: prompt.text }], params };
}
