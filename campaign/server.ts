/**
 * The server parts of the reliability campaign (issue 12), both on a real `skymoe serve` child
 * process serving a tiny model written once in the work directory:
 *
 * - `fuzzHttp`: fast-check generates HTTP requests (methods, paths, headers, raw bodies, JSON with
 *   wrong types and out-of-range values, mostly-valid requests with one parameter perturbed), sent
 *   on raw sockets (malformed HTTP) or with node:http. Every case must be answered: 2xx, or 4xx
 *   with an OpenAI error body; a 5xx, an error body of another shape, a connection cut without an
 *   answer, no answer within 5 s, or the server dying are failures.
 * - `serverAbuse`: 64 client loops for minutes send well-formed completions and chats (streamed or
 *   not), abort some mid-stream, read some slowly, and mix in malformed requests and attempts to
 *   read files through `model` names and URL paths. Afterwards the KV cache, the running and
 *   waiting requests and the server's memory must be back to their idle baseline.
 *
 * Memory: the child is started with a campaign-only probe (--expose-gc, --import GC_PROBE) that on
 * SIGUSR2 runs a full collection and prints the main thread's heap in use. `heap_*` figures are
 * that heap (what a leak in the HTTP layer grows); `rss_*` are the resident set from /proc, after
 * that collection where the name says `gc` or the figure is a baseline (V8 keeps a grown heap
 * until it collects, and the engine worker's WebAssembly memory never shrinks).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { JsBackend } from '../src/backend/js/index.js';
import { saveModel } from '../src/io/hf.js';
import { saveTokenizer, tokenizerConfigJson, tokenizerFromJson, tokenizerToJson, trainBpe } from '../src/io/tokenizer/index.js';
import { preset } from '../src/model/presets.js';
import { SkyworkMoE } from '../src/model/skywork-moe.js';
import type { CampaignLine, CampaignOptions, CampaignPart } from './lines.js';

// ---------------------------------------------------------------------------------------------
// The served model and the server child process

/** The name the child serves the model under (`--served-model-name`). */
export const SERVED_NAME = 'tiny';

const CORPUS = [
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, ' +
    'and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.',
];
const TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

/** The tiny preset with random weights and a BPE tokenizer with a chat template, as `skymoe init` writes one. */
export async function writeTinyModel(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const cfg = preset('tiny');
  const model = SkyworkMoE.create(cfg, { seed: 5, backend: new JsBackend() });
  saveModel(model, dir, { dtype: 'F32' });
  model.dispose();
  const base = trainBpe(CORPUS, { vocabSize: cfg.vocabSize });
  const tok = tokenizerFromJson(tokenizerToJson(base), 'tokenizer.json', { ...(tokenizerConfigJson(base) as object), chat_template: TEMPLATE });
  await saveTokenizer(dir, tok, { modelMaxLength: cfg.maxPositions });
}

export interface ServeChild {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Exit code or signal once the child has exited, else null. */
  exit(): string | null;
  /** The last 64 KiB of the child's stderr (internal errors are printed there). */
  stderr(): string;
  /** Lines on stderr so far telling of an internal error (a 500 or a fault), and of a node warning. */
  internalErrors(): number;
  warnings(): number;
  /** SIGKILL the child and wait for it. */
  kill(): Promise<void>;
  /**
   * The main thread's JS heap in use right after a full garbage collection, in MiB (NaN when the
   * child does not answer within 10 s): what a leak in the HTTP layer makes grow, without the
   * noise of a heap V8 keeps grown after load.
   */
  heapAfterGcMb(): Promise<number>;
}

/**
 * Loaded into the child with --import (campaign instrumentation, not the product): on SIGUSR2,
 * a full collection, then the heap in use on stderr.
 */
const GC_PROBE = `process.on('SIGUSR2', () => {
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  process.stderr.write('[gc-probe heapUsed=' + m.heapUsed + '] heapTotal=' + m.heapTotal + ' external=' + m.external + ' arrayBuffers=' + m.arrayBuffers + ' rss=' + m.rss + '\\n');
});
`;

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Start `skymoe serve` on a free port; resolves when it printed its ready line. */
export async function startServe(modelDir: string, extra: string[] = [], timeoutMs = 120_000): Promise<ServeChild> {
  const probe = join(modelDir, 'serve-gc-probe.mjs');
  writeFileSync(probe, GC_PROBE);
  const child = spawn(process.execPath, ['--expose-gc', '--import', pathToFileURL(probe).href, MAIN, 'serve', '--model', modelDir, '--port', '0', '--backend', 'wasm', '--threads', '1', '--served-model-name', SERVED_NAME, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let exited: string | null = null;
  const exitP = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = signal ?? String(code);
      resolve();
    }),
  );
  child.stdout!.on('data', (d: Buffer) => (out += d));
  let internal = 0;
  let warnings = 0;
  let partial = '';
  let onProbe: ((heapUsed: number) => void) | null = null;
  child.stderr!.on('data', (d: Buffer) => {
    // Keep the last 64 KiB; count the lines that matter as they come.
    err = (err + d).slice(-65536);
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      const probed = /^\[gc-probe heapUsed=(\d+)\]/.exec(l);
      if (probed) onProbe?.(Number(probed[1]));
      if (l.includes('internal error')) internal++;
      if (/Warning\b/.test(l)) warnings++;
    }
  });
  const kill = async (): Promise<void> => {
    if (exited === null) child.kill('SIGKILL');
    await exitP;
  };
  const t0 = Date.now();
  while (!/\n/.test(out)) {
    if (exited !== null || Date.now() - t0 > timeoutMs) {
      await kill();
      throw new Error(`skymoe serve did not start (exit ${exited}): ${err.slice(-2000)}`);
    }
    await sleep(20);
  }
  const m = /^serving '[^']*' at http:\/\/([^:]+):(\d+)\/v1/.exec(out);
  if (!m) {
    await kill();
    throw new Error(`unexpected ready line from skymoe serve: ${out}`);
  }
  const host = m[1]!;
  const port = Number(m[2]);
  const heapAfterGcMb = (): Promise<number> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => done(NaN), 10_000);
      const done = (mb: number): void => {
        clearTimeout(timer);
        onProbe = null;
        resolve(mb);
      };
      onProbe = (bytes) => done(bytes / 2 ** 20);
      child.kill('SIGUSR2');
    });
  return { url: `http://${host}:${port}`, host, port, pid: child.pid!, child, exit: () => exited, stderr: () => err, internalErrors: () => internal, warnings: () => warnings, kill, heapAfterGcMb };
}

/** The resident set of a process in MiB (Linux /proc), or NaN. */
export function rssMb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// One HTTP exchange on a raw socket, and the OpenAI error shape

export interface Answer {
  /** 'response': a whole response was read; 'closed': the server closed the connection without (a whole) one; 'timeout': nothing within the time. */
  kind: 'response' | 'closed' | 'timeout';
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Every byte the server sent. */
  raw: Buffer;
  /** The socket error that ended it, if any (ECONNRESET). */
  error?: string;
}

/** Decode a chunked body; null while it is incomplete. */
function dechunk(b: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) return null;
    const size = parseInt(b.subarray(at, eol).toString('latin1').split(';')[0]!, 16);
    if (!Number.isFinite(size)) return Buffer.concat(parts); // not chunked after all: what there is
    if (size === 0) return b.indexOf('\r\n\r\n', eol) >= 0 || b.length >= eol + 4 ? Buffer.concat(parts) : null;
    if (b.length < eol + 2 + size + 2) return null;
    parts.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** The first whole response in `b`, or null. `eof`: the server closed, so a body without a length ends here. */
function parseResponse(b: Buffer, eof: boolean, head = false): { status: number; headers: Record<string, string>; body: Buffer } | null {
  // Interim answers (100 Continue) come before the one that counts.
  while (/^HTTP\/1\.[01] 1\d\d /.test(b.subarray(0, 16).toString('latin1'))) {
    const e = b.indexOf('\r\n\r\n');
    if (e < 0) return null;
    b = b.subarray(e + 4);
  }
  const end = b.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = b.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
  if (!m) return null;
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const rest = b.subarray(end + 4);
  const status = Number(m[1]);
  if (head) return { status, headers, body: Buffer.alloc(0) };
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    return rest.length >= n ? { status, headers, body: rest.subarray(0, n) } : null;
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const body = dechunk(rest);
    return body ? { status, headers, body } : eof ? { status, headers, body: rest } : null;
  }
  if (status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0) };
  return eof ? { status, headers, body: rest } : null;
}

/**
 * Send `data` on a new connection and read the first response. `halfClose` ends the request side
 * after sending (for requests that lie about their length: the server then sees the end).
 */
export function rawExchange(host: string, port: number, data: Buffer, o: { timeoutMs: number; halfClose?: boolean; head?: boolean }): Promise<Answer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let size = 0;
    let settled = false;
    const sock = net.connect({ host, port });
    const finish = (kind: Answer['kind'], error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(got);
      const r = parseResponse(raw, true, o.head);
      if (kind !== 'timeout' && r) resolve({ kind: 'response', ...r, raw, error });
      else resolve({ kind, status: 0, headers: {}, body: Buffer.alloc(0), raw, error });
    };
    const timer = setTimeout(() => finish('timeout'), o.timeoutMs);
    sock.on('connect', () => {
      sock.write(data, (e) => {
        if (!e && o.halfClose) sock.end();
      });
    });
    sock.on('data', (d: Buffer) => {
      got.push(d);
      size += d.length;
      const r = parseResponse(Buffer.concat(got, size), false, o.head);
      if (r && !settled) {
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        resolve({ kind: 'response', ...r, raw: Buffer.concat(got, size) });
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish('closed', e.code ?? e.message));
    sock.on('close', () => finish('closed'));
  });
}

/**
 * Whether `body` is OpenAI's error shape: `{"error": {"message": string, "type": string, "param":
 * string | null, "code": string | null}}`. The server's 503s (loading, draining) use llama.cpp's
 * variant, `code` the status as a number and no `param` (src/serve/errors.ts UnavailableError),
 * which OpenAI clients read the same way; it is accepted for a 503 only.
 */
export function isOpenAiError(status: number, body: Buffer | string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    return false;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const e = (v as { error?: unknown }).error;
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return false;
  const o = e as Record<string, unknown>;
  if (typeof o.message !== 'string' || typeof o.type !== 'string') return false;
  if (status === 503 && o.code === 503) return true;
  const strOrNull = (x: unknown): boolean => x === null || typeof x === 'string';
  return 'param' in o && 'code' in o && strOrNull(o.param) && strOrNull(o.code);
}

/** A request through node:http (well-formed HTTP): the whole answer, or 'closed'/'timeout'. */
export function httpExchange(
  host: string,
  port: number,
  r: { method: string; path: string; headers: Record<string, string>; body?: Buffer },
  timeoutMs: number,
): Promise<Answer> {
  return new Promise((resolve) => {
    let settled = false;
    const chunks: Buffer[] = [];
    const done = (a: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(a);
    };
    const empty = { status: 0, headers: {}, body: Buffer.alloc(0), raw: Buffer.alloc(0) };
    const timer = setTimeout(() => done({ kind: 'timeout', ...empty, body: Buffer.concat(chunks) }), timeoutMs);
    // A body always with its length (node:http sends a GET's body without one: bytes after the request).
    const headers = r.body !== undefined && r.headers['transfer-encoding'] === undefined ? { 'content-length': String(r.body.length), ...r.headers } : r.headers;
    const req = http.request({ host, port, method: r.method, path: r.path, headers, agent: false }, (res) => {
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
        done({ kind: 'response', status: res.statusCode ?? 0, headers, body, raw: body });
      });
      res.on('error', (e: NodeJS.ErrnoException) => done({ kind: 'closed', ...empty, error: `response: ${e.code ?? e.message}` }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => done({ kind: 'closed', ...empty, error: e.code ?? e.message }));
    req.end(r.body);
  });
}

/** What must never be in an answer: /etc/passwd, or the text of the served model's own files. */
export function leakMarkers(modelDir: string): string[] {
  const config = readFileSync(join(modelDir, 'config.json'), 'utf8');
  return ['root:x:0:0', 'PATH=/', '"architectures"', '"num_hidden_layers"', '"__metadata__"', '"merges"', '"added_tokens"', '"tokenizer_class"', config.slice(0, 64)];
}

const leaks = (a: Answer, markers: string[]): boolean => {
  const text = a.raw.toString('latin1') + a.body.toString('utf8');
  return markers.some((m) => text.includes(m));
};

/**
 * Whether a 2xx answer is whole: JSON that parses, or an SSE stream of JSON chunks ending in
 * `data: [DONE]` without an error chunk, where generation answers give every choice a finish_reason.
 */
export function wholeAnswer(a: Answer, method: string): string | null {
  if (method === 'HEAD') return null;
  const type = a.headers['content-type'] ?? '';
  const text = a.body.toString('utf8');
  if (type.startsWith('text/event-stream')) {
    if (!text.endsWith('data: [DONE]\n\n')) return 'stream without data: [DONE]';
    const events = text.split('\n\n').filter((e) => e !== '');
    const finished = new Set<number>();
    let indices = 0;
    for (const e of events.slice(0, -1)) {
      if (!e.startsWith('data: ')) return `not an SSE data line: ${e.slice(0, 80)}`;
      let c: { error?: unknown; choices?: { index: number; finish_reason: string | null }[] };
      try {
        c = JSON.parse(e.slice(6));
      } catch {
        return `chunk is not JSON: ${e.slice(0, 80)}`;
      }
      if (c.error !== undefined) return `error in the stream: ${JSON.stringify(c.error).slice(0, 200)}`;
      for (const ch of c.choices ?? []) {
        indices = Math.max(indices, ch.index + 1);
        if (ch.finish_reason) finished.add(ch.index);
      }
    }
    if (finished.size !== indices) return `${indices - finished.size} of ${indices} choices without finish_reason`;
    return null;
  }
  if (type.startsWith('application/json')) {
    let v: { error?: unknown; object?: string; choices?: { finish_reason: string | null }[] };
    try {
      v = JSON.parse(text);
    } catch {
      return `body is not JSON: ${text.slice(0, 80)}`;
    }
    if (v.error !== undefined) return 'error body with a 2xx';
    if (v.object === 'text_completion' || v.object === 'chat.completion') {
      if (!v.choices?.length || v.choices.some((c) => c.finish_reason !== 'stop' && c.finish_reason !== 'length')) return 'a choice without finish_reason';
    }
    return null;
  }
  if (type.startsWith('text/plain')) return null; // /metrics
  return `unexpected content-type '${type}'`;
}

// ---------------------------------------------------------------------------------------------
// fuzzHttp: the cases

/** JSON made at send time (big or deep values stay recipes while cases are generated). */
class Raw {
  constructor(readonly text: () => string) {}
}
class Long {
  constructor(
    readonly unit: string,
    readonly n: number,
  ) {}
  toJSON(): string {
    return this.unit.repeat(this.n);
  }
}
class LongArray {
  constructor(
    readonly item: unknown,
    readonly n: number,
  ) {}
  toJSON(): unknown[] {
    return new Array(this.n).fill(this.item);
  }
}

/** JSON.stringify where Raw values are spliced in as their text. */
function toJson(v: unknown): string {
  const raws: Raw[] = [];
  const text = JSON.stringify(v, (_k, x: unknown) => {
    if (x instanceof Raw) {
      raws.push(x);
      return `\u0001RAW${raws.length - 1}\u0001`;
    }
    return x;
  });
  if (text === undefined) return '';
  return raws.length === 0 ? text : text.replace(/"\\u0001RAW(\d+)\\u0001"/g, (_m, i: string) => raws[Number(i)]!.text());
}

const deep = (depth: number, open: string, close: string, inner = '1'): string => open.repeat(depth) + inner + close.repeat(depth);

/** One fuzz case: a request as node:http sends it, or raw bytes on a socket. */
export type FuzzCase =
  | { via: 'http'; kind: string; method: string; path: string; headers: Record<string, string>; body?: () => Buffer }
  | { via: 'raw'; kind: string; bytes: () => Buffer; halfClose: boolean; head: boolean };

const COMPLETION_FIELDS = ['model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'n', 'stream', 'stream_options', 'stop', 'presence_penalty', 'frequency_penalty', 'seed', 'user', 'logit_bias', 'top_k', 'min_p', 'repetition_penalty', 'ignore_eos', 'stop_token_ids', 'suffix', 'echo', 'logprobs', 'best_of'];
const CHAT_FIELDS = [
  ...COMPLETION_FIELDS.filter((f) => !['prompt', 'suffix', 'echo', 'logprobs', 'best_of'].includes(f)),
  'messages',
  'max_completion_tokens',
  'logprobs',
  'top_logprobs',
  'add_generation_prompt',
  'chat_template_kwargs',
  'response_format',
  'tools',
  'tool_choice',
  'functions',
  'function_call',
  'audio',
  'modalities',
  'prediction',
  'web_search_options',
];
const MESSAGE_FIELDS = ['role', 'content', 'name', 'tool_call_id', 'tool_calls'];
const TRAVERSAL_NAMES = ['../../etc/passwd', '/etc/passwd', '%2e%2e/%2e%2e/etc/passwd', '..%2F..%2Fetc%2Fpasswd', '....//....//etc/passwd', 'config.json', 'tokenizer.json', 'model.safetensors', 'tiny/../../etc/passwd', 'tiny/config.json', '.', '..', 'file:///etc/passwd', '..\\..\\etc\\passwd', 'tiny\u0000/etc/passwd'];

/** Values of the right type and range for a field (so that some perturbations stay valid). */
function validValue(field: string): fc.Arbitrary<unknown> {
  const s = fc.string({ maxLength: 12 });
  switch (field) {
    case 'model':
      return fc.constantFrom(SERVED_NAME, null, ...TRAVERSAL_NAMES);
    case 'prompt':
      return fc.oneof(s, fc.array(s, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(300), { minLength: 1, maxLength: 8 }), fc.array(fc.array(fc.nat(300), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }));
    case 'max_tokens':
    case 'max_completion_tokens':
      return fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 100, max: 140 }));
    case 'temperature':
      return fc.double({ min: 0, max: 2, noNaN: true });
    case 'top_p':
    case 'min_p':
      return fc.double({ min: 0, max: 1, noNaN: true });
    case 'n':
      return fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(127, 128));
    case 'stream':
    case 'echo':
    case 'ignore_eos':
    case 'add_generation_prompt':
      return fc.boolean();
    case 'stream_options':
      return fc.record({ include_usage: fc.boolean() });
    case 'stop':
      return fc.oneof(fc.string({ minLength: 1, maxLength: 4 }), fc.array(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 4 }));
    case 'presence_penalty':
    case 'frequency_penalty':
      return fc.double({ min: -2, max: 2, noNaN: true });
    case 'seed':
      return fc.integer();
    case 'user':
    case 'suffix':
    case 'name':
    case 'tool_call_id':
      return s;
    case 'logit_bias':
      return fc.constantFrom({}, { '5': 1 });
    case 'top_k':
      return fc.integer({ min: -1, max: 600 });
    case 'repetition_penalty':
      return fc.double({ min: 0.01, max: 3, noNaN: true });
    case 'stop_token_ids':
      return fc.array(fc.nat(300), { maxLength: 4 });
    case 'logprobs':
      return fc.oneof(fc.integer({ min: 0, max: 5 }), fc.boolean());
    case 'best_of':
      return fc.integer({ min: 1, max: 2 });
    case 'top_logprobs':
      return fc.integer({ min: 0, max: 20 });
    case 'messages':
      return fc.array(fc.record({ role: fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool'), content: fc.oneof(s, fc.constant(null), fc.constant([{ type: 'text', text: 'hi' }])) }), { minLength: 1, maxLength: 4 });
    case 'role':
      return fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool', 'function', 'USER', '');
    case 'content':
      return fc.oneof(s, fc.constant(null), fc.array(fc.record({ type: fc.constantFrom('text', 'image_url', 'input_audio'), text: s }), { maxLength: 3 }));
    case 'tool_calls':
      return fc.array(fc.object({ maxDepth: 2 }), { maxLength: 2 });
    case 'chat_template_kwargs':
      return fc.oneof(fc.constant({}), fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }), fc.constantFrom({ messages: [] }, { add_generation_prompt: false }, { bos_token: 1 }));
    case 'response_format':
      return fc.constantFrom({ type: 'text' }, { type: 'json_object' }, { type: 'json_schema', json_schema: {} });
    case 'tools':
    case 'functions':
      return fc.constantFrom([], [{ type: 'function', function: { name: 'f' } }]);
    case 'tool_choice':
    case 'function_call':
      return fc.constantFrom('none', 'auto', 'required', { type: 'function' });
    case 'modalities':
      return fc.constantFrom(['text'], ['audio'], []);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Values of every wrong type, out of range, huge, deep or odd. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), maxLength: 4 }),
  fc.constantFrom(-1, 0, 1, 2, 3, 5, 6, 20, 21, 128, 129, -2.5, 2.5, 0.5, -0, 1e9, -1e9, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, 5e-324, '', ' ', '1', 'true', 'null', '\u0000', ...TRAVERSAL_NAMES),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 8 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
  fc.jsonValue({ maxDepth: 4 }),
  fc.tuple(fc.constantFrom('x', 'é', '\u{1F40B}', ' ', '\\', '"'), fc.integer({ min: 1000, max: 400_000 })).map(([u, n]) => new Long(u, n)),
  fc.tuple(fc.constantFrom<unknown>(1, 'a', null, [1], { a: 1 }), fc.integer({ min: 100, max: 100_000 })).map(([x, n]) => new LongArray(x, n)),
  fc.tuple(fc.constantFrom(['[', ']'], ['{"a":', '}']), fc.integer({ min: 10, max: 150_000 })).map(([[o, c], d]) => new Raw(() => deep(d, o!, c!))),
  fc.constantFrom('1e999', '-1e999', '1E400', '123456789012345678901234567890', '-0', '0.0000000000000000000000000000000000000000001', '1e-400', '9007199254740993').map((t) => new Raw(() => t)),
);

/** A cheap valid request to start from: a completion or a chat, streamed or not. */
const baseRequest = fc.record({
  chat: fc.boolean(),
  stream: fc.boolean(),
  max: fc.integer({ min: 1, max: 4 }),
  seed: fc.nat(1000),
});

function base(b: { chat: boolean; stream: boolean; max: number; seed: number }): Record<string, unknown> {
  const common = { model: SERVED_NAME, max_tokens: b.max, seed: b.seed, stream: b.stream };
  return b.chat ? { ...common, messages: [{ role: 'user', content: 'Who is Ishmael?' }] } : { ...common, prompt: 'Call me Ishmael.' };
}

/** A valid request with one field set to another value (valid or not), deleted, or added. */
const perturbed = fc
  .tuple(baseRequest, fc.nat(), fc.constantFrom('set-junk', 'set-junk', 'set-valid', 'delete', 'unknown', 'message'), junk)
  .chain(([b, pick, op, bad]) => {
    const body = base(b);
    const fields = b.chat ? CHAT_FIELDS : COMPLETION_FIELDS;
    const field = fields[pick % fields.length]!;
    if (op === 'set-junk') return fc.constant({ b, body: { ...body, [field]: bad }, what: `${field}=junk` });
    if (op === 'set-valid') return validValue(field).map((v) => ({ b, body: { ...body, [field]: v }, what: `${field}=valid` }));
    if (op === 'delete') {
      const { [field]: _gone, ...rest } = body;
      return fc.constant({ b, body: rest, what: `-${field}` });
    }
    if (op === 'unknown') return fc.string({ maxLength: 20 }).map((k) => ({ b, body: { ...body, [k === '__proto__' ? 'x__proto__' : k]: bad }, what: 'unknown field' }));
    // A field of a message (chat), or of the prompt list (completions).
    if (!b.chat) return fc.constant({ b, body: { ...body, prompt: ['Call me', bad] }, what: 'prompt[1]=junk' });
    const mf = MESSAGE_FIELDS[pick % MESSAGE_FIELDS.length]!;
    return fc.oneof(fc.constant(bad), validValue(mf)).map((v) => ({ b, body: { ...body, messages: [{ role: 'user', content: 'Hi', [mf]: v }] }, what: `messages[0].${mf}` }));
  });

/** Bodies that are not JSON objects of the right shape: invalid, truncated, deep, huge, binary. */
const badBody: fc.Arbitrary<() => Buffer> = fc.oneof(
  fc.string().map((s) => () => Buffer.from(s)),
  fc.jsonValue().map((v) => () => Buffer.from(JSON.stringify(v))),
  fc.dictionary(fc.constantFrom(...CHAT_FIELDS, ...COMPLETION_FIELDS), junk, { maxKeys: 6 }).map((d) => () => Buffer.from(toJson(d))),
  fc.tuple(baseRequest, fc.double({ min: 0, max: 1, noNaN: true })).map(([b, f]) => () => {
    const t = JSON.stringify(base(b));
    return Buffer.from(t.slice(0, Math.floor(f * t.length)));
  }),
  fc.constantFrom('', ' ', '\n', 'null', 'true', '0', '"x"', '[]', '{}', '{"prompt": NaN}', '{"prompt": Infinity}', "{'prompt': 'x'}", '{"prompt": "x",}', '{"prompt": "x"} {"prompt": "y"}', '{"prompt": "x" // c\n}', '\uFEFF{"prompt": "x", "model": "tiny", "max_tokens": 1}', '{"prompt": "\\ud800", "max_tokens": 1}', '{"prompt": "x", "prompt": 5}').map((s) => () => Buffer.from(s)),
  fc.tuple(fc.constantFrom(['[', ']'], ['{"a":', '}'], ['{"prompt":', '}'], ['{"messages":[', ']}']), fc.integer({ min: 1, max: 300_000 })).map(([[o, c], d]) => () => Buffer.from(deep(d, o!, c!))),
  fc.uint8Array({ maxLength: 2000 }).map((a) => () => Buffer.from(a)),
  fc.tuple(baseRequest, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([b, bytes]) => () => {
    const t = Buffer.from(JSON.stringify({ ...base(b), [b.chat ? 'messages' : 'prompt']: b.chat ? [{ role: 'user', content: '\u0001' }] : '\u0001' }));
    const at = t.indexOf('\\u0001');
    return Buffer.concat([t.subarray(0, at), Buffer.from(bytes.map((x) => (x === 0x22 || x === 0x5c ? 0xff : x))), t.subarray(at + 6)]);
  }),
  fc.integer({ min: 900_000, max: 1_200_000 }).map((n) => () => Buffer.from(JSON.stringify({ model: SERVED_NAME, prompt: 'x'.repeat(n), max_tokens: 1 }))),
);

const KNOWN_PATHS = ['/v1/completions', '/v1/chat/completions', '/v1/models', `/v1/models/${SERVED_NAME}`, '/health', '/metrics', '/', '/v1', '/v1/'];
const TRAVERSAL_PATHS = [
  '/v1/models/../../etc/passwd',
  '/../../../../etc/passwd',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '/v1/models/..%2f..%2fconfig.json',
  '//etc/passwd',
  '///etc/passwd',
  '/etc/passwd',
  '/config.json',
  '/tokenizer.json',
  '/model.safetensors',
  '/v1/config.json',
  '/v1/models/tiny/config.json',
  '/v1/models/tiny/../config.json',
  '/v1/models/%2fetc%2fpasswd',
  '/v1/models/config.json',
  '/v1/../config.json',
  '/..',
  '/.',
  '/v1//completions',
  '/V1/COMPLETIONS',
  '/v1/completions/',
  '/v1/completions?x=1&model=../../etc/passwd',
  '/v1/completions#x',
  '/health/../config.json',
  '/v1/models/tiny%00.json',
  '/v1/models/%E0%A4%A',
  '/v1/models/%',
  '/%ZZ',
  '/v1/models/' + 'a'.repeat(5000),
  encodeURI('/\u00e9\u{1F40B}'),
  'http://evil.example/v1/models',
  '*',
];
const segment = fc.oneof(fc.constantFrom('..', '.', '%2e%2e', '%2E%2E', '%2f', '%5c', '%00', '', 'v1', 'models', 'completions', 'etc', 'passwd', 'config.json', SERVED_NAME), fc.string({ maxLength: 10 }).map(encodeURIComponent));
const anyPath = fc.oneof(
  { arbitrary: fc.constantFrom(...KNOWN_PATHS), weight: 3 },
  { arbitrary: fc.constantFrom(...TRAVERSAL_PATHS), weight: 3 },
  { arbitrary: fc.array(segment, { maxLength: 8 }).map((s) => '/' + s.join('/')), weight: 3 },
  { arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => '/v1/' + 'x'.repeat(n)), weight: 1 },
);
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE'];

/** Header sets node:http can send (legal names and values), some lying about the body. */
const headerSet = (key: string): fc.Arbitrary<Record<string, string>> =>
  fc.record(
    {
      'content-type': fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/json; charset=utf-16', '*/*', 'garbage'),
      authorization: fc.oneof(
        { arbitrary: fc.constant(`Bearer ${key}`), weight: 6 },
        { arbitrary: fc.constantFrom('', 'Bearer', 'Bearer ', `bearer ${key}`, `Bearer  ${key}  `, `Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer ${key}x`, `Bearer ${key} ${key}`, `Token ${key}`), weight: 2 },
        { arbitrary: fc.integer({ min: 1000, max: 12_000 }).map((n) => `Bearer ${'k'.repeat(n)}`), weight: 1 },
      ),
      accept: fc.constantFrom('application/json', 'text/event-stream', '*/*', 'image/png'),
      'content-encoding': fc.constantFrom('gzip', 'br', 'identity', 'deflate'),
      'x-request-id': fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
      connection: fc.constantFrom('close', 'keep-alive', 'upgrade'),
      upgrade: fc.constantFrom('websocket', 'h2c'),
      expect: fc.constantFrom('100-continue', 'teapot'),
      'x-big': fc.integer({ min: 4000, max: 20_000 }).map((n) => 'b'.repeat(n)),
      'transfer-encoding': fc.constantFrom('chunked'),
    },
    { requiredKeys: [] },
  );

/** Raw bytes: request lines, headers and lengths node:http must refuse (or accept) on its own. */
function rawCase(key: string): fc.Arbitrary<FuzzCase> {
  const body = JSON.stringify({ model: SERVED_NAME, prompt: 'Call me Ishmael.', max_tokens: 2 });
  const auth = `Authorization: Bearer ${key}\r\n`;
  const req = (line: string, headers: string, b: string): Buffer => Buffer.from(`${line}\r\n${headers}\r\n${b}`, 'latin1');
  const cl = (b: string): string => `Content-Length: ${Buffer.byteLength(b, 'latin1')}\r\n`;
  const mk = (kind: string, bytes: () => Buffer, halfClose = false, head = false): FuzzCase => ({ via: 'raw', kind, bytes, halfClose, head });
  const weirdMethod = fc.oneof(fc.constantFrom('get', 'G E T', 'FOO', 'PRI', 'M-SEARCH', 'PROPFIND', 'PURGE', 'LINK', 'SOURCE', 'QUERY', 'CONNECT', ''), fc.string({ unit: 'binary-ascii', maxLength: 10 }));
  const weirdTarget = fc.oneof(
    fc.constantFrom('/v1/models/\u0000', '/health\u0000', '/a b', '/\u00ff\u00fe', '/v1/models/../../etc/passwd', '/%2e%2e/config.json', 'etc/passwd', '//etc/passwd', '', '/\t', '/\u007f', 'localhost:8000', 'http://x/health', 'https://x/../config.json'),
    fc.string({ unit: 'binary-ascii', maxLength: 30 }),
  );
  const weirdVersion = fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'HTTPS/1.1', 'http/1.1', 'HTTP/1.1 extra', '', 'HTTP/11');
  return fc.oneof(
    // The request line.
    fc.tuple(weirdMethod, weirdTarget, weirdVersion).map(([m, t, v]) => mk('raw-line', () => req(`${m} ${t} ${v}`.trimEnd(), `Host: x\r\n${auth}${cl(body)}`, body), false, m === 'HEAD')),
    // Header lines: bad names, bad values, folding, no colon, injection, many, huge.
    fc
      .constantFrom(
        'Ho st: x\r\n',
        'Host x\r\n',
        ': empty\r\n',
        'X-A: a\u0000b\r\n',
        'X-A: a\rb\r\n',
        'X-A: line1\r\n folded\r\n',
        'X-\u00e9: v\r\n',
        'Content-Type: application/json\r\nContent-Type: text/plain\r\n',
        'Authorization: Bearer a\r\nAuthorization: Bearer b\r\n',
        'Host: a\r\nHost: b\r\n',
        'Transfer-Encoding: gzip\r\n',
        'Transfer-Encoding: chunked, chunked\r\n',
        'Connection: close, upgrade\r\nUpgrade: h2c\r\n',
        'X-A: \u00ff\u00fe\r\n',
      )
      .map((h) => mk('raw-header', () => req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}${h}${h.startsWith('Transfer-Encoding') ? '' : cl(body)}`, body))),
    fc.integer({ min: 100, max: 3000 }).map((n) => mk('raw-many-headers', () => req('GET /health HTTP/1.1', `Host: x\r\n${Array.from({ length: n }, (_, i) => `X-H${i}: ${i}\r\n`).join('')}`, ''))),
    fc.integer({ min: 8000, max: 80_000 }).map((n) => mk('raw-huge-header', () => req('GET /v1/models HTTP/1.1', `Host: x\r\n${auth}X-Big: ${'h'.repeat(n)}\r\n`, ''))),
    // Content-Length lies and oddities.
    fc.integer({ min: 1, max: 10_000 }).map((extra) => mk('raw-length-more', () => req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}Content-Length: ${body.length + extra}\r\n`, body), true)),
    fc.integer({ min: 1, max: body.length - 1 }).map((n) => mk('raw-length-less', () => req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}Content-Length: ${n}\r\n`, body))),
    fc
      .constantFrom('-1', 'abc', '1e3', '0x10', '+5', ' 5', '5 5', '99999999999999999999999', '18446744073709551616', '')
      .map((v) => mk('raw-length-odd', () => req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}Content-Length: ${v}\r\n`, body), true)),
    fc.constant(mk('raw-length-and-chunked', () => req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}${cl(body)}Transfer-Encoding: chunked\r\n`, body))),
    // Chunked bodies: valid, bad sizes, huge sizes, truncated, extensions, trailers.
    fc.integer({ min: 1, max: 20 }).map((k) =>
      mk('raw-chunked', () => {
        const parts: string[] = [];
        for (let i = 0; i < body.length; i += k) parts.push(`${Math.min(k, body.length - i).toString(16)}\r\n${body.slice(i, i + k)}\r\n`);
        return req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}Transfer-Encoding: chunked\r\n`, parts.join('') + '0\r\n\r\n');
      }),
    ),
    fc
      .constantFrom('ZZ\r\nab\r\n0\r\n\r\n', 'ffffffffffffffff\r\nab\r\n', '-1\r\nab\r\n0\r\n\r\n', '2\r\nabcdef\r\n0\r\n\r\n', `1;${'e'.repeat(20_000)}\r\na\r\n0\r\n\r\n`, '2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n', '2\r\n{}\n0\n\n')
      .map((b) => mk('raw-chunked-bad', () => req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}Transfer-Encoding: chunked\r\n`, b), true)),
    // A whole valid request cut short (the client then ends its side).
    fc.double({ min: 0.01, max: 0.99, noNaN: true }).map((f) =>
      mk('raw-truncated', () => {
        const all = req('POST /v1/completions HTTP/1.1', `Host: x\r\n${auth}Content-Type: application/json\r\n${cl(body)}`, body);
        return all.subarray(0, Math.max(1, Math.floor(f * all.length)));
      }, true),
    ),
    // Random bytes, then the end.
    // (Empty lines alone are no request: node ignores them, as RFC 9112 lets it.)
    fc.uint8Array({ minLength: 1, maxLength: 500 }).map((a) => mk('raw-bytes', () => Buffer.concat([a.every((x) => x === 10 || x === 13) ? Buffer.from('X') : Buffer.alloc(0), Buffer.from(a), Buffer.from('\r\n\r\n')]), true)),
    // Pipelined: a valid request followed by a bad one on the same connection.
    fc.constant(mk('raw-pipelined', () => Buffer.concat([req('GET /health HTTP/1.1', 'Host: x\r\n', ''), req('GET /\u0000 HTTP/1.1', 'Host: x\r\n', '')]))),
  );
}

/** Every kind of case, weighted. */
export function fuzzCases(key: string): fc.Arbitrary<FuzzCase> {
  const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const gen = (b: { chat: boolean }): string => (b.chat ? '/v1/chat/completions' : '/v1/completions');
  return fc.oneof(
    // A valid request with one parameter perturbed.
    { arbitrary: perturbed.map((p): FuzzCase => ({ via: 'http', kind: `perturbed ${p.what}`, method: 'POST', path: gen(p.b), headers: auth, body: () => Buffer.from(toJson(p.body)) })), weight: 40 },
    // A valid request as is.
    { arbitrary: baseRequest.map((b): FuzzCase => ({ via: 'http', kind: 'valid', method: 'POST', path: gen(b), headers: auth, body: () => Buffer.from(JSON.stringify(base(b))) })), weight: 5 },
    // A body that is not the right JSON.
    { arbitrary: fc.tuple(fc.boolean(), badBody).map(([chat, body]): FuzzCase => ({ via: 'http', kind: 'bad-body', method: 'POST', path: gen({ chat }), headers: auth, body })), weight: 20 },
    // Any method on any path.
    {
      arbitrary: fc.tuple(fc.constantFrom(...METHODS), anyPath, fc.option(badBody, { nil: undefined })).map(([method, path, body]): FuzzCase => ({ via: 'http', kind: 'route', method, path, headers: auth, body })),
      weight: 12,
    },
    // Headers: content types, keys, encodings, expectations, huge values.
    {
      arbitrary: fc.tuple(baseRequest, headerSet(key)).map(([b, headers]): FuzzCase => ({ via: 'http', kind: `headers ${Object.keys(headers).join(',')}`, method: 'POST', path: gen(b), headers, body: () => Buffer.from(JSON.stringify(base(b))) })),
      weight: 8,
    },
    // HTTP that node:http's client would not send.
    { arbitrary: rawCase(key), weight: 15 },
  );
}

/** The outcome of one case. */
export type Verdict = { outcome: 'ok_2xx' | 'client_4xx' | 'server_5xx' | 'bad_error_body' | 'bad_2xx' | 'other_status' | 'hang' | 'reset'; status: number; detail?: string; leak: boolean };

/** Run one case against the server and judge the answer. */
export async function runCase(c: FuzzCase, host: string, port: number, markers: string[], timeoutMs = 5000): Promise<Verdict> {
  let a: Answer;
  let method: string;
  if (c.via === 'raw') {
    a = await rawExchange(host, port, c.bytes(), { timeoutMs, halfClose: c.halfClose, head: c.head });
    method = c.head ? 'HEAD' : 'POST';
  } else {
    method = c.method;
    a = await httpExchange(host, port, { method: c.method, path: c.path, headers: c.headers, body: c.body?.() }, timeoutMs);
  }
  const leak = leaks(a, markers);
  if (a.kind === 'timeout') return { outcome: 'hang', status: 0, detail: `no answer within ${timeoutMs} ms`, leak };
  if (a.kind === 'closed') return { outcome: 'reset', status: 0, detail: `closed without an answer (${a.error ?? 'no error'})`, leak };
  const s = a.status;
  if (s >= 200 && s < 300) {
    const why = wholeAnswer(a, method);
    return why === null ? { outcome: 'ok_2xx', status: s, leak } : { outcome: 'bad_2xx', status: s, detail: why, leak };
  }
  if (s >= 400 && s < 600) {
    if (method !== 'HEAD' && !isOpenAiError(s, a.body)) return { outcome: 'bad_error_body', status: s, detail: a.body.toString('utf8').slice(0, 200), leak };
    if (s >= 500) return { outcome: 'server_5xx', status: s, detail: a.body.toString('utf8').slice(0, 300), leak };
    return { outcome: 'client_4xx', status: s, leak };
  }
  return { outcome: 'other_status', status: s, detail: a.raw.toString('latin1').slice(0, 200), leak };
}

const describeCase = (c: FuzzCase): string =>
  c.via === 'raw'
    ? `raw ${c.kind}: ${JSON.stringify(c.bytes().toString('latin1').slice(0, 300))}`
    : `${c.kind}: ${c.method} ${c.path.slice(0, 200)} ${JSON.stringify(c.headers).slice(0, 200)} ${JSON.stringify((c.body?.() ?? Buffer.alloc(0)).toString('utf8').slice(0, 300))}`;

/** Prometheus samples of /metrics, by name (labels dropped; the last sample of a name wins). */
export async function metricsOf(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** fuzzHttp with its case count given (the test runs a few hundred). */
export async function runFuzz(o: CampaignOptions, cases: number, { concurrency = 4, timeoutMs = 5000 } = {}): Promise<CampaignLine> {
  const t0 = performance.now();
  const modelDir = join(o.workDir, 'serve-fuzz-model');
  const KEY = 'sk-fuzz';
  await writeTinyModel(modelDir);
  const markers = leakMarkers(modelDir);
  const all = fc.sample(fuzzCases(KEY), { seed: o.seed, numRuns: cases });
  const tally = { ok_2xx: 0, client_4xx: 0, server_5xx: 0, bad_error_body: 0, bad_2xx: 0, other_status: 0, hang: 0, reset: 0 };
  let crashes = 0;
  let leaksFound = 0;
  let healthFailures = 0;
  let internal = 0;
  let warnings = 0;
  let rssWarm = NaN;
  let rssEnd = NaN;
  let heapWarm = NaN;
  let heapEnd = NaN;
  let slowest = 0;
  let rssPeak = 0;
  let server = await startServe(modelDir, ['--api-key', KEY]);
  const warmup = Math.max(1, Math.floor(cases / 10));
  // /health, the memory samples and progress, every `every` cases.
  const every = Math.min(250, Math.max(10, Math.floor(cases / 20)));
  let restarting: Promise<void> | null = null;
  try {
    let next = 0;
    let done = 0;
    let reported = 0;
    const check = async (): Promise<void> => {
      const h = await httpExchange(server.host, server.port, { method: 'GET', path: '/health', headers: {} }, 5000);
      if (h.status !== 200) {
        healthFailures++;
        o.log(`fuzz http: /health answered ${h.kind} ${h.status} after ${done} cases`);
      }
      const rss = rssMb(server.pid);
      rssPeak = Math.max(rssPeak, rss || 0);
      if (done >= warmup && Number.isNaN(rssWarm)) {
        heapWarm = await server.heapAfterGcMb();
        rssWarm = rssMb(server.pid);
      }
    };
    const worker = async (): Promise<void> => {
      for (let i = next++; i < all.length; i = next++) {
        const c = all[i]!;
        const tc = performance.now();
        const v = await runCase(c, server.host, server.port, markers, timeoutMs);
        slowest = Math.max(slowest, performance.now() - tc);
        tally[v.outcome]++;
        if (v.leak) {
          leaksFound++;
          o.log(`fuzz http: case ${i} (seed ${o.seed}) LEAKED a file: ${describeCase(c)}`);
        }
        if (v.outcome !== 'ok_2xx' && v.outcome !== 'client_4xx') o.log(`fuzz http: case ${i} (seed ${o.seed}) ${v.outcome} ${v.status} ${v.detail ?? ''}\n  ${describeCase(c)}`);
        done++;
        if (server.exit() !== null) {
          // One restart, whichever worker sees the death first; the others wait for it.
          if (restarting === null) {
            const dead = server;
            crashes++;
            o.log(`fuzz http: the server died (${dead.exit()}) at case ${i} (seed ${o.seed}): ${describeCase(c)}\n${dead.stderr().slice(-3000)}`);
            internal += dead.internalErrors();
            warnings += dead.warnings();
            restarting = startServe(modelDir, ['--api-key', KEY]).then((s) => void (server = s)).finally(() => (restarting = null));
          }
          await restarting;
        }
        if (done - reported >= every) {
          reported = done;
          await check();
          if (done % 2000 < every) o.log(`fuzz http: ${done}/${cases} cases, ${JSON.stringify(tally)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await check();
    heapEnd = await server.heapAfterGcMb();
    rssEnd = rssMb(server.pid);
    internal += server.internalErrors();
    warnings += server.warnings();
    if (internal + warnings > 0) o.log(`fuzz http: internal errors or warnings on the server's stderr:\n${server.stderr().slice(-3000)}`);
  } finally {
    await server.kill();
    rmSync(modelDir, { recursive: true, force: true });
  }
  return {
    part: 'fuzz',
    target: 'http',
    cases,
    ok_2xx: tally.ok_2xx,
    client_4xx: tally.client_4xx,
    server_5xx: tally.server_5xx,
    bad_error_body: tally.bad_error_body,
    bad_2xx: tally.bad_2xx,
    other_status: tally.other_status,
    hangs: tally.hang + tally.reset,
    slowest_case_ms: Math.round(slowest),
    resets: tally.reset,
    crashes,
    traversal_leaks: leaksFound,
    health_failures: healthFailures,
    internal_errors: internal,
    server_warnings: warnings,
    rss_warm_mb: +rssWarm.toFixed(1),
    rss_end_mb: +rssEnd.toFixed(1),
    rss_peak_mb: +rssPeak.toFixed(1),
    rss_growth_mb: +(rssEnd - rssWarm).toFixed(1),
    heap_warm_mb: +heapWarm.toFixed(1),
    heap_end_mb: +heapEnd.toFixed(1),
    heap_growth_mb: +(heapEnd - heapWarm).toFixed(1),
    seconds: +((performance.now() - t0) / 1000).toFixed(1),
    seed: o.seed,
  };
}

/** Fuzz the HTTP server: 10,000 cases at scale 1. */
export const fuzzHttp: CampaignPart = async (o) => [await runFuzz(o, Math.max(100, Math.round(10_000 * o.scale)))];

// ---------------------------------------------------------------------------------------------
// serverAbuse

/** A small seeded PRNG (mulberry32): the abuse loops' choices, replayable from the seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PROMPTS = ['Call me Ishmael.', 'Some years ago, never mind how long precisely', 'the watery part of the world', 'I thought I would sail about a little', 'x'];

/** A well-formed generation request (kept to a small prompt so it always fits the 128-token context). */
function wellFormedRequest(r: () => number, o: { stream?: boolean; big?: boolean; huge?: boolean } = {}): { path: string; body: Record<string, unknown>; n: number } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const chat = o.huge || r() < 0.5;
  const stream = o.stream ?? r() < 0.6;
  // huge: 64 choices with 20 top logprobs each, ~5.7 MB of SSE: more than the kernel's socket
  // buffers hold (~4 MB on loopback), so a client that does not read makes the server wait.
  const n = o.huge ? 64 : o.big ? 4 : r() < 0.2 ? 2 : 1;
  // At most 60 tokens: with the longest prompt rendered by the chat template, well inside the 128-token context.
  const max = o.big ? 60 : 1 + Math.floor(r() * 48);
  const body: Record<string, unknown> = { model: SERVED_NAME, max_tokens: max, n, stream, temperature: pick([0, 0.7, 1, 1.5]), seed: Math.floor(r() * 1e6) };
  if (r() < 0.3) body.top_p = 0.9;
  if (r() < 0.2) body.top_k = 20;
  if (r() < 0.2) body.stop = [pick(['e', ' the', '.', 'zz'])];
  if (r() < 0.3 || o.big) body.ignore_eos = true;
  if (stream && r() < 0.3) body.stream_options = { include_usage: true };
  if (chat) {
    body.messages = [{ role: 'user', content: pick(PROMPTS) }];
    if (r() < 0.3 || o.big) Object.assign(body, { logprobs: true, top_logprobs: o.big ? 20 : 3 });
    return { path: '/v1/chat/completions', body, n };
  }
  body.prompt = pick(PROMPTS);
  if (r() < 0.3 || o.big) body.logprobs = o.big ? 5 : 2;
  return { path: '/v1/completions', body, n };
}

/** Every choice index 0..n-1 seen with a finish_reason. */
function choicesDone(a: Answer, n: number): string | null {
  const text = a.body.toString('utf8');
  const finished = new Set<number>();
  if ((a.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    for (const e of text.split('\n\n')) {
      if (!e.startsWith('data: {')) continue;
      for (const c of (JSON.parse(e.slice(6)) as { choices?: { index: number; finish_reason: string | null }[] }).choices ?? []) if (c.finish_reason) finished.add(c.index);
    }
  } else {
    for (const c of (JSON.parse(text) as { choices: { index: number; finish_reason: string | null }[] }).choices) if (c.finish_reason) finished.add(c.index);
  }
  return finished.size === n ? null : `${finished.size} of ${n} choices finished`;
}

/** Read a streamed answer slowly: nothing for `pauseMs`, then a byte at a time for `trickleMs`, then the rest. */
function slowRead(host: string, port: number, path: string, body: string, pauseMs: number, trickleMs: number, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let settled = false;
    const sock = net.connect({ host, port });
    sock.pause();
    const finish = (kind: Answer['kind'], error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(got);
      const r = parseResponse(raw, true);
      resolve(kind !== 'timeout' && r ? { kind: 'response', ...r, raw, error } : { kind, status: 0, headers: {}, body: Buffer.alloc(0), raw, error });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    const complete = (): boolean => {
      // A stream ends with the last chunk of its chunked body (parsing all of it at every read would be quadratic).
      if (!got.at(-1)!.toString('latin1').endsWith('\r\n\r\n')) return false;
      const r = parseResponse(Buffer.concat(got), false);
      if (r) finish('response');
      return r !== null;
    };
    sock.on('error', (e: NodeJS.ErrnoException) => finish('closed', e.code ?? e.message));
    sock.on('end', () => finish('closed'));
    sock.on('connect', () => {
      sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      setTimeout(() => {
        const t0 = Date.now();
        const trickle = (): void => {
          if (settled) return;
          if (Date.now() - t0 > trickleMs) {
            sock.on('data', (d: Buffer) => {
              got.push(d);
              complete();
            });
            sock.resume();
            return;
          }
          const b = sock.read(1) as Buffer | null;
          if (b) got.push(b);
          if (b && complete()) return;
          setTimeout(trickle, 2);
        };
        trickle();
      }, pauseMs);
    });
  });
}

/** Requests that are wrong, each a 4xx with an OpenAI error body. */
function malformedRequest(r: () => number, host: string, port: number): { what: string; send: () => Promise<Answer> } {
  const post = (path: string, body: string | Buffer, what: string, headers: Record<string, string> = { 'content-type': 'application/json' }) => ({
    what,
    send: () => httpExchange(host, port, { method: 'POST', path, headers, body: Buffer.from(body) }, 30_000),
  });
  const raw = (bytes: string, what: string, halfClose = false) => ({ what, send: () => rawExchange(host, port, Buffer.from(bytes, 'latin1'), { timeoutMs: 30_000, halfClose }) });
  const chat = (extra: Record<string, unknown>) => JSON.stringify({ model: SERVED_NAME, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, ...extra });
  const all = [
    () => post('/v1/chat/completions', '{"messages": [', 'truncated JSON'),
    () => post('/v1/completions', "{'prompt': 'x'}", 'invalid JSON'),
    () => post('/v1/completions', '', 'empty body'),
    () => post('/v1/completions', '[1, 2]', 'an array body'),
    () => post('/v1/chat/completions', chat({ temperature: 'hot' }), 'a wrong type'),
    () => post('/v1/chat/completions', chat({ top_p: 7 }), 'out of range'),
    () => post('/v1/chat/completions', chat({ n: 0 }), 'n = 0'),
    () => post('/v1/chat/completions', chat({ model: 'gpt-4' }), 'an unknown model'),
    () => post('/v1/chat/completions', JSON.stringify({ model: SERVED_NAME }), 'no messages'),
    () => post('/v1/chat/completions', chat({ messages: [{ role: 'robot', content: 'Hi' }] }), 'an unknown role'),
    () => post('/v1/chat/completions', chat({ tools: [{ type: 'function', function: { name: 'f' } }] }), 'an unsupported parameter'),
    () => post('/v1/chat/completions', chat({ stream_options: { include_usage: true } }), 'stream_options without stream'),
    () => post('/v1/completions', JSON.stringify({ model: SERVED_NAME, prompt: 'Hi', max_tokens: 1000 }), 'over the context'),
    () => post('/v1/completions', JSON.stringify({ model: SERVED_NAME, prompt: [100000] }), 'a token id outside the vocabulary'),
    () => post('/v1/completions', '['.repeat(200_000), 'deep nesting'),
    () => post('/v1/completions', JSON.stringify({ model: SERVED_NAME, prompt: 'x'.repeat(2 << 20) }), 'a body over the limit'),
    () => post('/v1/completions', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'invalid UTF-8'),
    () => ({ what: 'a wrong method', send: () => httpExchange(host, port, { method: 'PUT', path: '/v1/completions', headers: {}, body: Buffer.from('{}') }, 30_000) }),
    () => ({ what: 'an unknown route', send: () => httpExchange(host, port, { method: 'POST', path: '/v1/embeddings', headers: {}, body: Buffer.from('{}') }, 30_000) }),
    () => raw('GARBAGE\r\n\r\n', 'garbage bytes'),
    () => raw(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'h'.repeat(40_000)}\r\n\r\n`, 'huge headers'),
    () => raw('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"prompt": "Call', 'a body shorter than its Content-Length', true),
    () => raw('POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n', 'a bad chunk size', true),
  ];
  return all[Math.floor(r() * all.length)]!();
}

/** Ways to name a file in place of the model, or a path in place of a route. */
function traversalAttempt(r: () => number, host: string, port: number, modelDir: string): { what: string; send: () => Promise<Answer> } {
  const names = [...TRAVERSAL_NAMES, modelDir, join(modelDir, 'config.json'), `../${modelDir.split('/').pop()}/config.json`, '/proc/self/environ', '~/.ssh/id_rsa'];
  const name = names[Math.floor(r() * names.length)]!;
  const how = Math.floor(r() * 4);
  if (how === 0) return { what: `model '${name}' (completions)`, send: () => httpExchange(host, port, { method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ model: name, prompt: 'Hi', max_tokens: 2 })) }, 30_000) };
  if (how === 1) return { what: `model '${name}' (chat)`, send: () => httpExchange(host, port, { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ model: name, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 })) }, 30_000) };
  if (how === 2) {
    const path = `/v1/models/${r() < 0.5 ? encodeURIComponent(name) : name.replace(/[^\x21-\x7e]/g, encodeURIComponent)}`;
    return { what: `GET ${path}`, send: () => rawExchange(host, port, Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 'latin1'), { timeoutMs: 30_000 }) };
  }
  const paths = [...TRAVERSAL_PATHS.filter((p) => p.startsWith('/') && !p.startsWith('/v1/models/tiny') && p !== '/v1/models/%E0%A4%A' && !p.includes('/v1//') && !p.startsWith('/v1/completions')), `/${modelDir}/config.json`, `/..${modelDir}/config.json`, '/v1/models/../../../../proc/self/environ'];
  const path = paths[Math.floor(r() * paths.length)]!;
  const method = r() < 0.5 ? 'GET' : 'POST';
  return { what: `${method} ${path}`, send: () => rawExchange(host, port, Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}`, 'latin1'), { timeoutMs: 30_000 }) };
}

/** serverAbuse with its stream count and length given (the test runs 16 streams for 10 s). */
export async function runAbuse(o: CampaignOptions, streams: number, seconds: number): Promise<CampaignLine> {
  const t0 = performance.now();
  const modelDir = join(o.workDir, 'serve-abuse-model');
  await writeTinyModel(modelDir);
  const markers = leakMarkers(modelDir);
  const c = {
    requests_ok: 0,
    requests_failed: 0,
    aborts: 0,
    slow_readers: 0,
    slow_readers_ok: 0,
    malformed: 0,
    malformed_4xx: 0,
    traversal_attempts: 0,
    traversal_refused: 0,
    traversal_leaks: 0,
  };
  // A KV cache smaller than 64 full contexts: under 64 streams sequences are preempted too.
  const server = await startServe(modelDir, ['--kv-cache-gb', '0.004']);
  const { host, port, url } = server;
  let rssPeak = 0;
  let rssBefore = NaN;
  let rssAfter = NaN;
  let heapBefore = NaN;
  let heapAfter = NaN;
  let rssAfterGc = NaN;
  let settle: Map<string, number> = new Map();
  let healthAfter = 0;
  const fail = (what: string, why: string): void => {
    c.requests_failed++;
    o.log(`abuse: FAILED ${what}: ${why}`);
  };
  try {
    // Idle baseline, after a few requests have warmed the server up.
    for (let i = 0; i < 8; i++) await httpExchange(host, port, { method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ prompt: 'Call me', max_tokens: 8 })) }, 30_000);
    await sleep(1000);
    const baseline = await metricsOf(url);
    const kvBaseline = baseline.get('vllm:kv_cache_usage_perc') ?? NaN;
    heapBefore = await server.heapAfterGcMb();
    rssBefore = rssMb(server.pid);
    o.log(`abuse: baseline kv=${kvBaseline} rss=${rssBefore.toFixed(1)} MB heap=${heapBefore.toFixed(1)} MB; ${streams} streams for ${seconds} s`);

    const deadline = Date.now() + seconds * 1000;
    const rssTrace: number[] = [];
    const sampler = setInterval(() => {
      const rss = rssMb(server.pid) || 0;
      rssPeak = Math.max(rssPeak, rss);
      rssTrace.push(rss);
      if (rssTrace.length % 15 === 0) o.log(`abuse: ${rssTrace.length} s, rss ${rss.toFixed(1)} MB, ${c.requests_ok} ok, ${c.requests_failed} failed, ${c.aborts} aborts, ${c.slow_readers} slow readers, ${c.malformed} malformed, ${c.traversal_attempts} traversal attempts`);
    }, 1000);
    const loop = async (k: number): Promise<void> => {
      const r = rng((o.seed * 1000003 + k) >>> 0);
      while (Date.now() < deadline && server.exit() === null) {
        const x = r();
        if (x < 0.45) {
          // Well-formed: must complete, every choice with a finish_reason, no error.
          const w = wellFormedRequest(r);
          const a = await httpExchange(host, port, { method: 'POST', path: w.path, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(w.body)) }, 120_000);
          const why = a.kind !== 'response' ? `${a.kind} ${a.error ?? ''}` : a.status !== 200 ? `status ${a.status}: ${a.body.toString('utf8').slice(0, 300)}` : (wholeAnswer(a, 'POST') ?? choicesDone(a, w.n));
          if (why === null) c.requests_ok++;
          else fail(`${w.path} ${JSON.stringify(w.body)}`, why);
        } else if (x < 0.6) {
          // The client goes away: mid-stream, before the answer, or in the middle of its body.
          c.aborts++;
          const w = wellFormedRequest(r, { stream: r() < 0.8 });
          w.body.max_tokens = 40 + Math.floor(r() * 80);
          w.body.ignore_eos = true;
          const how = r();
          if (how < 0.6) {
            const afterEvents = Math.floor(r() * 8);
            await new Promise<void>((resolve) => {
              const req = http.request({ host, port, method: 'POST', path: w.path, headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
                let seen = 0;
                res.on('data', () => {
                  if (++seen > afterEvents) req.destroy();
                });
                res.on('end', resolve);
                res.on('close', resolve);
                res.on('error', () => resolve());
              });
              req.on('error', () => resolve());
              req.on('close', () => resolve());
              req.end(JSON.stringify(w.body));
            });
          } else if (how < 0.85) {
            const ac = new AbortController();
            setTimeout(() => ac.abort(), Math.floor(r() * 600));
            try {
              const res = await fetch(`${url}${w.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(w.body), signal: ac.signal });
              await res.arrayBuffer();
            } catch {
              // aborted
            }
          } else {
            const body = JSON.stringify(w.body);
            const cut = Math.floor(r() * body.length);
            await new Promise<void>((resolve) => {
              const sock = net.connect({ host, port }, () => {
                sock.write(`POST ${w.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, cut)}`);
                setTimeout(() => sock.destroy(), Math.floor(r() * 200));
              });
              sock.on('error', () => {});
              sock.on('close', () => resolve());
            });
          }
        } else if (x < 0.7) {
          // A slow reader of a big stream: it must still get all of it.
          c.slow_readers++;
          const w = wellFormedRequest(r, { stream: true, big: true, huge: r() < 0.25 });
          const a = await slowRead(host, port, w.path, JSON.stringify(w.body), 500 + Math.floor(r() * 4500), 500 + Math.floor(r() * 2000), 180_000);
          const why = a.kind !== 'response' ? `${a.kind} ${a.error ?? ''}` : a.status !== 200 ? `status ${a.status}: ${a.body.toString('utf8').slice(0, 300)}` : (wholeAnswer(a, 'POST') ?? choicesDone(a, w.n));
          if (why === null) {
            c.slow_readers_ok++;
            c.requests_ok++;
          } else fail(`slow reader ${w.path} ${JSON.stringify(w.body)}`, why);
        } else if (x < 0.85) {
          c.malformed++;
          const m = malformedRequest(r, host, port);
          const a = await m.send();
          if (a.kind === 'response' && a.status >= 400 && a.status < 500 && isOpenAiError(a.status, a.body)) c.malformed_4xx++;
          else o.log(`abuse: malformed request (${m.what}) answered ${a.kind} ${a.status} ${a.error ?? ''}: ${a.body.toString('utf8').slice(0, 200)}`);
          if (leaks(a, markers)) c.traversal_leaks++;
        } else {
          c.traversal_attempts++;
          const t = traversalAttempt(r, host, port, modelDir);
          const a = await t.send();
          if (leaks(a, markers)) {
            c.traversal_leaks++;
            o.log(`abuse: LEAK by ${t.what}: ${a.body.toString('utf8').slice(0, 300)}`);
          }
          if (a.kind === 'response' && (a.status === 404 || a.status === 400 || a.status === 405) && isOpenAiError(a.status, a.body)) c.traversal_refused++;
          else o.log(`abuse: traversal attempt (${t.what}) answered ${a.kind} ${a.status}: ${a.body.toString('utf8').slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: streams }, (_, k) => loop(k)));
    clearInterval(sampler);
    if (server.exit() !== null) throw new Error(`the server died (${server.exit()}): ${server.stderr().slice(-3000)}`);

    // Back to idle: no running or waiting request, the KV cache as at the start, memory near where it was.
    const settleStart = Date.now();
    for (;;) {
      settle = await metricsOf(url);
      const idle = settle.get('vllm:num_requests_running') === 0 && settle.get('vllm:num_requests_waiting') === 0 && settle.get('vllm:kv_cache_usage_perc') === kvBaseline;
      if (idle || Date.now() - settleStart > 30_000) break;
      await sleep(200);
    }
    await sleep(seconds >= 60 ? 5000 : 1000);
    settle = await metricsOf(url);
    rssAfter = rssMb(server.pid);
    heapAfter = await server.heapAfterGcMb();
    rssAfterGc = rssMb(server.pid);
    healthAfter = (await httpExchange(host, port, { method: 'GET', path: '/health', headers: {} }, 5000)).status;
  } finally {
    await server.kill();
    rmSync(modelDir, { recursive: true, force: true });
  }
  const internal = server.internalErrors();
  const warnings = server.warnings();
  if (internal + warnings > 0) o.log(`abuse: internal errors or warnings on the server's stderr:\n${server.stderr().slice(-3000)}`);
  return {
    part: 'abuse',
    target: 'server',
    streams,
    seconds: +((performance.now() - t0) / 1000).toFixed(1),
    requests_ok: c.requests_ok,
    requests_failed: c.requests_failed,
    aborts: c.aborts,
    slow_readers: c.slow_readers,
    slow_readers_ok: c.slow_readers_ok,
    malformed: c.malformed,
    malformed_4xx: c.malformed_4xx,
    traversal_attempts: c.traversal_attempts,
    traversal_refused: c.traversal_refused,
    traversal_leaks: c.traversal_leaks,
    kv_after: settle.get('vllm:kv_cache_usage_perc') ?? NaN,
    running_after: settle.get('vllm:num_requests_running') ?? NaN,
    waiting_after: settle.get('vllm:num_requests_waiting') ?? NaN,
    health_after: healthAfter,
    internal_errors: internal,
    server_warnings: warnings,
    rss_before_mb: +rssBefore.toFixed(1),
    rss_peak_mb: +rssPeak.toFixed(1),
    rss_after_mb: +rssAfter.toFixed(1),
    rss_after_gc_mb: +rssAfterGc.toFixed(1),
    heap_before_mb: +heapBefore.toFixed(1),
    heap_after_mb: +heapAfter.toFixed(1),
    seed: o.seed,
  };
}

/** 64 streams for 3 minutes at scale 1 (at least 10 s; 16 streams below scale 0.25). */
export const serverAbuse: CampaignPart = async (o) => [await runAbuse(o, o.scale >= 0.25 ? 64 : 16, Math.max(10, Math.round(180 * o.scale)))];
