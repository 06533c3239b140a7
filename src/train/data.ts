/**
 * The token stream of a run: the corpus tokenized once into a cached binary file keyed by the
 * corpus and tokenizer hashes, split into train and held-out validation ranges, and sampled in
 * seeded random windows whose generator state is saved with each checkpoint.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic, writeFully } from '../io/atomic.js';
import type { Tokenizer } from '../io/tokenizer/index.js';
import { tokenizerToJson } from '../io/tokenizer/index.js';
import { Rng } from '../tensor/random.js';
import type { Corpus } from './corpus.js';

export class DataError extends Error {
  override name = 'DataError';
}

/** Where tokenized corpora are cached (SKYMOE_CACHE, else ~/.cache/skymoe). */
export function cacheDir(): string {
  return process.env.SKYMOE_CACHE ?? join(homedir(), '.cache', 'skymoe');
}

export function tokenizerHash(tok: Tokenizer): string {
  return createHash('sha256').update(JSON.stringify(tokenizerToJson(tok))).digest('hex');
}

const MAGIC = 0x534b544b; // "SKTK"

/**
 * All documents as one token stream, each document followed by eos. Cached as
 * [magic u32, count u32, tokens i32...]; a damaged cache file is rebuilt, never trusted.
 */
export function tokenizeCorpus(corpus: Corpus, tok: Tokenizer, onProgress?: (done: number, total: number) => void): { tokens: Int32Array; cached: boolean; path: string } {
  const key = createHash('sha256').update(corpus.hash).update(tokenizerHash(tok)).digest('hex').slice(0, 24);
  const dir = cacheDir();
  const path = join(dir, `tokens-${key}.bin`);
  if (existsSync(path)) {
    const buf = readFileSync(path);
    if (buf.byteLength >= 8 && buf.byteLength % 4 === 0) {
      const head = new Uint32Array(buf.buffer, buf.byteOffset, 2);
      if (head[0] === MAGIC && head[1] === buf.byteLength / 4 - 2) {
        return { tokens: new Int32Array(buf.buffer.slice(buf.byteOffset + 8, buf.byteOffset + buf.byteLength)), cached: true, path };
      }
    }
  }
  const eos = tok.eosId;
  if (eos === undefined) throw new DataError('the tokenizer has no eos token to separate documents');
  const parts: number[][] = [];
  let n = 0;
  corpus.documents.forEach((d, i) => {
    const ids = tok.encode(d);
    ids.push(eos);
    parts.push(ids);
    n += ids.length;
    onProgress?.(i + 1, corpus.documents.length);
  });
  const tokens = new Int32Array(n);
  let o = 0;
  for (const p of parts) {
    tokens.set(p, o);
    o += p.length;
  }
  mkdirSync(dir, { recursive: true });
  const file = new Uint8Array(8 + 4 * n);
  new Uint32Array(file.buffer, 0, 2).set([MAGIC, n]);
  new Int32Array(file.buffer, 8, n).set(tokens);
  writeFileAtomic(path, (fd) => writeFully(fd, file));
  return { tokens, cached: false, path };
}

export interface Batch {
  /** (B, T) inputs and next-token targets. */
  inputs: Int32Array;
  targets: Int32Array;
  batch: number;
  seq: number;
}

/** Train/validation windows over a token stream. */
export class TokenDataset {
  readonly train: Int32Array;
  readonly val: Int32Array;
  private rng: Rng;

  constructor(
    tokens: Int32Array,
    readonly seq: number,
    opts: { valFraction: number; seed: number },
  ) {
    const nVal = Math.floor(tokens.length * opts.valFraction);
    if (tokens.length - nVal < seq + 2) throw new DataError(`the corpus has ${tokens.length} tokens: too few for windows of ${seq + 1} (reduce --seq)`);
    if (opts.valFraction > 0 && nVal < seq + 1) throw new DataError(`the validation split (${nVal} tokens) is shorter than one window of ${seq + 1}: raise --val-fraction or reduce --seq`);
    this.train = tokens.subarray(0, tokens.length - nVal);
    this.val = tokens.subarray(tokens.length - nVal);
    this.rng = new Rng(opts.seed);
  }

  /** The next training batch: B windows at seeded random offsets. */
  nextBatch(B: number): Batch {
    const T = this.seq;
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = this.rng.int(this.train.length - T);
      inputs.set(this.train.subarray(start, start + T), b * T);
      targets.set(this.train.subarray(start + 1, start + T + 1), b * T);
    }
    return { inputs, targets, batch: B, seq: T };
  }

  /** Fixed validation batches: consecutive non-overlapping windows from the start of the split. */
  valBatches(B: number, maxBatches: number): Batch[] {
    const T = this.seq;
    const windows = Math.floor((this.val.length - 1) / T);
    const out: Batch[] = [];
    for (let w0 = 0; w0 + B <= windows && out.length < maxBatches; w0 += B) {
      const inputs = new Int32Array(B * T);
      const targets = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        const s = (w0 + b) * T;
        inputs.set(this.val.subarray(s, s + T), b * T);
        targets.set(this.val.subarray(s + 1, s + T + 1), b * T);
      }
      out.push({ inputs, targets, batch: B, seq: T });
    }
    if (out.length === 0 && windows > 0) return this.valBatches(Math.min(B, windows), maxBatches);
    return out;
  }

  /** Sampler state, for checkpoints. */
  getState(): ReturnType<Rng['getState']> {
    return this.rng.getState();
  }

  setState(s: ReturnType<Rng['getState']>): void {
    this.rng.setState(s);
  }
}
