/**
 * `skymoe serve --model DIR`: the OpenAI-compatible server. It listens at once (/health answers
 * 503 while the model loads), loads the engine in a worker thread, prints one line with the URL
 * when ready, and on SIGTERM / SIGINT drains (finishes running requests, refuses new ones) and
 * exits 0; a second signal exits at once (code 1).
 */
import { basename, resolve } from 'node:path';
import type { BackendName } from '../backend/backend.js';
import { startEngine } from '../infer/engine-worker.js';
import type { EngineHandle } from '../infer/types.js';
import { loadTokenizer } from '../io/tokenizer/index.js';
import type { LoadDType } from '../io/weights.js';
import { checkChatTemplate, createServer } from '../serve/index.js';
import { checkTensorParallelFlag } from './common.js';

export interface ServeCliOptions {
  model: string;
  host: string;
  port: number;
  apiKey?: string;
  servedModelName?: string;
  dtype?: LoadDType;
  backend?: BackendName;
  threads?: number;
  kvCacheGb?: number;
  maxNumSeqs?: number;
  maxQueue?: number;
  tp?: number;
  tpExperts?: 'edp' | 'etp';
}

export async function runServe(o: ServeCliOptions): Promise<void> {
  if (o.kvCacheGb !== undefined && !(o.kvCacheGb > 0)) throw new Error(`--kv-cache-gb: expected a positive number of GiB, got ${o.kvCacheGb}`);
  checkTensorParallelFlag(o.model, o.tp, o.tpExperts);
  const modelName = o.servedModelName ?? basename(resolve(o.model));
  const tokenizer = await loadTokenizer(o.model);
  // Before the engine starts: a template that does not parse ends the command at once.
  checkChatTemplate(tokenizer);
  const engine = startEngine({
    model: o.model,
    modelName,
    dtype: o.dtype,
    backend: o.backend,
    threads: o.threads,
    tp: o.tp,
    tpExperts: o.tpExperts,
    kvCacheBytes: o.kvCacheGb === undefined ? undefined : Math.round(o.kvCacheGb * 2 ** 30),
    maxNumSeqs: o.maxNumSeqs,
    maxQueue: o.maxQueue,
  });
  const server = createServer({
    engine,
    tokenizer,
    modelName,
    apiKey: o.apiKey ?? process.env.SKYMOE_API_KEY,
    maxQueue: o.maxQueue,
    onInternalError: (e) => process.stderr.write(`[skymoe serve: internal error: ${(e as Error)?.stack ?? String(e)}]\n`),
  });
  const url = await server.listen(o.host, o.port);
  process.stderr.write(`[listening on ${url}, loading ${o.model}...]\n`);

  let loaded: EngineHandle | undefined;
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      process.stderr.write(`[${signal} again: exiting now]\n`);
      process.exit(1);
    }
    stopping = true;
    process.stderr.write(`[${signal}: finishing running requests, refusing new ones (${signal} again to exit at once)]\n`);
    void (async () => {
      await server.drain();
      // A model still loading is dropped with the process.
      await loaded?.close();
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    loaded = await engine;
  } catch (e) {
    await server.close();
    throw e;
  }
  if (!stopping) console.log(`serving '${modelName}' at ${url}/v1 (context ${loaded.maxContext} tokens)`);
}
