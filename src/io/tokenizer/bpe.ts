/**
 * The BPE model of a tokenizer: a word's symbols are merged lowest rank first (leftmost first
 * among equal ranks), as Hugging Face tokenizers' BPE does. Two kinds of initial symbols:
 *
 * - byte-level (GPT-2, Llama-3, Qwen): the word's UTF-8 bytes, each one token of the byte-level
 *   alphabet (byte-level.ts); every text is covered;
 * - characters (SentencePiece BPE as in Llama-2, Mistral, Mixtral, Skywork): each Unicode
 *   character is a token when the vocab has it; otherwise its UTF-8 bytes as the `<0xXX>` tokens
 *   (`byte_fallback`), otherwise the unknown token (consecutive unknowns fused with `fuse_unk`).
 */
import { BYTE_TO_CHAR, bytesToToken, utf8Encode } from './byte-level.js';
import { TokenizerError } from './errors.js';
import { WordCache } from './word-cache.js';

export interface BpeModelInit {
  /** token -> id of the model's vocab (added tokens may be in it too). */
  vocab: ReadonlyMap<string, number>;
  /** Merges in rank order: [left, right], both tokens of the vocab, as is their concatenation. */
  merges: readonly (readonly [string, string])[];
  /** Words are text whose UTF-8 bytes map to the byte-level alphabet (a ByteLevel pre-tokenizer). */
  byteLevel: boolean;
  /** Unknown characters become their `<0xXX>` byte tokens. */
  byteFallback?: boolean;
  /** The token for characters the vocab lacks (null: they are dropped, as HF does). */
  unkToken?: string | null;
  /** Consecutive unknown characters give one unknown token. */
  fuseUnk?: boolean;
  /** Take a word whole when it is a vocab token, before any merge (HF `ignore_merges`, Llama-3). */
  ignoreMerges?: boolean;
  /** Prefix of every symbol but a word's first (WordPiece-style BPE, e.g. "##"). */
  continuingSubwordPrefix?: string | null;
  /** Suffix of a word's last symbol (e.g. "</w>"). */
  endOfWordSuffix?: string | null;
  file?: string;
}


const UTF8 = new TextEncoder();
/** A run of "▁" and the characters up to the next run (the last piece may be "▁" alone). */
const METASPACE_WORDS = /\u2581*[^\u2581]+|\u2581+/gu;

/** The `<0xXX>` token of a byte (SentencePiece byte pieces; HF byte_fallback). */
export function byteFallbackToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

export class BpeModel {
  readonly type = 'BPE';
  readonly vocab: ReadonlyMap<string, number>;
  readonly merges: readonly (readonly [string, string])[];
  readonly byteLevel: boolean;
  readonly byteFallback: boolean;
  readonly unkToken: string | null;
  readonly unkId: number | undefined;
  readonly fuseUnk: boolean;
  readonly ignoreMerges: boolean;
  readonly continuingSubwordPrefix: string | null;
  readonly endOfWordSuffix: string | null;
  /** Words can be cut before each run of "▁" without changing the result (see tokenize). */
  private readonly metaspaceWords: boolean;

  /** Initial token of each byte (byte-level), -1 when the vocab lacks it. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** The `<0xXX>` token of each byte (byte fallback), -1 when the vocab lacks it. */
  private readonly fallbackIds = new Int32Array(256).fill(-1);
  /** (left * stride + right) -> merge rank; mergedId[rank] is the merged token. */
  private readonly ranks = new Map<number, number>();
  private readonly mergedId: Int32Array;
  private readonly stride: number;
  private readonly cache = new WordCache();
  private readonly encodeFn = (word: string): number[] => this.mergeWord(word);
  private readonly scratch = { buf: new Uint8Array(256) };
  private readonly file: string | undefined;

  constructor(init: BpeModelInit) {
    const file = (this.file = init.file);
    const fail = (msg: string, field: string): never => {
      throw new TokenizerError(msg, file, field);
    };
    this.vocab = new Map(init.vocab);
    let maxId = -1;
    for (const id of this.vocab.values()) maxId = Math.max(maxId, id);
    this.stride = Math.max(1, maxId + 1);
    this.byteLevel = init.byteLevel;
    this.byteFallback = init.byteFallback ?? false;
    this.unkToken = init.unkToken ?? null;
    this.unkId = this.unkToken === null ? undefined : this.vocab.get(this.unkToken);
    if (this.unkToken !== null && this.unkId === undefined) fail(`unk_token ${JSON.stringify(this.unkToken)} is not in the vocab`, 'model.unk_token');
    this.fuseUnk = init.fuseUnk ?? false;
    this.ignoreMerges = init.ignoreMerges ?? false;
    this.continuingSubwordPrefix = init.continuingSubwordPrefix || null;
    this.endOfWordSuffix = init.endOfWordSuffix || null;
    this.metaspaceWords =
      !this.byteLevel && !this.ignoreMerges && !this.continuingSubwordPrefix && !this.endOfWordSuffix && this.vocab.has('\u2581') && ![...this.vocab.keys()].some((t) => /[^\u2581]\u2581/u.test(t));
    for (let b = 0; b < 256; b++) {
      this.byteIds[b] = this.vocab.get(BYTE_TO_CHAR[b]!) ?? -1;
      this.fallbackIds[b] = this.vocab.get(byteFallbackToken(b)) ?? -1;
    }

    this.merges = init.merges.map(([a, b]) => [a, b] as const);
    this.mergedId = new Int32Array(this.merges.length);
    const prefixLen = this.continuingSubwordPrefix?.length ?? 0;
    this.merges.forEach(([a, b], rank) => {
      const field = `model.merges[${rank}]`;
      const what = `merge ${JSON.stringify(`${a} ${b}`)}`;
      const left = this.vocab.get(a) ?? fail(`${what}: unknown token ${JSON.stringify(a)}`, field);
      const right = this.vocab.get(b) ?? fail(`${what}: unknown token ${JSON.stringify(b)}`, field);
      // With a continuing-subword prefix the right part loses it when merged ("a" + "##b" = "ab").
      const joined = prefixLen && b.startsWith(this.continuingSubwordPrefix!) ? a + b.slice(prefixLen) : a + b;
      const merged = this.vocab.get(joined) ?? fail(`${what}: result ${JSON.stringify(joined)} is not in the vocab`, field);
      const key = left * this.stride + right;
      // A repeated merge takes its last rank, as HF's Rust BPE (a map filled in order) does.
      this.ranks.set(key, rank);
      this.mergedId[rank] = merged;
    });
  }

  /** Append the ids of one pre-tokenized word to `out`. */
  tokenize(word: string, out: number[]): void {
    if (this.metaspaceWords) {
      // Llama-2-style files have no pre-tokenizer: the whole text is one word. When no token
      // holds a "▁" after another character, no merge can cross the start of a "▁" run, so the
      // text is cut there and each piece merged (and cached) alone, with the same result.
      for (const piece of word.match(METASPACE_WORDS)!) this.cache.tokenize(piece, this.encodeFn, out);
      return;
    }
    this.cache.tokenize(word, this.encodeFn, out);
  }


  /** The model section of tokenizer.json. */
  toJson(): Record<string, unknown> {
    const vocab: Record<string, number> = {};
    for (const [t, id] of [...this.vocab].sort((x, y) => x[1] - y[1])) vocab[t] = id;
    return {
      type: 'BPE',
      dropout: null,
      unk_token: this.unkToken,
      continuing_subword_prefix: this.continuingSubwordPrefix,
      end_of_word_suffix: this.endOfWordSuffix,
      fuse_unk: this.fuseUnk,
      byte_fallback: this.byteFallback,
      ...(this.ignoreMerges ? { ignore_merges: true } : {}),
      vocab,
      // "left right" strings where that reads back the same; the pair form (tokenizers >= 0.20)
      // when a part holds a space, which the string form cannot carry.
      merges: this.merges.some(([a, b]) => a.includes(' ') || b.includes(' ')) ? this.merges.map(([a, b]) => [a, b]) : this.merges.map(([a, b]) => `${a} ${b}`),
    };
  }

  /** The initial symbols of a word: its bytes (byte-level) or its characters. */
  private initialSymbols(word: string): Int32Array {
    if (this.byteLevel && !this.continuingSubwordPrefix && !this.endOfWordSuffix) {
      const n = utf8Encode(word, this.scratch);
      const bytes = this.scratch.buf;
      const sym = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const id = this.byteIds[bytes[i]!]!;
        if (id < 0) {
          const hex = bytes[i]!.toString(16).padStart(2, '0');
          throw new TokenizerError(`byte 0x${hex} (token ${JSON.stringify(BYTE_TO_CHAR[bytes[i]!])}) is not in the vocab`, this.file, 'model.vocab');
        }
        sym[i] = id;
      }
      return sym;
    }
    const chars = Array.from(this.byteLevel ? bytesToToken(UTF8.encode(word)) : word);
    const out: number[] = [];
    let pendingUnk = false;
    const flushUnk = () => {
      if (pendingUnk) out.push(this.unkId!);
      pendingUnk = false;
    };
    chars.forEach((c, i) => {
      let s = i > 0 && this.continuingSubwordPrefix ? this.continuingSubwordPrefix + c : c;
      if (i === chars.length - 1 && this.endOfWordSuffix) s += this.endOfWordSuffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        flushUnk();
        out.push(id);
        return;
      }
      if (this.byteFallback) {
        const bytes = UTF8.encode(s);
        if (bytes.every((b) => this.fallbackIds[b]! >= 0)) {
          flushUnk();
          for (const b of bytes) out.push(this.fallbackIds[b]!);
          return;
        }
      }
      if (this.unkId === undefined) return; // no unknown token: dropped, as HF
      if (pendingUnk && !this.fuseUnk) out.push(this.unkId);
      pendingUnk = true;
    });
    flushUnk();
    return Int32Array.from(out);
  }

  /**
   * BPE on one word: a linked list of symbols and a min-heap of (rank, position) of mergeable
   * neighbours, so a long word costs O(n log n) rather than a rescan per merge.
   */
  private mergeWord(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(this.byteLevel ? bytesToToken(UTF8.encode(word)) : word);
      if (whole !== undefined) return [whole];
    }
    const sym = this.initialSymbols(word);
    const n = sym.length;
    if (n <= 1) return Array.from(sym);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new RankHeap();
    for (let i = 0; i + 1 < n; i++) {
      const r = this.ranks.get(sym[i]! * this.stride + sym[i + 1]!);
      if (r !== undefined) heap.push(r, i);
    }
    while (heap.size > 0) {
      const r = heap.topRank();
      const i = heap.pop();
      const j = next[i]!;
      // Stale entry: i was merged away (sym -1), lost its right neighbour, or changed symbol.
      if (sym[i]! < 0 || j < 0 || this.ranks.get(sym[i]! * this.stride + sym[j]!) !== r) continue;
      sym[i] = this.mergedId[r]!;
      sym[j] = -1;
      const k = next[j]!;
      next[i] = k;
      if (k >= 0) prev[k] = i;
      const p = prev[i]!;
      if (p >= 0) {
        const rp = this.ranks.get(sym[p]! * this.stride + sym[i]!);
        if (rp !== undefined) heap.push(rp, p);
      }
      if (k >= 0) {
        const rk = this.ranks.get(sym[i]! * this.stride + sym[k]!);
        if (rk !== undefined) heap.push(rk, i);
      }
    }
    const ids: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) ids.push(sym[i]!);
    return ids;
  }
}

/** Min-heap of (rank, position) pairs ordered by rank then position. */
class RankHeap {
  private readonly rank: number[] = [];
  private readonly pos: number[] = [];

  get size(): number {
    return this.rank.length;
  }

  topRank(): number {
    return this.rank[0]!;
  }

  push(r: number, p: number): void {
    const { rank, pos } = this;
    let i = rank.length;
    rank.push(r);
    pos.push(p);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Remove the top entry and return its position. */
  pop(): number {
    const { rank, pos } = this;
    const top = pos[0]!;
    const lastRank = rank.pop()!;
    const lastPos = pos.pop()!;
    if (rank.length > 0) {
      rank[0] = lastRank;
      pos[0] = lastPos;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < rank.length && this.less(l, m)) m = l;
        if (r < rank.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const ra = this.rank[a]!;
    const rb = this.rank[b]!;
    return ra < rb || (ra === rb && this.pos[a]! < this.pos[b]!);
  }

  private swap(a: number, b: number): void {
    const { rank, pos } = this;
    [rank[a], rank[b]] = [rank[b]!, rank[a]!];
    [pos[a], pos[b]] = [pos[b]!, pos[a]!];
  }
}
