/**
 * The engine's service loop, run by the engine worker (engine-thread.ts) and, under tensor
 * parallelism, by the group's driver rank (tensor-parallel.ts): requests and aborts are taken
 * between steps, so a request joins the running batch at the next step; each step's events go out
 * with the engine's stats; 'close' ends it.
 */
import type { Engine } from './engine.js';
import type { FromWorker, ToWorker } from './engine-worker.js';
import type { EngineEvent } from './types.js';

export class EngineLoop {
  private closing = false;
  private wake: (() => void) | null = null;
  private readonly pendingEvents: EngineEvent[] = [];

  constructor(
    private readonly engine: Engine,
    private readonly post: (m: FromWorker) => void,
  ) {}

  /** A message from the engine's user (a bad request becomes its 'error' event). */
  receive(m: ToWorker): void {
    if (m.type === 'add') {
      try {
        this.engine.add(m.req);
      } catch (e) {
        this.pendingEvents.push({ type: 'error', requestId: m.req.id, message: (e as Error).message });
      }
    } else if (m.type === 'abort') this.pendingEvents.push(...this.engine.abort(m.id));
    else this.closing = true;
    this.wake?.();
  }

  /** Step while there is work, wait for messages when there is none; resolves after 'close'. */
  async run(): Promise<void> {
    const flush = (events: EngineEvent[]) => this.post({ type: 'events', events, stats: this.engine.stats() });
    while (!this.closing) {
      if (this.pendingEvents.length > 0) flush(this.pendingEvents.splice(0));
      if (this.engine.hasWork()) {
        flush(this.engine.step());
        // Let requests and aborts that arrived during the step in before the next one.
        await new Promise((resolve) => setImmediate(resolve));
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
      }
    }
  }
}
