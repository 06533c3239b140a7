/**
 * A rank of the tensor-parallel inference tests: the rank-ordered all-reduce, and paged steps of
 * the model (this rank's slice, its key/value heads of the cache) with the logits every rank computes.
 */
import type { ModelConfig } from '../../src/model/config.js';
import { PagedKVCache } from '../../src/model/paged-kv.js';
import { type PagedStep, SkyworkMoE } from '../../src/model/skywork-moe.js';
import { inferenceOps } from '../../src/infer/tensor-parallel.js';
import { reduceFromGroup } from '../../src/parallel/runtime/autograd-comm.js';
import type { RankContext } from '../../src/parallel/runtime/ranks.js';

export const BLOCK = 4;

/** Two sequences (A: 7-token prompt, B: 5) in three steps: chunked prefill, then decode; `only` keeps one. */
export function pagedSteps(vocab: number, only?: 'A' | 'B'): PagedStep[] {
  const seqs = [
    { name: 'A', blocks: [0, 1, 2], tokens: [3, 17, 5, 29, 11, 2, 40, 7, 19], chunks: [[0, 7], [7, 8], [8, 9]] },
    { name: 'B', blocks: [3, 4], tokens: [8, 1, 33, 12, 6, 21], chunks: [[0, 3], [3, 5], [5, 6]] },
  ].filter((s) => !only || s.name === only);
  return [0, 1, 2].map((k) => {
    const ids: number[] = [], positions: number[] = [], slots: number[] = [], rowSeq: number[] = [], logitRows: number[] = [];
    seqs.forEach((s, q) => {
      const [from, to] = s.chunks[k]!;
      for (let p = from!; p < to!; p++) {
        ids.push(s.tokens[p]! % vocab);
        positions.push(p);
        slots.push(s.blocks[Math.floor(p / BLOCK)]! * BLOCK + (p % BLOCK));
        rowSeq.push(q);
      }
      if (k > 0 || s.name === 'A') logitRows.push(ids.length - 1); // B's first chunk is mid-prompt
    });
    const blockTables = Int32Array.from(seqs.flatMap((s) => [...s.blocks, ...new Array<number>(3 - s.blocks.length).fill(0)]));
    return { ids: Int32Array.from(ids), positions: Int32Array.from(positions), slots: Int32Array.from(slots), rowSeq: Int32Array.from(rowSeq), blockTables, maxBlocks: 3, logitRows: Int32Array.from(logitRows) };
  });
}

/** The logits of each step on a fresh cache. */
export function runSteps(model: SkyworkMoE, steps: PagedStep[], kv: PagedKVCache): Float32Array[] {
  try {
    return steps.map((s) => model.forwardPaged(s, kv));
  } finally {
    kv.dispose();
  }
}

export type StepRankCase =
  | { kind: 'reduce'; lengths: number[]; seed: number }
  | { kind: 'steps'; config: ModelConfig; experts: 'edp' | 'etp'; seed: number; only?: 'A' | 'B'; reduce?: 'ordered' | 'ring' };

function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 10 ** ((s % 7) - 3); // magnitudes 1e-3..1e3: the order of addition shows in the bits
  });
}

/** Rank r's buffer of the reduce case, as the test recomputes it. */
export const reduceInput = (n: number, seed: number, rank: number) => values(n, seed * 131 + rank + 1);

export function rankMain(ctx: RankContext<StepRankCase>): Float32Array[] {
  const g = ctx.comm.group('tp', Array.from({ length: ctx.size }, (_, i) => i));
  const c = ctx.data;
  if (c.kind === 'reduce') return c.lengths.map((n) => g.allReduceOrdered(reduceInput(n, c.seed, ctx.rank)));
  const ops = inferenceOps(g, c.experts);
  // the training seam (ring all-reduce) instead: shows what the ordered sum is for
  const tp = c.reduce === 'ring' ? { ...ops, reduce: (x: Parameters<typeof ops.reduce>[0]) => reduceFromGroup(x, g) } : ops;
  const model = SkyworkMoE.create(c.config, { seed: c.seed, backend: ctx.backend, tp });
  try {
    return runSteps(model, pagedSteps(c.config.vocabSize, c.only), new PagedKVCache(c.config, 8, BLOCK, ctx.backend, tp.shard));
  } finally {
    model.dispose();
  }
}
