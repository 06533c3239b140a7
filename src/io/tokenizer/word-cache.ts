/** A bounded cache of the ids of words, shared by the BPE and Unigram models. */

/** Words at most this long (UTF-16 units) are cached; longer ones are rare and would bloat it. */
const MAX_CACHED_WORD = 64;
/** Entries before the cache is cleared; bounds memory on endless streams of new words. */
const CACHE_LIMIT = 1 << 17;

export class WordCache {
  private readonly map = new Map<string, readonly number[]>();

  /** Append the ids of `word` to `out`, computing them with `encode` when not cached. */
  tokenize(word: string, encode: (word: string) => readonly number[], out: number[]): void {
    if (word.length === 0) return;
    let ids = this.map.get(word);
    if (ids === undefined) {
      ids = encode(word);
      if (word.length <= MAX_CACHED_WORD) {
        if (this.map.size >= CACHE_LIMIT) this.map.clear();
        this.map.set(word, ids);
      }
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  }

  clear(): void {
    this.map.clear();
  }
}
