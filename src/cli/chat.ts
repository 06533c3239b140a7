/**
 * `skymoe chat --model DIR`: a terminal chat on the serving engine (in a worker, as `serve`): the
 * conversation is rendered with the model's chat template (or the default ChatML one) every turn,
 * replies stream as they are generated. Commands: /reset (forget the conversation, keep the system
 * message), /exit (or Ctrl-D). Ctrl-C stops a reply (what was generated stays in the history);
 * at the prompt it exits.
 */
import { createInterface } from 'node:readline';
import { basename, resolve } from 'node:path';
import type { BackendName } from '../backend/backend.js';
import { startEngine } from '../infer/engine-worker.js';
import { DEFAULT_PARAMS, type EngineHandle } from '../infer/types.js';
import { loadTokenizer, type Tokenizer } from '../io/tokenizer/index.js';
import type { LoadDType } from '../io/weights.js';
import { addEndOfTurnStop, checkChatTemplate, renderChatPrompt } from '../serve/chat-prompt.js';
import type { ChatRequestMessage } from '../serve/schemas.js';
import { checkTensorParallelFlag } from './common.js';

export interface ChatCliOptions {
  model: string;
  system?: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number;
  dtype?: LoadDType;
  backend?: BackendName;
  threads?: number;
  kvCacheGb?: number;
  tp?: number;
  tpExperts?: 'edp' | 'etp';
}

export async function runChat(o: ChatCliOptions): Promise<void> {
  checkTensorParallelFlag(o.model, o.tp, o.tpExperts);
  const tokenizer = await loadTokenizer(o.model);
  checkChatTemplate(tokenizer);
  const engine = await startEngine({
    model: o.model,
    modelName: basename(resolve(o.model)),
    dtype: o.dtype,
    backend: o.backend,
    threads: o.threads,
    tp: o.tp,
    tpExperts: o.tpExperts,
    maxNumSeqs: 1,
    kvCacheBytes: o.kvCacheGb === undefined ? undefined : Math.round(o.kvCacheGb * 2 ** 30),
  });
  const interactive = process.stdin.isTTY === true;
  process.stderr.write(`[chat with ${o.model}: /reset forgets the conversation, /exit or Ctrl-D leaves${interactive ? ', Ctrl-C stops a reply' : ''}]\n`);
  const system: ChatRequestMessage[] = o.system ? [{ role: 'system', content: o.system }] : [];
  let history: ChatRequestMessage[] = [...system];
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, prompt: interactive ? '> ' : '' });
  let reply: AbortController | null = null;
  let turn = 0;
  rl.on('SIGINT', () => {
    if (reply) reply.abort();
    else rl.close();
  });
  const lines = rl[Symbol.asyncIterator]();
  try {
    for (;;) {
      rl.prompt();
      const next = await lines.next();
      if (next.done) break;
      const line = next.value.trim();
      if (line === '') continue;
      if (line === '/exit' || line === '/quit') break;
      if (line === '/reset') {
        history = [...system];
        process.stderr.write('[conversation reset]\n');
        continue;
      }
      history.push({ role: 'user', content: line });
      reply = new AbortController();
      const text = await answer(engine, tokenizer, history, o, `chat-${turn++}`, reply.signal);
      reply = null;
      history.push({ role: 'assistant', content: text });
    }
  } finally {
    rl.close();
    await engine.close();
  }
}

/** Generate one reply, streaming it to stdout; returns its text. */
async function answer(engine: EngineHandle, tok: Tokenizer, history: ChatRequestMessage[], o: ChatCliOptions, id: string, signal: AbortSignal): Promise<string> {
  const prompt = renderChatPrompt(tok, history, { addGenerationPrompt: true });
  const ids = tok.encode(prompt.text, { allowSpecial: true, addSpecialTokens: false });
  const room = engine.maxContext - ids.length;
  if (room < 1) {
    process.stderr.write(`[the conversation has ${ids.length} tokens, the model's context is ${engine.maxContext}: /reset to start again]\n`);
    history.pop();
    return '';
  }
  const params = { ...DEFAULT_PARAMS, temperature: o.temperature, topP: o.topP, seed: o.seed ?? null, maxTokens: Math.min(o.maxTokens, room), stop: [] as string[], stopTokenIds: [...engine.eosTokenIds] };
  addEndOfTurnStop(tok, prompt, params);
  const t0 = performance.now();
  let text = '', generated = 0, reason = 'abort';
  for await (const ev of engine.generate({ id, prompt: ids, params }, signal)) {
    if (ev.type === 'error') throw new Error(ev.message);
    text += ev.text;
    process.stdout.write(ev.text);
    if (ev.type === 'tokens') generated += ev.ids.length;
    else reason = ev.reason;
  }
  const s = (performance.now() - t0) / 1000;
  process.stdout.write('\n');
  process.stderr.write(`[${ids.length} prompt tokens, ${generated} generated in ${s.toFixed(2)} s, stopped by ${signal.aborted ? 'Ctrl-C' : reason}]\n`);
  return text;
}
