/**
 * The request bodies of /v1/completions and /v1/chat/completions, validated with zod. Every
 * OpenAI parameter is either honoured or refused with a 400 naming it (see `refuseUnsupported`);
 * vLLM's sampling extras are honoured; fields neither lists are ignored, as OpenAI clients send
 * fields a server may not know (docs/serving.md, "Parameters"). `null` means "not given"
 * everywhere, as in OpenAI's API.
 */
import { z } from 'zod';
import { invalidRequest, unsupportedParam } from './errors.js';

const tokenId = z.int().min(0);

/** Fields both endpoints share: OpenAI's sampling parameters and vLLM's extras. */
const sampling = {
  model: z.string().nullish(),
  max_tokens: z.int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  n: z.int().min(1).max(128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1, { error: 'stop strings must not be empty' }))]).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.int().nullish(),
  /** Ignored (OpenAI uses it for abuse monitoring). */
  user: z.string().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  // vLLM extras
  top_k: z.int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().positive().nullish(),
  ignore_eos: z.boolean().nullish(),
  stop_token_ids: z.array(tokenId).nullish(),
};

export const completionRequestSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(tokenId).min(1), z.array(z.array(tokenId).min(1)).min(1)], {
    error: 'expected a string, a list of strings, a list of token ids or a list of lists of token ids',
  }),
  suffix: z.string().nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.int().min(0).max(5).nullish(),
  best_of: z.int().min(1).nullish(),
});

const contentPart = z.object({
  type: z.literal('text', { error: "only content parts of type 'text' are supported" }),
  text: z.string(),
});

const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(contentPart)]).nullish(),
  // Passed to the chat template as given (tool turns of a conversation).
  name: z.string().nullish(),
  tool_call_id: z.string().nullish(),
  tool_calls: z.array(z.looseObject({})).nullish(),
});

export const chatRequestSchema = z.object({
  ...sampling,
  messages: z.array(message).min(1),
  max_completion_tokens: z.int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.int().min(0).max(20).nullish(),
  // vLLM extras
  add_generation_prompt: z.boolean().nullish(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  // refused unless trivial (see refuseUnsupported)
  response_format: z.looseObject({ type: z.string() }).nullish(),
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
  functions: z.array(z.unknown()).nullish(),
  function_call: z.unknown().optional(),
  audio: z.unknown().optional(),
  modalities: z.array(z.string()).nullish(),
  prediction: z.unknown().optional(),
  web_search_options: z.unknown().optional(),
});

export type CompletionRequest = z.infer<typeof completionRequestSchema>;
export type ChatRequest = z.infer<typeof chatRequestSchema>;
export type ChatRequestMessage = ChatRequest['messages'][number];

/** The issue to report: inside a union, the one of the alternative that got furthest. */
function deepest(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    let best: { path: PropertyKey[]; message: string } | undefined;
    for (const alt of issue.errors) {
      const first = alt[0];
      if (first === undefined) continue;
      const d = deepest(first);
      if (best === undefined || d.path.length > best.path.length) best = d;
    }
    if (best !== undefined && best.path.length > 0) return { path: [...issue.path, ...best.path], message: best.message };
  }
  return { path: issue.path, message: issue.message };
}

/** `messages[1].content[0].type` from ['messages', 1, 'content', 0, 'type']. */
export function paramName(path: readonly PropertyKey[]): string {
  let s = '';
  for (const k of path) s += typeof k === 'number' ? `[${k}]` : s === '' ? String(k) : `.${String(k)}`;
  return s;
}

/** Parse a body with a schema, or throw a 400 naming the first parameter at fault. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRequest('The request body must be a JSON object');
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const { path, message } = deepest(r.error.issues[0]!);
  const param = paramName(path);
  throw invalidRequest(param ? `Invalid value for '${param}': ${message}` : message, param || null, 'invalid_value');
}

const given = (v: unknown): boolean => v !== undefined && v !== null;
const nonEmpty = (v: unknown): boolean => given(v) && !(Array.isArray(v) && v.length === 0) && !(typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) && v !== '';

/** Checks both endpoints share, on a parsed body. */
function refuseCommon(r: CompletionRequest | ChatRequest): void {
  if (nonEmpty(r.logit_bias)) throw unsupportedParam('logit_bias', 'the engine has no per-token logit offsets');
  if (given(r.stream_options) && r.stream !== true) throw invalidRequest("'stream_options' is only allowed when 'stream' is true", 'stream_options');
}

/** Throw a 400 for a parameter this server does not implement, or a combination OpenAI refuses. */
export function refuseUnsupportedCompletion(r: CompletionRequest): void {
  refuseCommon(r);
  const n = r.n ?? 1;
  if (nonEmpty(r.suffix)) throw unsupportedParam('suffix', 'insertion (fill-in-the-middle) is not implemented');
  if (given(r.best_of) && r.best_of! < n) throw invalidRequest(`'best_of' (${r.best_of}) must be at least 'n' (${n})`, 'best_of');
  if (given(r.best_of) && r.best_of! > n) throw unsupportedParam('best_of', 'only best_of = n is implemented (no server-side ranking of choices)');
  if (r.echo === true && given(r.logprobs)) {
    throw unsupportedParam('echo', "echo together with 'logprobs' needs the prompt's log-probabilities, which the engine does not compute");
  }
}

export function refuseUnsupportedChat(r: ChatRequest): void {
  refuseCommon(r);
  // 'auto' with no tools means no tool call, as 'none' does.
  const noCall = (v: unknown): boolean => !given(v) || v === 'none' || v === 'auto';
  if (nonEmpty(r.tools)) throw unsupportedParam('tools', 'tool calls are not parsed from the output');
  if (!noCall(r.tool_choice)) throw unsupportedParam('tool_choice', "only 'none' is implemented (no tools)");
  if (nonEmpty(r.functions)) throw unsupportedParam('functions', 'function calls are not parsed from the output');
  if (!noCall(r.function_call)) throw unsupportedParam('function_call', "only 'none' is implemented (no functions)");
  if (given(r.response_format) && r.response_format!.type !== 'text') throw unsupportedParam('response_format', "only {type: 'text'} is implemented (no constrained decoding)");
  if (given(r.audio)) throw unsupportedParam('audio', 'the model produces text only');
  if (given(r.modalities) && r.modalities!.some((m) => m !== 'text')) throw unsupportedParam('modalities', "the model produces text only: use ['text']");
  if (given(r.prediction)) throw unsupportedParam('prediction', 'predicted outputs are not implemented');
  if (given(r.web_search_options)) throw unsupportedParam('web_search_options', 'the server does not search the web');
  if (given(r.top_logprobs) && r.logprobs !== true) throw invalidRequest("'top_logprobs' needs 'logprobs': true", 'top_logprobs');
}
