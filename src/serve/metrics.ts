/**
 * /metrics in Prometheus text: a prom-client registry of the server's own (not the global one, so
 * two servers in a process, or a host application, do not mix). Names are `skymoe:`-prefixed;
 * where vLLM has the same metric it is also exported under vLLM's name, so vLLM dashboards work
 * unchanged (docs/serving.md, "Metrics and health"). Every series carries `model_name`, as vLLM's do.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats } from '../infer/types.js';

// vLLM's buckets (its v1 engine's), so the histograms compare bucket for bucket.
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

/** The names of every series, for the docs and the tests. */
export const METRIC_NAMES = {
  requests: 'skymoe:requests_total',
  promptTokens: ['skymoe:prompt_tokens_total', 'vllm:prompt_tokens_total'],
  generatedTokens: ['skymoe:generation_tokens_total', 'vllm:generation_tokens_total'],
  running: ['skymoe:num_requests_running', 'vllm:num_requests_running'],
  waiting: ['skymoe:num_requests_waiting', 'vllm:num_requests_waiting'],
  kvUsage: ['skymoe:kv_cache_usage_perc', 'vllm:kv_cache_usage_perc'],
  timeToFirstToken: ['skymoe:time_to_first_token_seconds', 'vllm:time_to_first_token_seconds'],
  interTokenLatency: ['skymoe:inter_token_latency_seconds', 'vllm:inter_token_latency_seconds'],
} as const;

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'endpoint' | 'status'>;
  private readonly prompt: Counter[];
  private readonly generated: Counter[];
  private readonly ttft: Histogram[];
  private readonly itl: Histogram[];

  /** `stats` is undefined while the engine loads (the gauges read 0). */
  constructor(modelName: string, stats: () => EngineStats | undefined) {
    this.registry.setDefaultLabels({ model_name: modelName });
    const registers = [this.registry];
    this.requests = new Counter({ name: METRIC_NAMES.requests, help: 'HTTP requests answered, by endpoint and status code', labelNames: ['endpoint', 'status'], registers });
    this.prompt = METRIC_NAMES.promptTokens.map((name) => new Counter({ name, help: 'Prompt tokens of the requests the engine accepted', registers }));
    this.generated = METRIC_NAMES.generatedTokens.map((name) => new Counter({ name, help: 'Tokens generated', registers }));
    const gauge = (names: readonly string[], help: string, read: (s: EngineStats) => number): void => {
      for (const name of names) {
        new Gauge({
          name,
          help,
          registers,
          collect() {
            const s = stats();
            this.set(s ? read(s) : 0);
          },
        });
      }
    };
    gauge(METRIC_NAMES.running, 'Requests the engine is running', (s) => s.running);
    gauge(METRIC_NAMES.waiting, 'Requests waiting for the engine', (s) => s.waiting);
    gauge(METRIC_NAMES.kvUsage, 'KV-cache blocks in use, as a fraction (1 = full)', (s) => (s.kvBlocksTotal > 0 ? s.kvBlocksUsed / s.kvBlocksTotal : 0));
    this.ttft = METRIC_NAMES.timeToFirstToken.map((name) => new Histogram({ name, help: 'Seconds from the request to its first generated token', buckets: TTFT_BUCKETS, registers }));
    this.itl = METRIC_NAMES.interTokenLatency.map((name) => new Histogram({ name, help: 'Seconds between consecutive generated tokens of a choice', buckets: ITL_BUCKETS, registers }));
  }

  request(endpoint: string, status: number): void {
    this.requests.inc({ endpoint, status: String(status) });
  }

  promptTokens(n: number): void {
    for (const c of this.prompt) c.inc(n);
  }

  generatedTokens(n: number): void {
    for (const c of this.generated) c.inc(n);
  }

  timeToFirstToken(seconds: number): void {
    for (const h of this.ttft) h.observe(seconds);
  }

  /** `tokens` tokens arrived together `seconds` after the previous ones: each counts seconds / tokens. */
  interTokenLatency(seconds: number, tokens: number): void {
    for (const h of this.itl) for (let i = 0; i < tokens; i++) h.observe(seconds / tokens);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
