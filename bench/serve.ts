/**
 * A real `skymoe serve` under load, one machine-readable line per figure:
 *   serve model=bench dtype=bf16 streams=32 requests=... tokens_per_s=... speedup=... ttft_p50_ms=... ttft_p99_ms=... itl_p50_ms=... itl_p99_ms=... errors=0
 * The server runs in its own process on the `bench` preset (0.62B parameters, 0.2B active) in bf16
 * and FP8, memory-mapped (the checkpoints bench:decode writes, cached in SKYMOE_BENCH_DIR, default
 * <tmpdir>/skymoe-bench-decode). Clients: C concurrent streams (1, 8, 32, 64), each sending
 * streaming /v1/completions requests back to back with a fixed mix of prompt and answer lengths
 * (chat-like: prompts of 16/32/64 token ids, answers of 64/128/192 tokens with ignore_eos, so every run
 * generates the same tokens), each stream sending the three kinds in turn. tokens_per_s = generated
 * tokens / wall time over all streams; speedup = tokens_per_s / the 1-stream figure of the same
 * dtype (the ceiling batching raises: one stream is bound by reading the weights once per token).
 * Time to first token and inter-token latency are measured by the client from the SSE chunks.
 * The ceiling, measured in the same run: one stream is bound by reading the weights once per token;
 * many streams by the FLOP/s, since every token, prompt or generated, costs 2 x the active
 * parameters. `serve_ceiling` prints the FMA peak of the machine (the native probe), the tokens/s it
 * allows for this model, the share of them the mix generates, and max_speedup = that generated
 * ceiling / the measured 1-stream figure: how far batching can go on this machine at best.
 * On 2 cores prompt tokens cost as much compute as generated ones, so the speedup depends on the
 * mix: a prompt-heavy one (--prompts 32,64,128 --answers 32,64,96) is bound by the FLOP/s sooner.
 * --computes f32,bf16 chooses the server's arithmetic for the bf16 / fp8 weights (`skymoe serve
 * --compute`): f32 (weights decoded to fp32) or bf16 (activations in bf16, products on Intel AMX, as
 * bf16 engines compute); default bf16 where the CPU has AMX-BF16, else f32. Every line carries
 * compute=. Under bf16 compute the FMA ceiling no longer binds the batched steps (AMX does many
 * times the FMA peak); `serve_ceiling` then also prints the memory-bound one: a step of S streams
 * reads at most every weight once, mem_ceiling_tokens_per_s = S x bandwidth / weight bytes.
 * --tp N serves the model split over N tensor-parallel ranks (`skymoe serve --tp N`; the cores
 * divided among them); the lines then carry tp=N (on one machine TP adds the all-reduces and takes
 * no more cores: the figure is the runtime's overhead, not a speedup).
 * Run: npm run bench:serve [-- --dtypes bf16,fp8] [--streams 1,8,32,64] [--requests-per-stream 3] [--prompts 16,32,64] [--answers 64,128,192] [--tp 2]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNativeBackend, nativeInfo } from '../src/backend/native/index.js';
import { countParams } from '../src/model/params.js';
import { preset } from '../src/model/presets.js';
import { ensureBenchModels } from './make-checkpoint.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const DTYPES = (arg('dtypes') ?? 'bf16,fp8').split(',');
const STREAMS = (arg('streams') ?? '1,8,32,64').split(',').map(Number);
const PER_STREAM = Number(arg('requests-per-stream') ?? 3);
const DIR = process.env.SKYMOE_BENCH_DIR ?? join(tmpdir(), 'skymoe-bench-decode');
/** A chat-like mix: short prompts, longer answers (request k of a stream uses PROMPTS[k % 3] and ANSWERS[(k + 1) % 3]; --prompts and --answers change them). */
const PROMPTS = (arg('prompts') ?? '16,32,64').split(',').map(Number);
const ANSWERS = (arg('answers') ?? '64,128,192').split(',').map(Number);
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const TP = Number(arg('tp') ?? 1);
const COMPUTES = (arg('computes') ?? '').split(',').filter(Boolean);
/** Bytes per weight of each benchmark dtype. */
const BYTES: Record<string, number> = { f32: 4, bf16: 2, fp8: 1 };

const log = (m: string) => process.stderr.write(`${m}\n`);

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

async function startServer(model: string, compute: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [MAIN, 'serve', '--model', model, '--port', String(port), '--max-num-seqs', '64', '--served-model-name', 'bench', '--tp', String(TP), '--compute', compute], { stdio: ['ignore', 'ignore', 'pipe'] });
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
        const k = s + j; // every stream walks the same mix, from its own starting point
        const prompt = Array.from({ length: PROMPTS[k % PROMPTS.length]! }, (_, i) => 1 + ((k * 7919 + i * 104729) % 8000));
        try {
          const t = await complete(url, prompt, ANSWERS[(k + 1) % ANSWERS.length]!);
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

/** FMA peak (GFLOP/s, both threads) and stream bandwidth (GB/s), measured now. */
async function ceilings(): Promise<{ gflops: number; gbs: number } | null> {
  if (!nativeInfo().available) return null;
  const be = createNativeBackend({});
  try {
    return { gflops: be.measureFmaPeak(), gbs: be.measureStreamBandwidth(2 ** 30, 5) };
  } finally {
    await be.dispose();
  }
}

/** Whether this machine's native backend can compute in bf16 on AMX. */
async function hasAmx(): Promise<boolean> {
  if (!nativeInfo().available) return false;
  try {
    await createNativeBackend({ compute: 'bf16', initialBytes: 2 ** 20 }).dispose();
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  await ensureBenchModels(DIR, DTYPES, (m) => log(`bench:serve: ${m}`));
  const { active, total } = countParams(preset('bench'));
  const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const generatedShare = meanOf(ANSWERS) / (meanOf(ANSWERS) + meanOf(PROMPTS));
  const computes = COMPUTES.length ? COMPUTES : [(await hasAmx()) ? 'bf16' : 'f32'];
  for (const compute of computes)
  for (const dtype of DTYPES) {
    const { url, proc } = await startServer(join(DIR, dtype), dtype === 'f32' ? 'f32' : compute);
    try {
      await complete(url, [1, 2, 3, 4], 8); // warm the page cache and the code
      // The shared machine's speed drifts by up to 2x within minutes: each level's speedup divides
      // by the mean of the 1-stream runs just before and just after it (and the ceiling is taken
      // next to them), so both sides of the ratio see the same machine.
      const f = (x: number) => x.toFixed(0);
      const line = (streams: number, r: Awaited<ReturnType<typeof load>>, single: number) =>
        console.log(
          `serve model=bench dtype=${dtype} compute=${dtype === 'f32' ? 'f32' : compute} tp=${TP} streams=${streams} requests=${r.requests} tokens_per_s=${r.tokensPerS.toFixed(1)} single_tokens_per_s=${single.toFixed(1)} speedup=${(r.tokensPerS / single).toFixed(1)} ttft_p50_ms=${f(pct(r.ttft, 50))} ttft_p99_ms=${f(pct(r.ttft, 99))} itl_p50_ms=${f(pct(r.itl, 50))} itl_p99_ms=${f(pct(r.itl, 99))} errors=${r.errors}`,
        );
      const c = await ceilings();
      let before = await load(url, 1);
      line(1, before, before.tokensPerS);
      if (c) {
        const computeTokens = (c.gflops * 1e9) / (2 * active);
        console.log(
          `serve_ceiling model=bench dtype=${dtype} compute=${dtype === 'f32' ? 'f32' : compute} fma_gflops=${c.gflops.toFixed(0)} bw_gbs=${c.gbs.toFixed(1)} active_params_b=${(active / 1e9).toFixed(3)} compute_tokens_per_s=${computeTokens.toFixed(0)} generated_share=${generatedShare.toFixed(2)} generated_ceiling_tokens_per_s=${(computeTokens * generatedShare).toFixed(0)} max_speedup=${((computeTokens * generatedShare) / before.tokensPerS).toFixed(1)}${compute === 'bf16' && dtype !== 'f32' ? ` mem_ceiling_32_tokens_per_s=${((32 * c.gbs * 1e9) / (total * BYTES[dtype]!)).toFixed(0)} mem_max_speedup_32=${((32 * c.gbs * 1e9 * generatedShare) / (total * BYTES[dtype]!) / before.tokensPerS).toFixed(1)}` : ''}`,
        );
      }
      for (const streams of STREAMS.filter((s) => s > 1)) {
        const r = await load(url, streams);
        const after = await load(url, 1);
        line(streams, r, (before.tokensPerS + after.tokensPerS) / 2);
        before = after;
      }
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  }
}

await main();
