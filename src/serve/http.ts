/**
 * node:http plumbing: a bounded JSON body reader, JSON and error replies, the Bearer key check,
 * and a server-sent-events writer that waits when the client reads slower than tokens come.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApiError, bodyTooLarge, invalidRequest } from './errors.js';

/**
 * The request body as JSON. A body over `limit` bytes is refused with 413 as soon as it is known
 * to be (from Content-Length, or while reading): what was read is dropped and nothing more is kept.
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw bodyTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size <= limit) {
        chunks.push(c);
        return;
      }
      cleanup();
      chunks.length = 0;
      reject(bodyTooLarge(limit));
    };
    const onEnd = (): void => {
      cleanup();
      resolve();
    };
    // Also a client leaving before the end of its body (Node reports 'aborted' as an error).
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw invalidRequest('The request body is empty: expected a JSON object');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidRequest(`We could not parse the JSON body of your request: ${(e as Error).message}`, null, 'invalid_json');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** An error reply, once the rest of the request body is dropped (see dropBody); at once when none is to come. */
export function sendError(res: ServerResponse, e: ApiError): void {
  const send = (whole: boolean): void => {
    if (!res.headersSent && !res.destroyed) sendJson(res, e.status, e.body(), whole ? e.headers : { ...e.headers, Connection: 'close' });
  };
  if (bodyPending(res.req)) void dropBody(res.req).then(send);
  else send(true);
}

/**
 * Whether more of a request's body is to come: one is declared (RFC 9112 section 6.3) and not all
 * of it was read. An HTTP/0.9 request line has neither headers nor body, whatever follows it.
 */
export function bodyPending(req: IncomingMessage): boolean {
  const declared = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  return declared && req.httpVersionMajor >= 1 && !req.complete && !req.destroyed;
}

/** How much more of a body is read and dropped, and for how long, before answering anyway. */
export const DROP_BYTES = 64 << 20;
export const DROP_MS = 10_000;

/**
 * Read and drop the rest of a request body (none of it is kept); resolves at once when there is
 * none. An answer sent while the client still sends is followed by a close when the client asked
 * for one (`Connection: close`, or after a 413), and closing then resets the connection: the reset
 * can erase the answer before the client reads it (RFC 9112 section 9.6), so a client that writes
 * its whole body before reading, as most do, would see a broken pipe instead of its 413 or 404.
 * Resolves false when the client sent more than DROP_BYTES more, for longer than DROP_MS, or left:
 * then the answer goes out at once and closes the connection.
 */
export function dropBody(req: IncomingMessage): Promise<boolean> {
  if (!bodyPending(req)) return Promise.resolve(!req.destroyed);
  return new Promise((resolve) => {
    let dropped = 0;
    const finish = (whole: boolean): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      resolve(whole);
    };
    const onData = (c: Buffer): void => {
      dropped += c.length;
      if (dropped > DROP_BYTES) finish(false);
    };
    const onEnd = (): void => finish(true);
    const onClose = (): void => finish(false);
    const timer = setTimeout(() => finish(false), DROP_MS);
    timer.unref();
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
    req.resume();
  });
}

/**
 * An error reply written on the connection itself, for what node:http hands over without a
 * ServerResponse (a request it could not parse, a CONNECT); the connection is then closed.
 */
export function sendSocketError(socket: Duplex, e: ApiError, o: { head?: boolean } = {}): void {
  const text = JSON.stringify(e.body());
  const headers = { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...e.headers, Connection: 'close' };
  const head = [`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  // The answer to a HEAD request has no body.
  socket.write(`${head}\r\n\r\n${o.head ? '' : text}`);
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** `Authorization: Bearer <key>` with this key (compared in constant time). */
export function bearerMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1]!), digest(key));
}

/** Server-sent events on a response: `data: {json}` chunks, then `data: [DONE]`. */
export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  open(): void {
    this.res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    this.res.flushHeaders();
  }

  /** Write, and wait for the socket to drain when its buffer is full (a slow client slows its own stream). */
  async write(text: string): Promise<void> {
    if (this.res.destroyed || this.res.writableEnded) return;
    if (this.res.write(text)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
