/** Shared by the serve tests: a small byte-level BPE tokenizer as `skymoe init` trains one (bos <s>, eos </s>, no chat template). */
import { trainBpe, type Tokenizer } from '../../src/io/tokenizer/index.js';

export const CORPUS = [
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, ' +
    'and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.',
];

export function smallTokenizer(): Tokenizer {
  return trainBpe(CORPUS, { vocabSize: 320 });
}
