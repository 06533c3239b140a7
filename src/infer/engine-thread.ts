/**
 * The engine worker's body (started by engine-worker.ts): load, then step while there is work,
 * reading requests and aborts between steps (engine-loop.ts). Every message it sends is a
 * FromWorker. Under tensor parallelism (tp > 1) the engine runs on the ranks (tensor-parallel.ts)
 * and this thread relays: requests to the driver rank, its messages back.
 */
import { randomUUID } from 'node:crypto';
import { BroadcastChannel, parentPort, workerData } from 'node:worker_threads';
import { createBackend, defaultThreads } from '../backend/index.js';
import { checkTokenizerFitsModel, loadModelWithReport, readConfig } from '../io/hf.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import { stopTokenIds } from '../model/config.js';
import { runRanks } from '../parallel/runtime/ranks.js';
import { setBackend } from '../tensor/index.js';
import { Engine } from './engine.js';
import { EngineLoop } from './engine-loop.js';
import type { FromWorker, StartEngineOptions, ToWorker } from './engine-worker.js';
import type { TensorParallelRankData } from './tensor-parallel.js';

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  const o = workerData as Omit<StartEngineOptions, 'log'>;
  if ((o.tp ?? 1) > 1) return relayToRanks(o);
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

  const loop = new EngineLoop(engine, post);
  port.on('message', (m: ToWorker) => loop.receive(m));
  // The context a request may use: the model's, or less when the KV cache holds less.
  post({ type: 'ready', maxContext: Math.min(engine.maxContext, engine.capacityTokens), eosTokenIds: stopTokenIds(model.config), stats: engine.stats(), description: be.describe() });
  await loop.run();
  engine.dispose();
  model.dispose();
  await be.dispose();
}

/**
 * The ranks of the tensor-parallel group as worker threads (runRanks: the threads asked for, else
 * SKYMOE_THREADS, else the cores, divided among them). Requests reach the driver rank over a BroadcastChannel only it listens to;
 * its messages (ready, events, logs) come back through runRanks. A rank that fails stops them all,
 * and its error, naming the rank, is the engine's fatal message.
 */
async function relayToRanks(o: Omit<StartEngineOptions, 'log'>): Promise<void> {
  const { threads, ...rest } = o;
  const data: TensorParallelRankData = { ...rest, channel: `skymoe-engine-${randomUUID()}` };
  const channel = new BroadcastChannel(data.channel);
  port.on('message', (m: ToWorker) => channel.postMessage(m));
  try {
    await runRanks<TensorParallelRankData, void>({
      size: o.tp!,
      entry: new URL('./tensor-parallel.js', import.meta.url),
      data,
      cores: threads ?? defaultThreads(), // SKYMOE_THREADS, else every core
      backend: o.backend,
      log: (line) => post({ type: 'log', line }),
      onMessage: (_rank, m) => post(m as FromWorker),
    });
  } finally {
    channel.close();
  }
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    post({ type: 'fatal', message: e.message });
    process.exit(1);
  },
);
