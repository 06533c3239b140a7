/**
 * A real `skymoe serve` under load, one machine-readable line per figure:
 *   serve model=bench dtype=bf16 streams=32 requests=... tokens_per_s=... speedup=... ttft_p50_ms=... ttft_p99_ms=... itl_p50_ms=... itl_p99_ms=... errors=0
 * The server runs in its own process on the `bench` preset (0.62B parameters, 0.2B active) in bf16
 * and FP8, memory-mapped (the checkpoints bench:decode writes, cached in SKYMOE_BENCH_DIR, default
 * <tmpdir>/skymoe-bench-decode). Clients: C concurrent streams (1, 8, 32, 64), each sending
 * streaming /v1/completions requests back to back with a fixed mix of prompt and answer lengths
 * (prompts of 32/64/128 token ids, answers of 32/64/96 tokens with ignore_eos, so every run
 * generates the same tokens), until each stream has sent its share. tokens_per_s = generated
 * tokens / wall time over all streams; speedup = tokens_per_s / the 1-stream figure of the same
 * dtype (the ceiling batching raises: one stream is bound by reading the weights once per token).
 * Time to first token and inter-token latency are measured by the client from the SSE chunks.
 * Run: npm run bench:serve [-- --dtypes bf16,fp8] [--streams 1,8,32,64] [--requests-per-stream 2]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantizeCheckpoint } from '../src/quant/quantize.js';
import { makeCheckpoint } from './make-checkpoint.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const DTYPES = (arg('dtypes') ?? 'bf16,fp8').split(',');
const STREAMS = (arg('streams') ?? '1,8,32,64').split(',').map(Number);
const PER_STREAM = Number(arg('requests-per-stream') ?? 2);
const DIR = process.env.SKYMOE_BENCH_DIR ?? join(tmpdir(), 'skymoe-bench-decode');
const PROMPTS = [32, 64, 128];
const ANSWERS = [32, 64, 96];
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

const log = (m: string) => process.stderr.write(`${m}\n`);

async function prepare(): Promise<void> {
  const f32 = join(DIR, 'f32');
  if (!existsSync(join(f32, 'config.json'))) {
    log(`bench:serve: writing the bench model to ${f32} (once)`);
    await makeCheckpoint({ preset: 'bench', layout: 'mixtral', dtype: 'f32', out: f32, seed: 7 }, log);
  }
  for (const to of DTYPES) {
    if (to !== 'f32' && !existsSync(join(DIR, to, 'config.json'))) {
      log(`bench:serve: quantize --to ${to}`);
      quantizeCheckpoint(f32, join(DIR, to), { to: to as 'bf16' | 'fp8' });
    }
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startServer(model: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [MAIN, 'serve', '--model', model, '--port', String(port), '--max-num-seqs', '64', '--served-model-name', 'bench'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`skymoe serve exited (${proc.exitCode}): ${err}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) return { url, proc };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  proc.kill('SIGKILL');
  throw new Error(`skymoe serve did not become ready: ${err}`);
}

interface Timing {
  tokens: number;
  ttft: number;
  itl: number[];
}

/** One streaming completion; resolves with its token count and latencies (ms). */
async function complete(url: string, prompt: number[], maxTokens: number): Promise<Timing> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let ttft = -1, last = 0, tokens = 0, buf = '';
  const itl: number[] = [];
  const decoder = new TextDecoder();
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const msg = JSON.parse(line.slice(6)) as { choices: unknown[]; usage?: { completion_tokens: number } | null };
      const now = performance.now();
      if (msg.usage) tokens = msg.usage.completion_tokens;
      if (msg.choices.length === 0) continue;
      if (ttft < 0) ttft = now - t0;
      else itl.push(now - last);
      last = now;
    }
  }
  return { tokens, ttft, itl };
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function load(url: string, streams: number): Promise<{ tokensPerS: number; requests: number; ttft: number[]; itl: number[]; errors: number }> {
  const ttft: number[] = [], itl: number[] = [];
  let tokens = 0, errors = 0, requests = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: streams }, async (_, s) => {
      for (let j = 0; j < PER_STREAM; j++) {
        const k = s * PER_STREAM + j;
        const prompt = Array.from({ length: PROMPTS[k % 3]! }, (_, i) => 1 + ((k * 7919 + i * 104729) % 8000));
        try {
          const t = await complete(url, prompt, ANSWERS[(k + 1) % 3]!);
          tokens += t.tokens;
          ttft.push(t.ttft);
          itl.push(...t.itl);
          requests++;
        } catch (e) {
          errors++;
          log(`bench:serve: ${(e as Error).message}`);
        }
      }
    }),
  );
  return { tokensPerS: tokens / ((performance.now() - t0) / 1000), requests, ttft, itl, errors };
}

async function main(): Promise<void> {
  await prepare();
  for (const dtype of DTYPES) {
    const { url, proc } = await startServer(join(DIR, dtype));
    try {
      await complete(url, [1, 2, 3, 4], 8); // warm the page cache and the code
      let single = NaN;
      for (const streams of STREAMS) {
        const r = await load(url, streams);
        if (streams === 1) single = r.tokensPerS;
        const f = (x: number) => x.toFixed(0);
        console.log(
          `serve model=bench dtype=${dtype} streams=${streams} requests=${r.requests} tokens_per_s=${r.tokensPerS.toFixed(1)} speedup=${(r.tokensPerS / single).toFixed(1)} ttft_p50_ms=${f(pct(r.ttft, 50))} ttft_p99_ms=${f(pct(r.ttft, 99))} itl_p50_ms=${f(pct(r.itl, 50))} itl_p99_ms=${f(pct(r.itl, 99))} errors=${r.errors}`,
        );
      }
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  }
}

await main();
