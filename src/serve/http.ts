/**
 * node:http plumbing: a bounded JSON body reader, JSON and error replies, the Bearer key check,
 * and a server-sent-events writer that waits when the client reads slower than tokens come.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
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

/**
 * An error reply. After a 413 the rest of the body is not read: the connection is closed once
 * the reply is out.
 */
export function sendError(res: ServerResponse, e: ApiError): void {
  sendJson(res, e.status, e.body(), e.status === 413 ? { ...e.headers, Connection: 'close' } : e.headers);
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
