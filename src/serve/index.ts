/**
 * The OpenAI-compatible HTTP server on the continuous-batching engine (docs/serving.md).
 *
 * @example
 * ```ts
 * import { createServer } from './serve/index.js';
 * const server = createServer({ engine: startEngine({ model: dir }), tokenizer: await loadTokenizer(dir), modelName: 'tiny' });
 * console.log(await server.listen('127.0.0.1', 8000));   // http://127.0.0.1:8000
 * ```
 */
export { checkChatTemplate, DEFAULT_CHAT_TEMPLATE, DEFAULT_END_OF_TURN, renderChatPrompt, templateMessages, type ChatPrompt } from './chat-prompt.js';
export { generateChoices, GenerationError, type ChoiceEvent } from './choices.js';
export { ApiError, UnavailableError, type ErrorObject } from './errors.js';
export { chatLogprobs, completionLogprobs, TokenStrings, type ChatTokenLogprob, type CompletionLogprobs } from './logprobs.js';
export { METRIC_NAMES, ServerMetrics } from './metrics.js';
export { ChatRenderer, CompletionRenderer, SSE_DONE, sseData, type RenderOptions, type ResponseHead, type Usage } from './render.js';
export { COMPLETION_DEFAULT_MAX_TOKENS, completionBudget, planChat, planCompletion, type GenerationPlan, type ModelContext, type PromptPlan } from './requests.js';
export { chatRequestSchema, completionRequestSchema, parseBody, type ChatRequest, type CompletionRequest } from './schemas.js';
export { createServer, DEFAULT_MAX_BODY_BYTES, type ServerOptions, type SkymoeServer } from './server.js';
