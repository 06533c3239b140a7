/**
 * Errors the server answers with, in OpenAI's shape:
 * `{"error": {"message", "type", "param", "code"}}` (SPEC section 10). A handler throws an
 * ApiError; anything else that escapes a handler is an internal fault (500).
 */

/** OpenAI's error object (the value of the body's `error` field). */
export interface ErrorObject {
  message: string;
  type: string;
  /** The request parameter at fault (`temperature`, `messages[1].content`), when one is. */
  param: string | null;
  code: string | null;
}

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Allow for 405, Retry-After for 429). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  body(): { error: ErrorObject | Record<string, unknown> } {
    const error: ErrorObject = { message: this.message, type: this.type, param: this.param, code: this.code };
    return { error };
  }
}

/** 400: a request the server will not run as sent; `param` names the field at fault. */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** 400 for a parameter the server does not implement (refused rather than silently ignored). */
export function unsupportedParam(param: string, why: string): ApiError {
  return invalidRequest(`'${param}' is not supported by this server: ${why}`, param, 'unsupported_parameter');
}

export function invalidApiKey(): ApiError {
  return new ApiError(401, 'Incorrect or missing API key: send "Authorization: Bearer <key>"', 'invalid_request_error', null, 'invalid_api_key', {
    'WWW-Authenticate': 'Bearer',
  });
}

export function modelNotFound(model: string, served: string): ApiError {
  return new ApiError(404, `The model '${model}' does not exist: this server serves '${served}'`, 'invalid_request_error', 'model', 'model_not_found');
}

export function unknownRoute(method: string, path: string): ApiError {
  return new ApiError(404, `Invalid URL (${method} ${path})`, 'invalid_request_error', null, 'unknown_url');
}

export function methodNotAllowed(method: string, path: string, allowed: string): ApiError {
  return new ApiError(405, `Method ${method} is not allowed on ${path}: use ${allowed}`, 'invalid_request_error', null, 'method_not_allowed', { Allow: allowed });
}

/**
 * Bytes node:http could not parse as a request (a bad request line, header or length, a body cut
 * short): 400, or 431 for headers over node's limit, 408 when the request took too long to arrive.
 * `e` is node's parser error (its `code`, e.g. HPE_INVALID_METHOD).
 */
export function malformedHttp(e: { code?: string; message: string }): ApiError {
  if (e.code === 'HPE_HEADER_OVERFLOW') return new ApiError(431, 'The request headers are too large', 'invalid_request_error', null, 'headers_too_large');
  if (e.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return new ApiError(413, 'The chunk extensions of the request body are too large', 'invalid_request_error', null, 'request_too_large');
  if (e.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new ApiError(408, 'The request took too long to arrive', 'invalid_request_error', null, 'request_timeout');
  return invalidRequest(`Malformed HTTP request (${e.code ?? 'unknown'}): ${e.message}`, null, 'malformed_request');
}

/** 417: an `Expect` header other than `100-continue`. */
export function expectationFailed(expect: string): ApiError {
  return new ApiError(417, `Expect: ${expect} is not supported (only 100-continue)`, 'invalid_request_error', null, 'expectation_failed');
}

export function bodyTooLarge(limit: number): ApiError {
  return new ApiError(413, `The request body is larger than ${limit} bytes`, 'invalid_request_error', null, 'request_too_large');
}

export function queueFull(message: string): ApiError {
  return new ApiError(429, `The server is busy (${message}): retry later`, 'rate_limit_error', null, 'queue_full', { 'Retry-After': '1' });
}

/** 503: the server drains (SIGTERM), or the engine takes no more requests (`why`: the engine's words). */
export function draining(why?: string): ApiError {
  return new ApiError(503, why ? `The engine takes no new requests: ${why}` : 'The server is shutting down and takes no new requests', 'unavailable_error', null, 'draining');
}

/** A fault of the server or the engine, never of the request. */
export function internalError(message: string): ApiError {
  return new ApiError(500, message, 'server_error', null, null);
}

/**
 * llama.cpp's 503 (SPEC section 10): `{"error": {"code": 503, "message", "type": "unavailable_error"}}`,
 * its `code` the HTTP status as a number. /health answers with it, and so does every /v1 route
 * while the model loads.
 */
export class UnavailableError extends ApiError {
  constructor(message: string) {
    super(503, message, 'unavailable_error');
  }

  override body(): { error: Record<string, unknown> } {
    return { error: { code: 503, message: this.message, type: this.type } };
  }
}

export const loading = (): UnavailableError => new UnavailableError('Loading model');
export const loadFailed = (message: string): UnavailableError => new UnavailableError(`Model failed to load: ${message}`);
