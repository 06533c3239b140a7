/** Shared by the serve tests: a small byte-level BPE tokenizer as `skymoe init` trains one (bos <s>, eos </s>, no chat template), and helpers. */
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { trainBpe, type Tokenizer } from '../../src/io/tokenizer/index.js';

export const CORPUS = [
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, ' +
    'and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.',
];

export function smallTokenizer(): Tokenizer {
  return trainBpe(CORPUS, { vocabSize: 320 });
}

/** The status and OpenAI error object of a rejected openai client call. */
export async function apiError(p: Promise<unknown>): Promise<{ status: number; error: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    return { status: e.status as number, error: e.error as Record<string, unknown> };
  }
  assert.fail('expected an error');
}
