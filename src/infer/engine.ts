/**
 * The continuous-batching engine (one thread; engine-worker.ts runs it off the main thread).
 *
 * Every step runs ONE forward over all scheduled sequences: each running sequence that has
 * finished its prompt contributes its last sampled token, sequences still in their prompt
 * contribute a chunk of it (chunked prefill), and waiting requests are admitted while the step's
 * token budget, the sequence limit and the KV cache allow. Requests join and leave the batch at
 * every step. An MoE layer thus reads each expert once per step for all the tokens that chose it.
 *
 * KV cache: fixed-size blocks (paged-kv.ts) handed to a sequence as it grows and taken back when it
 * finishes or is aborted. When a running sequence needs a block and none is free, the most recently
 * admitted sequence is preempted: its blocks are freed and it is recomputed later from its prompt
 * and the tokens it had generated. Because every kernel of the step is batch invariant
 * (T.rowInvariant, the paged attention kernel), the recomputed keys and values are bit-identical,
 * and so is everything sampled after: preemption, chunk boundaries and batch composition never
 * change a request's tokens or logprobs.
 */
import { stopTokenIds } from '../model/config.js';
import { PagedKVCache } from '../model/paged-kv.js';
import type { PagedStep, SkyworkMoE } from '../model/skywork-moe.js';
import type { Tokenizer } from '../io/tokenizer/index.js';
import { SequenceSampler } from './sampler.js';
import { TextOutput } from './text-output.js';
import type { EngineEvent, EngineStats, FinishReason, GenerationRequest } from './types.js';

export interface EngineOptions {
  /** Bytes of KV cache (all layers, keys and values) at most. Default 1 GiB; never more than maxNumSeqs sequences at the full context need. */
  kvCacheBytes?: number;
  /** Positions per KV block. Default 16. */
  blockSize?: number;
  /** Sequences in the running batch at most. Default 64. */
  maxNumSeqs?: number;
  /** Tokens per step at most (decode rows plus prefill chunks). Default 256. */
  maxBatchedTokens?: number;
}

export class EngineError extends Error {
  override name = 'EngineError';
}

interface RequestState {
  req: GenerationRequest;
  seqs: Sequence[];
  unfinished: number;
}

interface Sequence {
  request: RequestState;
  index: number;
  /** The prompt, then every generated token (a preempted sequence recomputes all of them). */
  tokens: number[];
  promptLength: number;
  /** Tokens whose keys and values are in the cache. */
  computed: number;
  blocks: number[];
  generated: number;
  sampler: SequenceSampler;
  text: TextOutput;
  /** Admission order: the youngest is preempted first. */
  admitted: number;
  finished: boolean;
}

interface Scheduled {
  seq: Sequence;
  start: number;
  count: number;
}

const DEFAULTS: Required<EngineOptions> = { kvCacheBytes: 2 ** 30, blockSize: 16, maxNumSeqs: 64, maxBatchedTokens: 256 };

export class Engine {
  readonly kv: PagedKVCache;
  readonly opts: Required<EngineOptions>;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly requests = new Map<string, RequestState>();
  private readonly eos: Set<number>;
  private admissions = 0;
  private counters = { promptTokens: 0, generatedTokens: 0, steps: 0, preemptions: 0 };

  constructor(
    readonly model: SkyworkMoE,
    readonly tokenizer: Tokenizer,
    opts: EngineOptions = {},
  ) {
    this.opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
    const { blockSize, maxNumSeqs, maxBatchedTokens, kvCacheBytes } = this.opts;
    for (const [name, v] of Object.entries({ blockSize, maxNumSeqs, maxBatchedTokens })) {
      if (!Number.isInteger(v) || v < 1) throw new EngineError(`${name} must be a positive integer, got ${v}`);
    }
    const cfg = model.config;
    // No more than every sequence of a full batch at the full context can use.
    const blocks = Math.min(PagedKVCache.blocksFor(cfg, kvCacheBytes, blockSize), maxNumSeqs * Math.ceil(cfg.maxPositions / blockSize));
    if (blocks < 1) throw new EngineError(`a KV cache of ${kvCacheBytes} bytes holds no block of ${blockSize} positions for this model`);
    // A tensor-parallel rank holds the same blocks with its key/value heads only: kvCacheBytes bounds the group's.
    this.kv = new PagedKVCache(cfg, blocks, blockSize, model.backend, model.tp?.shard);
    this.eos = new Set(stopTokenIds(cfg));
  }

  get maxContext(): number {
    return this.model.config.maxPositions;
  }

  /** Positions the whole KV cache holds. */
  get capacityTokens(): number {
    return this.kv.numBlocks * this.kv.blockSize;
  }

  /** Queue a request. Bad requests (too long, unknown ids) throw EngineError naming why. */
  add(req: GenerationRequest): void {
    const p = req.params, cfg = this.model.config;
    if (this.requests.has(req.id)) throw new EngineError(`request id '${req.id}' is already running`);
    if (req.prompt.length === 0) throw new EngineError('the prompt has no tokens');
    for (const id of req.prompt) if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) throw new EngineError(`prompt token id ${id} is outside the vocabulary of ${cfg.vocabSize}`);
    if (req.prompt.length >= this.maxContext) throw new EngineError(`the prompt has ${req.prompt.length} tokens; the model's context is ${this.maxContext}`);
    const need = Math.min(req.prompt.length + p.maxTokens, this.maxContext);
    if (need > this.capacityTokens) throw new EngineError(`the request needs ${need} positions of KV cache; the cache holds ${this.capacityTokens} (raise --kv-cache-gb)`);
    const state: RequestState = { req, seqs: [], unfinished: p.n };
    for (let i = 0; i < p.n; i++) {
      state.seqs.push({
        request: state,
        index: i,
        tokens: [...req.prompt],
        promptLength: req.prompt.length,
        computed: 0,
        blocks: [],
        generated: 0,
        sampler: new SequenceSampler(p, req.prompt, cfg.vocabSize, i),
        text: new TextOutput(this.tokenizer, p.stop),
        admitted: -1,
        finished: false,
      });
    }
    this.requests.set(req.id, state);
    this.waiting.push(...state.seqs);
    this.counters.promptTokens += req.prompt.length;
  }

  /** Abort a request: its sequences leave at once and their blocks are freed. Returns the finish events. */
  abort(requestId: string): EngineEvent[] {
    const state = this.requests.get(requestId);
    if (!state) return [];
    const events: EngineEvent[] = [];
    for (const s of state.seqs) if (!s.finished) this.finish(s, 'abort', events);
    return events;
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  stats(): EngineStats {
    return {
      running: new Set(this.running.map((s) => s.request)).size,
      waiting: new Set(this.waiting.filter((s) => !this.running.some((r) => r.request === s.request)).map((s) => s.request)).size,
      kvBlocksUsed: this.kv.usedBlocks,
      kvBlocksTotal: this.kv.numBlocks,
      ...this.counters,
    };
  }

  /** One step: schedule, one forward, sample. Returns the events it produced. */
  step(): EngineEvent[] {
    const events: EngineEvent[] = [];
    const plan = this.schedule();
    if (plan.length === 0) return events;
    const step = this.buildStep(plan);
    const logits = this.forward(step);
    this.counters.steps++;
    const V = this.model.config.vocabSize, known = Math.min(V, this.tokenizer.vocabSize);
    let r = 0;
    for (const { seq, start, count } of plan) {
      seq.computed = start + count;
      if (seq.computed !== seq.tokens.length) continue; // mid-prompt chunk: nothing to sample yet
      const row = logits.subarray(r * V, (r + 1) * V);
      // Ids past the tokenizer's vocabulary (a model vocabulary padded beyond it, as Qwen's) have
      // no text: they are never sampled, and logprobs are over the ids that have.
      if (known < V) row.fill(-Infinity, known);
      r++;
      this.sample(seq, row, events);
    }
    return events;
  }

  /** The step's forward: logits [logitRows, V]. (The tensor-parallel engine first sends the step to the other ranks.) */
  protected forward(step: PagedStep): Float32Array {
    return this.model.forwardPaged(step, this.kv);
  }

  private sample(seq: Sequence, row: Float32Array, events: EngineEvent[]): void {
    const p = seq.request.req.params;
    const { id, logprob } = seq.sampler.next(row);
    if ((!p.ignoreEos && this.eos.has(id)) || p.stopTokenIds.includes(id)) {
      this.finish(seq, 'stop', events, id);
      return;
    }
    seq.tokens.push(id);
    seq.generated++;
    this.counters.generatedTokens++;
    const text = seq.text.push(id);
    const ev: EngineEvent = { type: 'tokens', requestId: seq.request.req.id, index: seq.index, ids: [id], text };
    if (logprob) ev.logprobs = [logprob];
    events.push(ev);
    if (seq.text.stopped !== null) this.finish(seq, 'stop', events, seq.text.stopped);
    else if (seq.generated >= p.maxTokens || seq.tokens.length >= this.maxContext) this.finish(seq, 'length', events);
  }

  private finish(seq: Sequence, reason: FinishReason, events: EngineEvent[], stoppedBy?: string | number): void {
    seq.finished = true;
    this.kv.release(seq.blocks);
    seq.blocks = [];
    remove(this.running, seq);
    remove(this.waiting, seq);
    const text = seq.text.finish();
    const ev: EngineEvent = { type: 'finish', requestId: seq.request.req.id, index: seq.index, reason, text, promptTokens: seq.promptLength, completionTokens: seq.generated };
    if (stoppedBy !== undefined) ev.stoppedBy = stoppedBy;
    events.push(ev);
    if (--seq.request.unfinished === 0) this.requests.delete(seq.request.req.id);
  }

  /** Blocks a sequence needs to hold positions [0, upTo). */
  private ensureBlocks(seq: Sequence, upTo: number): boolean {
    const need = Math.ceil(upTo / this.kv.blockSize);
    while (seq.blocks.length < need) {
      const b = this.kv.allocate();
      if (b === null) return false;
      seq.blocks.push(b);
    }
    return true;
  }

  private preempt(seq: Sequence): void {
    this.kv.release(seq.blocks);
    seq.blocks = [];
    seq.computed = 0;
    remove(this.running, seq);
    this.waiting.unshift(seq);
    this.counters.preemptions++;
  }

  private schedule(): Scheduled[] {
    const plan: Scheduled[] = [];
    let budget = this.opts.maxBatchedTokens;
    // Running sequences, oldest first; the youngest give way when blocks run out.
    this.running.sort((a, b) => a.admitted - b.admitted);
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const seq = this.running[i]!;
      const count = Math.min(seq.tokens.length - seq.computed, budget);
      if (count <= 0) continue;
      let ok = this.ensureBlocks(seq, seq.computed + count);
      while (!ok) {
        const victim = this.running[this.running.length - 1]!;
        this.preempt(victim);
        if (victim === seq) break;
        ok = this.ensureBlocks(seq, seq.computed + count);
      }
      if (!ok) break; // seq itself was the youngest and gave way
      plan.push({ seq, start: seq.computed, count });
      budget -= count;
    }
    // Admit waiting sequences in arrival order while the budget, the batch and the cache allow.
    while (budget > 0 && this.running.length < this.opts.maxNumSeqs && this.waiting.length > 0) {
      const seq = this.waiting[0]!;
      const count = Math.min(seq.tokens.length - seq.computed, budget);
      const need = Math.ceil((seq.computed + count) / this.kv.blockSize) - seq.blocks.length;
      if (need > this.kv.freeBlocks) break;
      this.ensureBlocks(seq, seq.computed + count);
      this.waiting.shift();
      seq.admitted = this.admissions++;
      this.running.push(seq);
      plan.push({ seq, start: seq.computed, count });
      budget -= count;
    }
    return plan;
  }

  private buildStep(plan: Scheduled[]): PagedStep {
    const N = plan.reduce((s, p) => s + p.count, 0);
    const bs = this.kv.blockSize;
    const maxBlocks = Math.max(...plan.map((p) => p.seq.blocks.length));
    const ids = new Int32Array(N), positions = new Int32Array(N), slots = new Int32Array(N), rowSeq = new Int32Array(N);
    const blockTables = new Int32Array(plan.length * maxBlocks);
    const logitRows: number[] = [];
    let r = 0;
    plan.forEach(({ seq, start, count }, s) => {
      blockTables.set(seq.blocks, s * maxBlocks);
      for (let j = 0; j < count; j++, r++) {
        const pos = start + j;
        ids[r] = seq.tokens[pos]!;
        positions[r] = pos;
        slots[r] = seq.blocks[Math.floor(pos / bs)]! * bs + (pos % bs);
        rowSeq[r] = s;
      }
      if (start + count === seq.tokens.length) logitRows.push(r - 1);
    });
    return { ids, positions, slots, rowSeq, blockTables, maxBlocks, logitRows: Int32Array.from(logitRows) };
  }

  dispose(): void {
    this.kv.dispose();
  }
}

function remove<T>(list: T[], x: T): void {
  const i = list.indexOf(x);
  if (i >= 0) list.splice(i, 1);
}
