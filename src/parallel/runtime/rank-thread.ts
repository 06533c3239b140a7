/** A rank's worker (started by ranks.ts): backend, communicator, then the entry's rankMain. */
import { parentPort, workerData } from 'node:worker_threads';
import { createBackend } from '../../backend/index.js';
import { setBackend } from '../../tensor/index.js';
import { Communicator } from './comm.js';
import { FabricAborted } from './fabric.js';
import type { FromRank, RankMain, RankWorkerData } from './ranks.js';

const port = parentPort!;
const post = (m: FromRank) => port.postMessage(m);

async function main(): Promise<void> {
  const o = workerData as RankWorkerData;
  const comm = new Communicator(o.spec, o.rank);
  try {
    const backend = await createBackend({ name: o.backend, threads: o.threads });
    setBackend(backend);
    try {
      const mod = (await import(o.entry)) as { rankMain?: RankMain<unknown, unknown> };
      if (typeof mod.rankMain !== 'function') throw new Error(`${o.entry} exports no rankMain function`);
      const result = await mod.rankMain({ rank: o.rank, size: o.spec.size, comm, backend, threads: o.threads, data: o.data, log: (line) => post({ type: 'log', line }), post: (message) => post({ type: 'post', message }) });
      post({ type: 'done', result });
    } finally {
      await backend.dispose();
    }
  } catch (e) {
    const aborted = e instanceof FabricAborted;
    if (!aborted) comm.fabric.abort();
    if (!aborted && e instanceof Error && e.stack) post({ type: 'log', line: e.stack });
    post({ type: 'error', message: e instanceof Error ? e.message : String(e), aborted });
  }
}

void main();
