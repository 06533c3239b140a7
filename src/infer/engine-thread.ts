/**
 * The engine worker's body (started by engine-worker.ts): load, then step while there is work,
 * reading requests and aborts between steps. Every message it sends is a FromWorker.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createBackend } from '../backend/index.js';
import { checkTokenizerFitsModel, loadModelWithReport, readConfig } from '../io/hf.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import { stopTokenIds } from '../model/config.js';
import { setBackend } from '../tensor/index.js';
import { Engine } from './engine.js';
import type { FromWorker, StartEngineOptions, ToWorker } from './engine-worker.js';
import type { EngineEvent } from './types.js';

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  const o = workerData as Omit<StartEngineOptions, 'log'>;
  const t0 = performance.now();
  const be = await createBackend({ name: o.backend, threads: o.threads });
  setBackend(be);
  const tokenizer = await loadTokenizer(o.model);
  checkTokenizerFitsModel(tokenizer, readConfig(o.model), o.model);
  const { model, report } = loadModelWithReport(o.model, be, { dtype: o.dtype ?? 'auto' });
  const engine = new Engine(model, tokenizer, o);
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  post({
    type: 'log',
    line: `[loaded ${o.model} in ${((performance.now() - t0) / 1000).toFixed(2)} s on ${be.describe()}: ${gib(report.mappedBytes)} GiB mapped, ${gib(report.heapBytes)} GiB in the heap; KV cache ${engine.kv.numBlocks} blocks of ${engine.kv.blockSize} (${engine.capacityTokens} positions, ${gib(engine.kv.bytes)} GiB)]`,
  });

  let closing = false;
  let wake: (() => void) | null = null;
  const pendingEvents: EngineEvent[] = [];
  port.on('message', (m: ToWorker) => {
    if (m.type === 'add') {
      try {
        engine.add(m.req);
      } catch (e) {
        pendingEvents.push({ type: 'error', requestId: m.req.id, message: (e as Error).message });
      }
    } else if (m.type === 'abort') pendingEvents.push(...engine.abort(m.id));
    else closing = true;
    wake?.();
  });
  // The context a request may use: the model's, or less when the KV cache holds less.
  post({ type: 'ready', maxContext: Math.min(engine.maxContext, engine.capacityTokens), eosTokenIds: stopTokenIds(model.config), stats: engine.stats(), description: be.describe() });

  const flush = (events: EngineEvent[]) => post({ type: 'events', events, stats: engine.stats() });
  while (!closing) {
    if (pendingEvents.length > 0) flush(pendingEvents.splice(0));
    if (engine.hasWork()) {
      flush(engine.step());
      // Let requests and aborts that arrived during the step in before the next one.
      await new Promise((resolve) => setImmediate(resolve));
    } else {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
    }
  }
  engine.dispose();
  model.dispose();
  await be.dispose();
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    post({ type: 'fatal', message: e.message });
    process.exit(1);
  },
);
