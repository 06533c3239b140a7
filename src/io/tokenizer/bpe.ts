/**
 * A byte-level BPE tokenizer (GPT-2 / Llama-3 style): text is cut into words by the
 * pre-tokenizer, each word's UTF-8 bytes start as one token each, and merges are applied lowest
 * rank first (leftmost first among equal ranks), as Hugging Face tokenizers' BPE model does.
 */
import { BYTE_TO_CHAR, bytesToToken, tokenToBytes, utf8Encode } from './byte-level.js';
import { TokenizerError } from './errors.js';
import { GPT2_PRE_TOKENIZER, PreTokenizer, type PreTokenizerSpec } from './pretokenize.js';
import { StreamDecoder } from './stream.js';

/** A token matched whole in the input before pre-tokenization (HF "added_tokens"). */
export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens (bos, eos, pad, chat markers) are matched only with `allowSpecial`. */
  special: boolean;
}

/** Which tokens play the bos / eos / pad / unk roles (by content). */
export interface SpecialTokenRoles {
  bos?: string;
  eos?: string;
  pad?: string;
  unk?: string;
}

export interface BpeTokenizerInit {
  /** token -> id; byte-level strings (see byte-level.ts). Added tokens may be in it too. */
  vocab: ReadonlyMap<string, number>;
  /** Merges in rank order: [left, right], both tokens of the vocab, as is left + right. */
  merges: readonly (readonly [string, string])[];
  addedTokens?: readonly AddedToken[];
  /** Default: GPT-2's ByteLevel pre-tokenizer. */
  preTokenizer?: PreTokenizerSpec;
  /** NFC-normalize input before encoding (HF normalizer {"type":"NFC"}, used by Qwen2). */
  nfc?: boolean;
  /** Special tokens put before / after every text when encode's `addSpecialTokens` is on. */
  template?: { prefix: readonly string[]; suffix: readonly string[] };
  /** Take a word whole when it is a vocab token, before any merge (HF `ignore_merges`, Llama-3). */
  ignoreMerges?: boolean;
  roles?: SpecialTokenRoles;
  /** The file this comes from, named in errors. */
  file?: string;
}

export interface EncodeOptions {
  /** Match the text of special added tokens (e.g. `</s>`) as those tokens; default false, when
   * such text is encoded as plain bytes like any other text. */
  allowSpecial?: boolean;
  /** Put the template's special tokens (e.g. bos) around the text; default true (as HF). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special added tokens from the output; default false. */
  skipSpecialTokens?: boolean;
}

const UTF8 = new TextEncoder();

/** Words at most this long (UTF-16 units) are cached; longer ones are rare and would bloat it. */
const MAX_CACHED_WORD = 64;
/** Entries before the word cache is cleared; bounds memory on endless streams of new words. */
const CACHE_LIMIT = 1 << 17;

/**
 * @example
 * ```ts
 * const tok = trainBpe(['the cat sat on the mat'], { vocabSize: 270 });
 * const ids = tok.encode('the mat');
 * tok.decode(ids); // 'the mat'
 * ```
 */
export class BpeTokenizer {
  /** One more than the largest id (HF `get_vocab_size(with_added_tokens=True)` for dense vocabs). */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  readonly merges: readonly (readonly [string, string])[];
  readonly addedTokens: readonly AddedToken[];
  readonly preTokenizer: PreTokenizer;
  readonly nfc: boolean;
  readonly ignoreMerges: boolean;
  readonly roles: Readonly<SpecialTokenRoles>;
  readonly template: { readonly prefix: readonly string[]; readonly suffix: readonly string[] };

  private readonly vocab: Map<string, number>;
  private readonly tokens: (string | undefined)[];
  private readonly bytesOf: (Uint8Array | undefined)[];
  private readonly specialIds = new Set<number>();
  /** Initial token of each byte, -1 when the vocab lacks it. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** (left * stride + right) -> merge rank; mergedId[rank] is the merged token. */
  private readonly ranks = new Map<number, number>();
  private readonly mergedId: Int32Array;
  private readonly stride: number;
  private readonly specialRe: RegExp | undefined;
  private readonly plainAddedRe: RegExp | undefined;
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  private readonly cache = new Map<string, readonly number[]>();
  private readonly scratch = { buf: new Uint8Array(256) };
  private readonly file: string | undefined;

  constructor(init: BpeTokenizerInit) {
    const file = (this.file = init.file);
    const fail = (msg: string, field: string): never => {
      throw new TokenizerError(msg, file, field);
    };
    this.vocab = new Map(init.vocab);
    this.tokens = [];
    for (const [token, id] of this.vocab) {
      if (!Number.isInteger(id) || id < 0) fail(`token ${JSON.stringify(token)} has invalid id ${id}`, 'model.vocab');
      const other = this.tokens[id];
      if (other !== undefined) fail(`duplicate id ${id} for ${JSON.stringify(other)} and ${JSON.stringify(token)}`, 'model.vocab');
      this.tokens[id] = token;
    }
    this.addedTokens = (init.addedTokens ?? []).map((t) => ({ ...t }));
    this.addedTokens.forEach((t, i) => {
      const field = `added_tokens[${i}]`;
      if (!Number.isInteger(t.id) || t.id < 0) fail(`invalid id ${t.id}`, field);
      if (t.content === '') fail('empty content', field);
      const known = this.vocab.get(t.content);
      if (known !== undefined && known !== t.id) fail(`${JSON.stringify(t.content)} has id ${t.id} but ${known} in the vocab`, field);
      const other = this.tokens[t.id];
      if (other !== undefined && other !== t.content) {
        fail(`duplicate id ${t.id} for ${JSON.stringify(other)} and ${JSON.stringify(t.content)}`, field);
      }
      this.vocab.set(t.content, t.id);
      this.tokens[t.id] = t.content;
      if (t.special) this.specialIds.add(t.id);
    });
    this.vocabSize = this.tokens.length;
    this.stride = Math.max(1, this.vocabSize);

    const added = new Set(this.addedTokens.map((t) => t.id));
    this.bytesOf = this.tokens.map((t, id) => {
      if (t === undefined) return undefined;
      return added.has(id) ? UTF8.encode(t) : (tokenToBytes(t) ?? UTF8.encode(t));
    });
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.vocab.get(BYTE_TO_CHAR[b]!) ?? -1;

    this.merges = init.merges.map(([a, b]) => [a, b] as const);
    this.mergedId = new Int32Array(this.merges.length);
    this.merges.forEach(([a, b], rank) => {
      const field = `model.merges[${rank}]`;
      const what = `merge ${JSON.stringify(`${a} ${b}`)}`;
      const left = this.vocab.get(a) ?? fail(`${what}: unknown token ${JSON.stringify(a)}`, field);
      const right = this.vocab.get(b) ?? fail(`${what}: unknown token ${JSON.stringify(b)}`, field);
      const merged = this.vocab.get(a + b) ?? fail(`${what}: result ${JSON.stringify(a + b)} is not in the vocab`, field);
      const key = left * this.stride + right;
      // A repeated merge keeps its first (lowest) rank, as HF does.
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
      this.mergedId[rank] = merged;
    });

    this.preTokenizer = new PreTokenizer(init.preTokenizer ?? GPT2_PRE_TOKENIZER, file);
    this.nfc = init.nfc ?? false;
    this.ignoreMerges = init.ignoreMerges ?? false;

    this.roles = { ...init.roles };
    const roleId = (role: keyof SpecialTokenRoles): number | undefined => {
      const content = this.roles[role];
      if (content === undefined) return undefined;
      return this.vocab.get(content) ?? fail(`${role} token ${JSON.stringify(content)} is not in the vocab`, `${role}_token`);
    };
    this.bosId = roleId('bos');
    this.eosId = roleId('eos');
    this.padId = roleId('pad');
    this.unkId = roleId('unk');

    this.template = { prefix: [...(init.template?.prefix ?? [])], suffix: [...(init.template?.suffix ?? [])] };
    const templateId = (t: string): number => this.vocab.get(t) ?? fail(`template token ${JSON.stringify(t)} is not in the vocab`, 'post_processor');
    this.prefixIds = this.template.prefix.map(templateId);
    this.suffixIds = this.template.suffix.map(templateId);

    this.specialRe = alternation(this.addedTokens.map((t) => t.content));
    this.plainAddedRe = alternation(this.addedTokens.filter((t) => !t.special).map((t) => t.content));
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  /** True for the ids of special added tokens (bos, eos, pad, unk, ...). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The bytes token `id` stands for (an added token: its content's UTF-8). */
  tokenBytes(id: number): Uint8Array {
    const b = this.bytesOf[id];
    if (b === undefined) throw new TokenizerError(`token id ${id} is not in the vocab (size ${this.vocabSize})`, this.file);
    return b;
  }

  /**
   * @example
   * ```ts
   * tok.encode('hi </s>');                        // '</s>' as plain bytes
   * tok.encode('hi </s>', { allowSpecial: true }); // [..., tok.eosId]
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (options.addSpecialTokens ?? true) out.push(...this.prefixIds);
    const re = options.allowSpecial ? this.specialRe : this.plainAddedRe;
    if (re === undefined) {
      this.encodeOrdinary(text, out);
    } else {
      re.lastIndex = 0;
      let last = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        this.encodeOrdinary(text.slice(last, m.index), out);
        out.push(this.vocab.get(m[0])!);
        last = m.index + m[0].length;
      }
      this.encodeOrdinary(text.slice(last), out);
    }
    if (options.addSpecialTokens ?? true) out.push(...this.suffixIds);
    return out;
  }

  /** Invalid UTF-8 (a multi-byte character cut by the ids' ends) decodes as U+FFFD. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (const id of ids) {
      if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
      const b = this.tokenBytes(id);
      parts.push(b);
      n += b.length;
    }
    const all = new Uint8Array(n);
    let at = 0;
    for (const b of parts) {
      all.set(b, at);
      at += b.length;
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  /**
   * An incremental decoder for generation: push ids one at a time; text comes out only once its
   * UTF-8 characters are complete.
   * @example
   * ```ts
   * const s = tok.decodeStream();
   * for (const id of ids) process.stdout.write(s.push(id));
   * process.stdout.write(s.end());
   * ```
   */
  decodeStream(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }

  private encodeOrdinary(text: string, out: number[]): void {
    if (text.length === 0) return;
    if (this.nfc) text = text.normalize('NFC');
    for (const word of this.preTokenizer.split(text)) {
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.mergeWord(word);
        if (word.length <= MAX_CACHED_WORD) {
          if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
          this.cache.set(word, ids);
        }
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
  }

  /**
   * BPE on one word: a linked list of symbols and a min-heap of (rank, position) of mergeable
   * neighbours, so a long word costs O(n log n) rather than a rescan per merge.
   */
  private mergeWord(word: string): number[] {
    const n = utf8Encode(word, this.scratch);
    const bytes = this.scratch.buf;
    if (this.ignoreMerges) {
      const whole = this.vocab.get(bytesToToken(bytes.subarray(0, n)));
      if (whole !== undefined) return [whole];
    }
    const sym = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const id = this.byteIds[bytes[i]!]!;
      if (id < 0) {
        const hex = bytes[i]!.toString(16).padStart(2, '0');
        throw new TokenizerError(`byte 0x${hex} (token ${JSON.stringify(BYTE_TO_CHAR[bytes[i]!])}) is not in the vocab`, this.file, 'model.vocab');
      }
      sym[i] = id;
    }
    if (n === 1) return [sym[0]!];
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

/** A global regex matching any of `words`, longest first so `<s>` never cuts `<s>x` short. */
function alternation(words: string[]): RegExp | undefined {
  if (words.length === 0) return undefined;
  const sorted = [...words].sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
  return new RegExp(sorted.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gu');
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
