/**
 * Byte-level BPE training (Sennrich et al. 2016, on bytes as GPT-2): count the pre-tokenized
 * words, then repeatedly merge the most frequent adjacent pair. Pair counts are kept up to date
 * incrementally: each merge visits only the words holding the pair (an index pair -> words) and
 * adjusts the counts of the neighbouring pairs, and a max-heap with lazy re-insertion finds the
 * next best pair.
 */
import { BYTE_TO_CHAR } from './byte-level.js';
import { BpeModel } from './bpe.js';
import { TokenizerError } from './errors.js';
import { GPT2_PRE_TOKENIZER, PreTokenizer, type PreTokenizerSpec } from './pretokenize.js';
import { Tokenizer, type AddedToken, type SpecialTokenRoles } from './tokenizer.js';

export interface SpecialToken {
  content: string;
  role?: keyof SpecialTokenRoles;
  /** Fixed id; tokens without one take the lowest free ids, in list order, before the bytes. */
  id?: number;
}

/** Skywork-MoE's special tokens (its config.json: pad 0, bos 1, eos 2), and `<unk>` at 3. */
export const SKYWORK_SPECIAL_TOKENS: readonly SpecialToken[] = [
  { content: '<pad>', role: 'pad', id: 0 },
  { content: '<s>', role: 'bos', id: 1 },
  { content: '</s>', role: 'eos', id: 2 },
  { content: '<unk>', role: 'unk', id: 3 },
];

export interface TrainProgress {
  phase: 'count' | 'merge';
  /** Distinct words counted so far. */
  words: number;
  merges: number;
  vocabSize: number;
  targetVocabSize: number;
}

export interface TrainBpeOptions {
  /** Total ids, special and byte tokens included. */
  vocabSize: number;
  /** Stop when the best pair occurs fewer times than this; default 2. */
  minFrequency?: number;
  /** Default SKYWORK_SPECIAL_TOKENS. */
  specialTokens?: readonly SpecialToken[];
  /** Put bos before every encoded text (a TemplateProcessing post-processor); default false. */
  addBos?: boolean;
  /** Put eos after every encoded text; default false. */
  addEos?: boolean;
  /** Default GPT-2's ByteLevel pre-tokenizer. */
  preTokenizer?: PreTokenizerSpec;
  onProgress?: (p: TrainProgress) => void;
}

/** Merges, and texts counted, between progress reports. */
const PROGRESS_EVERY = 256;
const PROGRESS_TEXTS = 1000;

/**
 * Train a tokenizer. Deterministic: ties between equally frequent pairs go to the pair whose
 * (left, right) strings sort first.
 * @example
 * ```ts
 * const tok = trainBpe(['low lower lowest', 'new newer'], { vocabSize: 270 });
 * tok.encode('lowest'); // fewer ids than bytes
 * ```
 */
export function trainBpe(texts: Iterable<string>, options: TrainBpeOptions): Tokenizer {
  const target = options.vocabSize;
  const minFrequency = options.minFrequency ?? 2;
  const specials = options.specialTokens ?? SKYWORK_SPECIAL_TOKENS;
  const preSpec = options.preTokenizer ?? GPT2_PRE_TOKENIZER;
  if (!new PreTokenizer(preSpec).byteLevel) throw new TokenizerError('trainBpe trains byte-level BPE: the pre-tokenizer needs a ByteLevel step');
  const report = options.onProgress ?? (() => {});
  if (!Number.isInteger(target) || target < specials.length + 256) {
    throw new TokenizerError(`vocabSize ${target} must be an integer >= ${specials.length} special + 256 byte tokens`);
  }

  // Ids: fixed special ids first, then the rest in order of creation into the free ids.
  const tokens: string[] = [];
  const ids = new Map<string, number>();
  const taken = new Set<number>();
  for (const s of specials) {
    if (s.id === undefined) continue;
    if (!Number.isInteger(s.id) || s.id < 0 || s.id >= target) {
      throw new TokenizerError(`special token ${JSON.stringify(s.content)}: id ${s.id} outside [0, ${target})`);
    }
    if (taken.has(s.id)) throw new TokenizerError(`special token ${JSON.stringify(s.content)}: id ${s.id} used twice`);
    taken.add(s.id);
  }
  let nextFree = 0;
  let assigned = 0;
  const assign = (token: string, fixed?: number): number => {
    let id = fixed;
    if (id === undefined) {
      while (taken.has(nextFree)) nextFree++;
      id = nextFree++;
    }
    if (ids.has(token)) throw new TokenizerError(`token ${JSON.stringify(token)} defined twice`);
    tokens[id] = token;
    ids.set(token, id);
    assigned++;
    return id;
  };
  const added: AddedToken[] = [];
  const roles: SpecialTokenRoles = {};
  for (const s of specials) {
    added.push({ id: assign(s.content, s.id), content: s.content, special: true });
    if (s.role) roles[s.role] = s.content;
  }
  const byteIds = BYTE_TO_CHAR.map((c) => assign(c));

  // Distinct words with their counts, as sequences of byte-token ids.
  const pre = new PreTokenizer(preSpec);
  const wordCounts = new Map<string, number>();
  let seen = 0;
  const countProgress = (): void => report({ phase: 'count', words: wordCounts.size, merges: 0, vocabSize: assigned, targetVocabSize: target });
  for (const text of texts) {
    for (const w of pre.split(text)) wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    if (++seen % PROGRESS_TEXTS === 0) countProgress();
  }
  countProgress();
  const encoder = new TextEncoder();
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Array.from(encoder.encode(w), (b) => byteIds[b]!));
    counts.push(c);
  }

  // Pair key = left * stride + right; every id is below target.
  const stride = target;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addPair = (key: number, delta: number, w: number): void => {
    const c = (pairCount.get(key) ?? 0) + delta;
    if (c === 0) pairCount.delete(key);
    else pairCount.set(key, c);
    if (delta > 0) {
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  };
  words.forEach((syms, w) => {
    for (let i = 0; i + 1 < syms.length; i++) addPair(syms[i]! * stride + syms[i + 1]!, counts[w]!, w);
  });

  const heap = new PairHeap(tokens, stride);
  for (const [key, c] of pairCount) heap.push(c, key);

  const merges: [string, string][] = [];
  const visited = new Int32Array(words.length).fill(-1);
  while (assigned < target && heap.size > 0) {
    const { count, key } = heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (current !== count) {
      // Stale: the pair lost occurrences since it was pushed; queue it at its true count.
      if (current > 0) heap.push(current, key);
      continue;
    }
    if (count < minFrequency) break;
    const a = Math.floor(key / stride);
    const b = key % stride;
    const merged = tokens[a]! + tokens[b]!;
    // Two different merges can spell the same token (ab+c, a+bc); it keeps its first id.
    const m = ids.get(merged) ?? assign(merged);
    merges.push([tokens[a]!, tokens[b]!]);

    const touched = new Set<number>();
    const step = merges.length;
    for (const w of pairWords.get(key) ?? []) {
      if (visited[w] === step) continue;
      visited[w] = step;
      const c = counts[w]!;
      const s = words[w]!;
      // Merge in place, left to right; each merge moves the counts of its two neighbour pairs.
      // A previous symbol that is itself a fresh merge (a b a b) is already `m`, so the pair
      // between two adjacent occurrences is counted once.
      let out = 0;
      for (let r = 0; r < s.length; ) {
        if (r + 1 < s.length && s[r] === a && s[r + 1] === b) {
          addPair(key, -c, w);
          if (out > 0) {
            const p = s[out - 1]!;
            addPair(p * stride + a, -c, w);
            addPair(p * stride + m, c, w);
            touched.add(p * stride + m);
          }
          if (r + 2 < s.length) {
            const nx = s[r + 2]!;
            addPair(b * stride + nx, -c, w);
            addPair(m * stride + nx, c, w);
            touched.add(m * stride + nx);
          }
          s[out++] = m;
          r += 2;
        } else {
          s[out++] = s[r++]!;
        }
      }
      s.length = out;
    }
    pairWords.delete(key);
    for (const k of touched) {
      const c = pairCount.get(k);
      if (c !== undefined && c > 0) heap.push(c, k);
    }
    if (step % PROGRESS_EVERY === 0) {
      report({ phase: 'merge', words: words.length, merges: step, vocabSize: assigned, targetVocabSize: target });
    }
  }
  report({ phase: 'merge', words: words.length, merges: merges.length, vocabSize: assigned, targetVocabSize: target });

  const template = {
    prefix: options.addBos && roles.bos !== undefined ? [roles.bos] : [],
    suffix: options.addEos && roles.eos !== undefined ? [roles.eos] : [],
  };
  if ((options.addBos && roles.bos === undefined) || (options.addEos && roles.eos === undefined)) {
    throw new TokenizerError('addBos / addEos need a special token with role bos / eos');
  }
  const vocab = new Map<string, number>();
  tokens.forEach((t, id) => vocab.set(t, id));
  return new Tokenizer({ model: new BpeModel({ vocab, merges, byteLevel: true }), addedTokens: added, preTokenizer: preSpec, template, roles });
}

/**
 * Max-heap of (count, pair key); equal counts go to the pair whose left, then right, token
 * string sorts first (UTF-16 order), so training never depends on insertion order.
 */
class PairHeap {
  private readonly count: number[] = [];
  private readonly key: number[] = [];

  constructor(
    private readonly tokens: readonly string[],
    private readonly stride: number,
  ) {}

  get size(): number {
    return this.count.length;
  }

  push(c: number, k: number): void {
    let i = this.count.length;
    this.count.push(c);
    this.key.push(k);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { count: number; key: number } {
    const top = { count: this.count[0]!, key: this.key[0]! };
    const lastC = this.count.pop()!;
    const lastK = this.key.pop()!;
    const n = this.count.length;
    if (n > 0) {
      this.count[0] = lastC;
      this.key[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < n && this.before(l, m)) m = l;
        if (r < n && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  private before(i: number, j: number): boolean {
    const ci = this.count[i]!;
    const cj = this.count[j]!;
    if (ci !== cj) return ci > cj;
    const ki = this.key[i]!;
    const kj = this.key[j]!;
    const li = this.tokens[Math.floor(ki / this.stride)]!;
    const lj = this.tokens[Math.floor(kj / this.stride)]!;
    if (li !== lj) return li < lj;
    return this.tokens[ki % this.stride]! < this.tokens[kj % this.stride]!;
  }

  private swap(i: number, j: number): void {
    [this.count[i], this.count[j]] = [this.count[j]!, this.count[i]!];
    [this.key[i], this.key[j]] = [this.key[j]!, this.key[i]!];
  }
}
