/**
 * The engine off the main thread: `startEngine` starts a worker (engine-thread.ts) that loads the
 * backend, the model and the tokenizer and runs Engine.step() for as long as there is work, and
 * returns an EngineHandle whose calls are messages to it. The main thread (HTTP, the terminal)
 * stays responsive whatever the engine is doing; the worker reads new requests and aborts between
 * steps, so a request joins the running batch at the next step.
 */
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../backend/backend.js';
import type { LoadDType } from '../io/weights.js';
import type { EngineOptions } from './engine.js';
import { EngineBusyError, type EngineEvent, type EngineHandle, type EngineStats, type GenerationRequest } from './types.js';

export interface StartEngineOptions extends EngineOptions {
  /** Model directory (config.json, safetensors, tokenizer). */
  model: string;
  dtype?: LoadDType;
  backend?: BackendName;
  /** Kernel threads (under tensor parallelism: of all ranks together, divided among them). */
  threads?: number;
  /** Tensor-parallel ranks (worker threads) the model is split over (default 1: no split; see tensor-parallel.ts). */
  tp?: number;
  /** How a tensor-parallel group places MoE experts: 'edp' whole experts per rank (default, Skywork's) or 'etp' a slice of every expert. */
  tpExperts?: 'edp' | 'etp';
  /** Name requests must use (default: the directory's base name). */
  modelName?: string;
  /** Requests that may wait for a place in the batch; beyond it generate() throws EngineBusyError. Default 256. */
  maxQueue?: number;
  /** Lines to show the user while loading (default: stderr). */
  log?: (line: string) => void;
}

/** Messages to the worker. */
export type ToWorker = { type: 'add'; req: GenerationRequest } | { type: 'abort'; id: string } | { type: 'close' };

/** Messages from the worker. */
export type FromWorker =
  | { type: 'ready'; maxContext: number; eosTokenIds: number[]; stats: EngineStats; description: string }
  | { type: 'events'; events: EngineEvent[]; stats: EngineStats }
  | { type: 'log'; line: string }
  | { type: 'fatal'; message: string };

export class EngineStartError extends Error {
  override name = 'EngineStartError';
}

interface Pending {
  queue: EngineEvent[];
  wake: (() => void) | null;
  open: number;
  done: boolean;
}

class WorkerEngine implements EngineHandle {
  maxContext = 0;
  eosTokenIds: number[] = [];
  description = '';
  private latest: EngineStats = { running: 0, waiting: 0, kvBlocksUsed: 0, kvBlocksTotal: 0, promptTokens: 0, generatedTokens: 0, steps: 0, preemptions: 0 };
  private readonly pending = new Map<string, Pending>();
  private draining = false;
  private fatal: string | null = null;
  private drainWaiters: (() => void)[] = [];
  private exited: Promise<void>;

  constructor(
    private readonly worker: Worker,
    readonly modelName: string,
    readonly maxRequests: number,
  ) {
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
  }

  /** Messages after 'ready'. */
  onMessage(m: FromWorker): void {
    if (m.type === 'events') {
      this.latest = m.stats;
      for (const ev of m.events) this.deliver(ev);
    } else if (m.type === 'fatal') this.fail(m.message);
  }

  fail(message: string): void {
    this.fatal = message;
    for (const [id, p] of this.pending) {
      p.queue.push({ type: 'error', requestId: id, message: `the engine stopped: ${message}` });
      p.done = true;
      p.wake?.();
    }
    this.pending.clear();
    this.checkDrained();
  }

  private deliver(ev: EngineEvent): void {
    const p = this.pending.get(ev.requestId);
    if (!p) return; // aborted here already
    p.queue.push(ev);
    if (ev.type === 'error' || (ev.type === 'finish' && --p.open === 0)) {
      p.done = true;
      this.pending.delete(ev.requestId);
      this.checkDrained();
    }
    p.wake?.();
  }

  private checkDrained(): void {
    if (this.pending.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  stats(): EngineStats {
    return { ...this.latest };
  }

  generate(req: GenerationRequest, signal?: AbortSignal): AsyncGenerator<EngineEvent, void, undefined> {
    if (this.fatal !== null) throw new EngineBusyError(`the engine stopped: ${this.fatal}`, 'draining');
    if (this.draining) throw new EngineBusyError('the server is shutting down', 'draining');
    if (this.pending.has(req.id)) throw new Error(`request id '${req.id}' is already running`);
    if (this.pending.size >= this.maxRequests) throw new EngineBusyError(`${this.pending.size} requests are running or waiting (the limit is ${this.maxRequests}); try again later`, 'queue_full');
    const p: Pending = { queue: [], wake: null, open: req.params.n, done: false };
    this.pending.set(req.id, p);
    this.post({ type: 'add', req });
    const abort = () => {
      if (this.pending.delete(req.id)) {
        this.post({ type: 'abort', id: req.id });
        p.done = true;
        p.wake?.();
        this.checkDrained();
      }
    };
    if (signal?.aborted) abort();
    else signal?.addEventListener('abort', abort, { once: true });
    return (async function* () {
      try {
        for (;;) {
          while (p.queue.length > 0) yield p.queue.shift()!;
          if (p.done) return;
          await new Promise<void>((resolve) => (p.wake = resolve));
          p.wake = null;
        }
      } finally {
        signal?.removeEventListener('abort', abort);
        abort(); // the consumer stopped early: free the request's blocks
      }
    })();
  }

  private post(m: ToWorker): void {
    if (this.fatal === null) this.worker.postMessage(m);
  }

  drain(): Promise<void> {
    this.draining = true;
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.draining = true;
    for (const id of [...this.pending.keys()]) this.post({ type: 'abort', id });
    this.post({ type: 'close' });
    const timer = setTimeout(() => void this.worker.terminate(), 10_000);
    await this.exited;
    clearTimeout(timer);
    this.fail('closed');
  }
}

/** Start the engine in a worker; resolves when the model is loaded and the engine ready. */
export function startEngine(opts: StartEngineOptions): Promise<EngineHandle & { description: string }> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const { log: _log, ...data } = opts;
  const modelName = opts.modelName ?? (opts.model.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || 'model');
  const worker = new Worker(new URL('./engine-thread.js', import.meta.url), { workerData: data });
  return new Promise((resolve, reject) => {
    let engine: WorkerEngine | null = null;
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'log') log(m.line);
      else if (engine) engine.onMessage(m);
      else if (m.type === 'ready') {
        engine = new WorkerEngine(worker, modelName, (opts.maxNumSeqs ?? 64) + (opts.maxQueue ?? 256));
        engine.maxContext = m.maxContext;
        engine.eosTokenIds = m.eosTokenIds;
        engine.description = m.description;
        engine.onMessage({ type: 'events', events: [], stats: m.stats });
        resolve(engine);
      } else if (m.type === 'fatal') {
        reject(new EngineStartError(m.message));
        void worker.terminate();
      }
    });
    worker.on('error', (e) => {
      if (engine) engine.fail(e.message);
      else reject(new EngineStartError(e.message));
    });
    worker.on('exit', (code) => {
      if (!engine) reject(new EngineStartError(`the engine worker exited (code ${code}) before it was ready`));
    });
  });
}
