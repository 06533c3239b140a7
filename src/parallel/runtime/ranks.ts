/**
 * Ranks as worker threads: `runRanks` starts N workers, each with its own backend (its own heap
 * and kernel threads: the machine's cores divided among the ranks, so N ranks never oversubscribe
 * them), a Communicator over one shared fabric, and the entry module's `rankMain(ctx)`. It resolves
 * with every rank's result in rank order, or rejects with a RankError naming the first rank that
 * failed (an exception, or its worker dying); the others are stopped through the fabric's abort
 * word, so one failure never leaves the rest waiting forever.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../../backend/backend.js';
import type { Backend } from '../../backend/backend.js';
import type { Communicator } from './comm.js';
import { createFabric, Fabric, type FabricSpec } from './fabric.js';

export class RankError extends Error {
  constructor(readonly rank: number, message: string) {
    super(`rank ${rank}: ${message}`);
    this.name = 'RankError';
  }
}

/** What a rank's entry function receives. */
export interface RankContext<D> {
  rank: number;
  size: number;
  comm: Communicator;
  backend: Backend;
  /** Kernel threads this rank's backend was given. */
  threads: number;
  data: D;
  /** A line for the launcher's log, prefixed with the rank. */
  log: (line: string) => void;
  /** A structured message for the launcher's onMessage (progress, events; structured-cloneable). */
  post: (message: unknown) => void;
}

/** An entry module exports `rankMain(ctx)`; its result must be structured-cloneable. */
export type RankMain<D, R> = (ctx: RankContext<D>) => R | Promise<R>;

export interface RunRanksOptions<D> {
  size: number;
  /** URL of the compiled module exporting rankMain. */
  entry: URL | string;
  /** Passed to every rank (structured-cloned). */
  data: D;
  /** Cores for all ranks together (default: the machine's); each rank gets max(1, floor(cores / size)). */
  cores?: number;
  backend?: BackendName;
  /** Bytes of each point-to-point channel's ring (default 1 MiB). */
  channelBytes?: number;
  log?: (line: string) => void;
  /** Messages ranks send with ctx.post. */
  onMessage?: (rank: number, message: unknown) => void;
}

/** Sent by a rank's worker. */
export type FromRank = { type: 'log'; line: string } | { type: 'post'; message: unknown } | { type: 'done'; result: unknown } | { type: 'error'; message: string; aborted: boolean };

/** @internal what rank-thread.ts receives */
export interface RankWorkerData {
  spec: FabricSpec;
  rank: number;
  entry: string;
  data: unknown;
  threads: number;
  backend?: BackendName;
}

export function threadsPerRank(size: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / size));
}

export async function runRanks<D, R>(o: RunRanksOptions<D>): Promise<R[]> {
  const { size } = o;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`runRanks: size must be a positive integer, got ${size}`);
  const spec = createFabric(size, o.channelBytes);
  const control = new Fabric(spec, 0); // the launcher's handle, used only to abort
  const threads = threadsPerRank(size, o.cores);
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const entry = typeof o.entry === 'string' ? o.entry : o.entry.href;
  const results: unknown[] = new Array(size);
  let first: RankError | null = null;
  let stopped: RankError | undefined;
  const fail = (rank: number, message: string) => {
    if (!first) first = new RankError(rank, message);
    control.abort(rank);
  };
  const workers = Array.from({ length: size }, (_, rank) => {
    const wd: RankWorkerData = { spec, rank, entry, data: o.data, threads, backend: o.backend };
    return new Worker(new URL('./rank-thread.js', import.meta.url), { workerData: wd });
  });
  await Promise.all(
    workers.map(
      (w, rank) =>
        new Promise<void>((resolve) => {
          let finished = false;
          w.on('message', (m: FromRank) => {
            if (m.type === 'log') log(`[rank ${rank}] ${m.line}`);
            else if (m.type === 'post') o.onMessage?.(rank, m.message);
            else if (m.type === 'done') {
              finished = true;
              results[rank] = m.result;
            } else {
              finished = true;
              // a rank stopped by another's failure reports the abort, possibly before the failing
              // rank's own report arrives: the failing rank is the news, the abort only a fallback
              if (!m.aborted) fail(rank, m.message);
              else stopped ??= new RankError(rank, m.message);
            }
          });
          w.on('error', (e) => {
            finished = true;
            fail(rank, `worker error: ${e.message}`);
          });
          w.on('exit', (code) => {
            if (!finished) fail(rank, `worker exited (code ${code}) before finishing`);
            resolve();
          });
        }),
    ),
  );
  if (first) throw first;
  if (stopped) throw stopped;
  return results as R[];
}
