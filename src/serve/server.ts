/**
 * The OpenAI-compatible HTTP server (node:http, no framework): /v1/models, /v1/completions,
 * /v1/chat/completions, /health and /metrics, on an engine (src/infer/types.ts EngineHandle) that
 * may still be loading. It validates and plans requests (schemas.ts, requests.ts), runs them as
 * one choice stream (choices.ts) and renders that as SSE or as one JSON body (render.ts).
 */
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Tokenizer } from '../io/tokenizer/index.js';
import { EngineBusyError, type EngineHandle, type GenerationRequest } from '../infer/types.js';
import { checkChatTemplate } from './chat-prompt.js';
import { generateChoices, GenerationError, type ChoiceEvent } from './choices.js';
import {
  ApiError,
  draining as drainingError,
  expectationFailed,
  internalError,
  invalidApiKey,
  invalidRequest,
  loadFailed,
  loading,
  malformedHttp,
  methodNotAllowed,
  modelNotFound,
  queueFull,
  UnavailableError,
  unknownRoute,
} from './errors.js';
import { bearerMatches, bodyPending, DROP_MS, dropBody, readJson, sendError, sendJson, sendSocketError, SseWriter } from './http.js';
import { TokenStrings } from './logprobs.js';
import { ServerMetrics } from './metrics.js';
import { ChatRenderer, CompletionRenderer, SSE_DONE, sseData, type RenderOptions } from './render.js';
import { planChat, planCompletion, type GenerationPlan } from './requests.js';
import { chatRequestSchema, completionRequestSchema, parseBody, refuseUnsupportedChat, refuseUnsupportedCompletion } from './schemas.js';

export interface ServerOptions {
  /** The engine, possibly still loading: until it resolves /health and the /v1 routes answer 503. */
  engine: Promise<EngineHandle>;
  tokenizer: Tokenizer;
  /** The name clients pass as `model` (and /v1/models lists). */
  modelName: string;
  /** When set, /v1 routes need `Authorization: Bearer <apiKey>` (/health and /metrics stay open). */
  apiKey?: string;
  /** Larger request bodies are refused with 413; default 1 MiB. */
  maxBodyBytes?: number;
  /** Refuse generation requests with 429 while this many requests wait for the engine. */
  maxQueue?: number;
  /** Told of every 500 (a fault of the server or the engine, never of a request). */
  onInternalError?: (e: unknown) => void;
}

export interface SkymoeServer {
  /** Start listening; resolves to the base URL (`http://127.0.0.1:8000`). Port 0 picks a free one. */
  listen(host: string, port: number): Promise<string>;
  /** Refuse new generation requests (503), let the running ones finish, then close. */
  drain(): Promise<void>;
  /** Close at once: running requests are cut (which aborts them in the engine). */
  close(): Promise<void>;
  readonly address: AddressInfo | null;
  readonly metrics: ServerMetrics;
}

export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

type Route = { method: 'GET' | 'POST'; auth: boolean; handle: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<void> | void };

/**
 * @example
 * ```ts
 * const server = createServer({ engine: startEngine({ model: 'models/tiny' }), tokenizer, modelName: 'tiny' });
 * const url = await server.listen('127.0.0.1', 8000);
 * process.on('SIGTERM', () => server.drain().then(() => process.exit(0)));
 * ```
 */
export function createServer(opts: ServerOptions): SkymoeServer {
  const { tokenizer, modelName } = opts;
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  checkChatTemplate(tokenizer);
  const strings = new TokenStrings(tokenizer);
  const created = Math.floor(Date.now() / 1000);
  let engine: EngineHandle | undefined;
  let loadError: Error | undefined;
  opts.engine.then(
    (e) => (engine = e),
    (e: unknown) => (loadError = e instanceof Error ? e : new Error(String(e))),
  );
  const metrics = new ServerMetrics(modelName, () => engine?.stats());
  let draining = false;
  /** Generation requests being answered (drain waits for them). */
  const inflight = new Set<Promise<void>>();

  /** The loaded engine, or the 503 to answer while it loads (or failed to). */
  const ready = (): EngineHandle => {
    if (engine) return engine;
    if (loadError) throw loadFailed(loadError.message);
    throw loading();
  };

  const modelCard = (e: EngineHandle) => ({ id: modelName, object: 'model', created, owned_by: 'skymoe', max_model_len: e.maxContext });

  const routes: Record<string, Route> = {
    '/health': {
      method: 'GET',
      auth: false,
      handle: (_req, res) => {
        if (draining) throw new UnavailableError('Shutting down');
        ready();
        sendJson(res, 200, { status: 'ok' });
      },
    },
    '/metrics': {
      method: 'GET',
      auth: false,
      handle: async (_req, res) => {
        const text = await metrics.text();
        res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
      },
    },
    '/v1/models': {
      method: 'GET',
      auth: true,
      handle: (_req, res, path) => {
        const e = ready();
        if (path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [modelCard(e)] });
        const raw = path.slice('/v1/models/'.length);
        let id = raw;
        try {
          id = decodeURIComponent(raw);
        } catch {
          // Not valid percent-encoding: compared as sent.
        }
        if (id !== modelName) throw modelNotFound(id, modelName);
        sendJson(res, 200, modelCard(e));
      },
    },
    '/v1/completions': { method: 'POST', auth: true, handle: (req, res) => track(generate('completion', req, res)) },
    '/v1/chat/completions': { method: 'POST', auth: true, handle: (req, res) => track(generate('chat', req, res)) },
  };

  function track(p: Promise<void>): Promise<void> {
    inflight.add(p);
    return p.finally(() => inflight.delete(p));
  }

  /** A generation request's body, validated and planned. */
  function plan(kind: 'completion' | 'chat', body: unknown, e: EngineHandle): { plan: GenerationPlan; stream: boolean; includeUsage: boolean; echo?: boolean } {
    const m = { tokenizer, maxContext: e.maxContext };
    const r = kind === 'completion' ? parseBody(completionRequestSchema, body) : parseBody(chatRequestSchema, body);
    if ('prompt' in r) refuseUnsupportedCompletion(r);
    else refuseUnsupportedChat(r);
    if (r.model != null && r.model !== modelName) throw modelNotFound(r.model, modelName);
    const stream = r.stream ?? false;
    const includeUsage = stream && (r.stream_options?.include_usage ?? false);
    if ('prompt' in r) return { plan: planCompletion(r, m), stream, includeUsage, echo: r.echo ?? false };
    return { plan: planChat(r, m), stream, includeUsage };
  }

  async function generate(kind: 'completion' | 'chat', req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (draining) throw drainingError();
    const e = ready();
    const { plan: p, stream, includeUsage, echo } = plan(kind, await readJson(req, maxBody), e);
    if (draining) throw drainingError();
    // more prompts than the engine ever holds at once: retrying cannot help, so not a 429
    if (e.maxRequests !== undefined && p.prompts.length > e.maxRequests) throw invalidRequest(`${p.prompts.length} prompts in one request; this server runs at most ${e.maxRequests} at once (--max-num-seqs + --max-queue): send fewer per request`, 'prompt', 'too_many_prompts');
    if (opts.maxQueue !== undefined && e.stats().waiting >= opts.maxQueue) throw queueFull(`${e.stats().waiting} requests are waiting`);

    const id = (kind === 'chat' ? 'chatcmpl-' : 'cmpl-') + randomUUID().replaceAll('-', '');
    const requests: GenerationRequest[] = p.prompts.map((x, i) => ({ id: p.prompts.length > 1 ? `${id}-${i}` : id, prompt: x.ids, params: p.params }));
    const options: RenderOptions = {
      head: { id, created: Math.floor(Date.now() / 1000), model: modelName },
      choices: p.prompts.length * p.params.n,
      promptTokens: p.prompts.map((x) => x.ids.length),
      logprobs: p.params.logprobs,
      strings,
      includeUsage,
    };
    const renderer = kind === 'chat' ? new ChatRenderer(options) : new CompletionRenderer(options, echo ? { texts: p.prompts.map((x) => x.text), n: p.params.n } : undefined);

    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the client closed the connection'));
    });
    const events = observe(generateChoices(e, requests, abort.signal), options.promptTokens);
    const finished = (): void => {
      const open = renderer.unfinished();
      if (open.length > 0) throw internalError(`the engine ended without finishing choice ${open.join(', ')}`);
    };
    // The first event decides between an error reply (queue full, engine fault) and a 200.
    const first = await events.next();
    if (abort.signal.aborted) return;
    if (!stream) {
      for (let r = first; !r.done; r = await events.next()) renderer.add(r.value);
      if (abort.signal.aborted) return;
      finished();
      sendJson(res, 200, renderer.body());
      return;
    }
    const sse = new SseWriter(res);
    sse.open();
    try {
      for (const c of renderer.start()) await sse.write(sseData(c));
      for (let r = first; !r.done; r = await events.next()) for (const c of renderer.chunks(r.value)) await sse.write(sseData(c));
      if (abort.signal.aborted) return;
      finished();
      if (includeUsage) await sse.write(sseData(renderer.usageChunk()));
    } catch (err) {
      // The 200 is out: the error goes in the stream, as vLLM sends it.
      await sse.write(sseData(asApiError(err).body()));
    }
    await sse.write(SSE_DONE);
    sse.end();
  }

  /** The choice stream, timed and counted for /metrics as it passes. */
  async function* observe(events: AsyncGenerator<ChoiceEvent, void, undefined>, promptTokens: number[]): AsyncGenerator<ChoiceEvent, void, undefined> {
    const t0 = performance.now();
    let accepted = false;
    const last = new Map<number, number>();
    for await (const ev of events) {
      if (!accepted) {
        accepted = true;
        metrics.promptTokens(promptTokens.reduce((a, b) => a + b, 0));
      }
      if (ev.type === 'tokens' && ev.ids.length > 0) {
        const now = performance.now();
        const prev = last.get(ev.index);
        if (last.size === 0) metrics.timeToFirstToken((now - t0) / 1000);
        else if (prev !== undefined) metrics.interTokenLatency((now - prev) / 1000, ev.ids.length);
        last.set(ev.index, now);
        metrics.generatedTokens(ev.ids.length);
      }
      yield ev;
    }
  }

  function asApiError(err: unknown): ApiError {
    if (err instanceof ApiError) return err;
    if (err instanceof EngineBusyError) return err.reason === 'draining' ? drainingError(err.message) : queueFull(err.message);
    opts.onInternalError?.(err);
    if (err instanceof GenerationError) return internalError(err.message);
    return internalError(`internal error: ${(err as Error)?.message ?? String(err)}`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      path = req.url ?? '/';
    }
    const key = path.startsWith('/v1/models/') ? '/v1/models' : path;
    const route = Object.hasOwn(routes, key) ? routes[key] : undefined;
    res.on('close', () => metrics.request(route ? key : 'unknown', res.writableFinished ? res.statusCode : 499));
    if (draining) res.setHeader('Connection', 'close');
    try {
      // node:http's own check of this answers without a body: it is off, and done here.
      if (req.httpVersion === '1.1' && req.headers.host === undefined) throw invalidRequest('An HTTP/1.1 request needs a Host header', null, 'missing_host');
      if (!route) throw unknownRoute(method, path);
      if (method !== route.method) throw methodNotAllowed(method, path, route.method);
      if (route.auth && opts.apiKey !== undefined && !bearerMatches(req.headers.authorization, opts.apiKey)) throw invalidApiKey();
      // The GET routes read no body: one sent anyway is dropped before the answer (see dropBody).
      if (route.method === 'GET' && bodyPending(req) && !(await dropBody(req))) res.setHeader('Connection', 'close');
      await route.handle(req, res, path);
    } catch (err) {
      if (res.headersSent) {
        if (!(err instanceof ApiError)) opts.onInternalError?.(err);
        res.destroy();
        return;
      }
      if (!res.destroyed) sendError(res, asApiError(err));
    }
  }

  const server = createHttpServer({ requireHostHeader: false }, (req, res) => void handle(req, res));
  /**
   * Close a connection once the client has sent all it sends (or after DROP_MS): closing while it
   * still sends resets the connection, which can erase the answer (see dropBody).
   */
  const closeWhenSent = (socket: Duplex): void => {
    socket.end();
    socket.once('end', () => socket.destroy());
    const timer = setTimeout(() => socket.destroy(), DROP_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
  // What node:http answers itself, with an empty body, is answered in OpenAI's shape too.
  // Bytes it cannot parse (then, as node does, the connection is closed; what the client still
  // sends goes to node's parser, which stays in error and drops it, one more clientError a read):
  const refused = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (refused.has(socket)) return;
    refused.add(socket);
    const inflight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inflight?.headersSent) return void socket.destroy();
    const e = malformedHttp(err);
    // The bytes node could not parse start with the request line when they came in one read.
    const raw = (err as { rawPacket?: unknown }).rawPacket;
    sendSocketError(socket, e, { head: Buffer.isBuffer(raw) && raw.subarray(0, 5).toString('latin1') === 'HEAD ' });
    metrics.request('unknown', e.status);
    closeWhenSent(socket);
  });
  // CONNECT (without a listener node closes the connection without a word):
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {});
    const e = unknownRoute(req.method ?? 'CONNECT', req.url ?? '');
    sendSocketError(socket, e);
    metrics.request('unknown', e.status);
    socket.resume();
    closeWhenSent(socket);
  });
  // An Expect header other than 100-continue (node's answer is a bare 417); the client waits
  // for this answer before it sends a body, so none is waited for.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    res.on('close', () => metrics.request('unknown', res.statusCode));
    const e = expectationFailed(req.headers.expect ?? '');
    sendJson(res, e.status, e.body(), e.headers);
  });

  const close = (): Promise<void> =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });

  return {
    metrics,
    get address() {
      const a = server.address();
      return a !== null && typeof a === 'object' ? a : null;
    },
    listen(host: string, port: number): Promise<string> {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
        });
      });
    },
    async drain(): Promise<void> {
      // Idle keep-alive connections are left open (closing one races a client sending on it):
      // every reply while draining closes its connection instead.
      draining = true;
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
      await close();
    },
    close,
  };
}
