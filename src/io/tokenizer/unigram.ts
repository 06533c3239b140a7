/**
 * The Unigram model (SentencePiece's default, T5 / ALBERT / XLNet style): a word is cut into the
 * pieces whose scores (log probabilities) sum highest, found by Viterbi over the pieces that
 * start at each character. As Hugging Face tokenizers: a character no piece covers costs
 * min(score) - 10 and becomes the unknown token, consecutive unknown characters are fused into
 * one, and with byte_fallback an unknown run becomes its UTF-8 bytes as `<0xXX>` tokens.
 */
import { byteFallbackToken } from './bpe.js';
import { TokenizerError } from './errors.js';
import { WordCache } from './word-cache.js';

/** Cost of an uncovered character below the lowest piece score (SentencePiece's kUnkPenalty). */
export const UNK_PENALTY = 10;

export interface UnigramModelInit {
  /** [piece, score] in id order. */
  pieces: readonly (readonly [string, number])[];
  unkId: number | null;
  byteFallback?: boolean;
  file?: string;
}

interface TrieNode {
  children: Map<number, TrieNode>;
  /** Id of the piece ending here, -1 for none. */
  id: number;
}

const UTF8 = new TextEncoder();

export class UnigramModel {
  readonly type = 'Unigram';
  readonly vocab: ReadonlyMap<string, number>;
  readonly pieces: readonly (readonly [string, number])[];
  readonly unkId: number | null;
  readonly byteFallback: boolean;
  private readonly scores: Float64Array;
  private readonly unkScore: number;
  private readonly root: TrieNode = { children: new Map(), id: -1 };
  private readonly fallbackIds = new Int32Array(256).fill(-1);
  private readonly cache = new WordCache();
  private readonly encodeFn = (word: string): number[] => this.encodeWord(word);
  private readonly file: string | undefined;
  /** Pieces never matched in text (special tokens: only the added-token pass may produce them). */
  private readonly blocked = new Set<number>();

  constructor(init: UnigramModelInit) {
    const file = (this.file = init.file);
    this.pieces = init.pieces.map(([p, s]) => [p, s] as const);
    const vocab = new Map<string, number>();
    this.scores = new Float64Array(this.pieces.length);
    let minScore = Infinity;
    this.pieces.forEach(([piece, score], id) => {
      const field = `model.vocab[${id}]`;
      if (typeof piece !== 'string' || piece === '') throw new TokenizerError('expected a non-empty piece', file, field);
      if (!Number.isFinite(score)) throw new TokenizerError(`score ${score} is not a finite number`, file, field);
      if (vocab.has(piece)) throw new TokenizerError(`duplicate piece ${JSON.stringify(piece)} (ids ${vocab.get(piece)} and ${id})`, file, field);
      vocab.set(piece, id);
      this.scores[id] = score;
      minScore = Math.min(minScore, score);
      let node = this.root;
      for (const c of piece) {
        const cp = c.codePointAt(0)!;
        let child = node.children.get(cp);
        if (!child) node.children.set(cp, (child = { children: new Map(), id: -1 }));
        node = child;
      }
      node.id = id;
    });
    this.vocab = vocab;
    this.unkId = init.unkId;
    if (this.unkId !== null && (this.unkId < 0 || this.unkId >= this.pieces.length)) {
      throw new TokenizerError(`unk_id ${this.unkId} is outside the vocab (${this.pieces.length} pieces)`, file, 'model.unk_id');
    }
    this.unkScore = (this.pieces.length ? minScore : 0) - UNK_PENALTY;
    this.byteFallback = init.byteFallback ?? false;
    for (let b = 0; b < 256; b++) this.fallbackIds[b] = vocab.get(byteFallbackToken(b)) ?? -1;
  }

  /**
   * Keep these pieces out of Viterbi: control pieces such as `</s>` are in a SentencePiece vocab
   * with score 0, which would make text spelling them out encode as the control token.
   */
  blockPieces(ids: Iterable<number>): void {
    for (const id of ids) this.blocked.add(id);
    this.cache.clear();
  }

  /** Append the ids of one pre-tokenized word to `out`. */
  tokenize(word: string, out: number[]): void {
    this.cache.tokenize(word, this.encodeFn, out);
  }


  toJson(): Record<string, unknown> {
    return { type: 'Unigram', unk_id: this.unkId, vocab: this.pieces.map(([p, s]) => [p, s]), byte_fallback: this.byteFallback };
  }

  /** Viterbi: the best path ending at each character boundary, first best kept on ties. */
  private encodeWord(word: string): number[] {
    const cps = Array.from(word, (c) => c.codePointAt(0)!);
    const n = cps.length;
    // UTF-16 offset of each code point boundary, to cut pieces out of `word` directly.
    const at = new Int32Array(n + 1);
    for (let i = 0; i < n; i++) at[i + 1] = at[i]! + (cps[i]! > 0xffff ? 2 : 1);
    const best = new Float64Array(n + 1).fill(-Infinity);
    const from = new Int32Array(n + 1).fill(-1);
    const idAt = new Int32Array(n + 1).fill(-1);
    best[0] = 0;
    for (let s = 0; s < n; s++) {
      const base = best[s]!;
      let single = false;
      let node: TrieNode | undefined = this.root;
      for (let e = s; e < n; e++) {
        node = node.children.get(cps[e]!);
        if (!node) break;
        if (node.id >= 0 && !this.blocked.has(node.id)) {
          const score = base + this.scores[node.id]!;
          if (from[e + 1]! < 0 || score > best[e + 1]!) {
            best[e + 1] = score;
            from[e + 1] = s;
            idAt[e + 1] = node.id;
          }
          if (e === s) single = true;
        }
      }
      if (!single) {
        if (this.unkId === null) {
          throw new TokenizerError(`character ${JSON.stringify(String.fromCodePoint(cps[s]!))} has no piece and the model has no unk_id`, this.file, 'model.unk_id');
        }
        const score = base + this.unkScore;
        if (from[s + 1]! < 0 || score > best[s + 1]!) {
          best[s + 1] = score;
          from[s + 1] = s;
          idAt[s + 1] = this.unkId;
        }
      }
    }
    // Back-trace into pieces [start, end, id]; runs of unknowns fuse into one.
    const spans: [number, number, number][] = [];
    for (let e = n; e > 0; ) {
      const s = from[e]!;
      const id = idAt[e]!;
      const last = spans[spans.length - 1];
      if (id === this.unkId && last && last[2] === this.unkId) last[0] = s;
      else spans.push([s, e, id]);
      e = s;
    }
    spans.reverse();
    const ids: number[] = [];
    for (const [s, e, id] of spans) {
      if (id !== this.unkId) {
        ids.push(id);
        continue;
      }
      const text = word.slice(at[s]!, at[e]!);
      const known = this.vocab.get(text); // the unk piece's own text, e.g. "<unk>"
      if (known !== undefined) {
        ids.push(known);
        continue;
      }
      if (this.byteFallback) {
        const bytes = UTF8.encode(text);
        if (bytes.every((b) => this.fallbackIds[b]! >= 0)) {
          for (const b of bytes) ids.push(this.fallbackIds[b]!);
          continue;
        }
      }
      ids.push(id);
    }
    return ids;
  }
}
