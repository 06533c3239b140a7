/**
 * A paged KV cache (vLLM's PagedAttention layout): per layer, keys and values in one pool of
 * fixed-size blocks, [numBlocks * blockSize, Hkv, D] f32; a sequence owns a list of blocks (its
 * block table), position p living in slot table[p / blockSize] * blockSize + p % blockSize. Blocks
 * are handed out and taken back by the engine's scheduler; the model only reads and writes slots.
 */
import type { Backend } from '../backend/backend.js';
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { ModelConfig } from './config.js';
import { headSplit, type TensorShard } from './shard.js';

export class KVCacheError extends Error {
  override name = 'KVCacheError';
}

/** Bytes of keys and values one block holds over all layers (of every key/value head: the whole tensor-parallel group's). */
export function bytesPerBlock(cfg: ModelConfig, blockSize: number): number {
  return 2 * cfg.numLayers * blockSize * cfg.numKvHeads * cfg.headDim * 4;
}

export class PagedKVCache {
  /** Per layer: keys and values [numBlocks * blockSize, Hkv, D]. */
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  /** The key/value heads held: all, or a tensor-parallel rank's (model/shard.ts). */
  readonly kvHeads: number;
  private readonly freeList: number[];

  /** With `shard`, the cache of one tensor-parallel rank: the same blocks, only its key/value heads. */
  constructor(
    cfg: ModelConfig,
    readonly numBlocks: number,
    readonly blockSize: number,
    backend: Backend,
    shard?: TensorShard,
  ) {
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new KVCacheError(`block size must be a positive integer, got ${blockSize}`);
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new KVCacheError(`the KV cache needs at least one block, got ${numBlocks}`);
    this.kvHeads = shard ? headSplit(cfg, shard).kvHeads : cfg.numKvHeads;
    const shape = [numBlocks * blockSize, this.kvHeads, cfg.headDim];
    try {
      for (let l = 0; l < cfg.numLayers; l++) {
        this.k.push(T.keep(T.zeros(shape, 'f32', backend)));
        this.v.push(T.keep(T.zeros(shape, 'f32', backend)));
      }
    } catch (e) {
      this.dispose();
      throw new KVCacheError(`cannot allocate a KV cache of ${numBlocks} blocks (${((numBlocks * bytesPerBlock(cfg, blockSize) * this.kvHeads) / cfg.numKvHeads / 2 ** 30).toFixed(2)} GiB): ${(e as Error).message}`);
    }
    // Lowest block ids first (pop from the end).
    this.freeList = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  /** Blocks that fit in `bytes` for this config (at least 1 is not guaranteed: 0 means too small). */
  static blocksFor(cfg: ModelConfig, bytes: number, blockSize: number): number {
    return Math.floor(bytes / bytesPerBlock(cfg, blockSize));
  }

  get freeBlocks(): number {
    return this.freeList.length;
  }

  get usedBlocks(): number {
    return this.numBlocks - this.freeList.length;
  }

  /** A free block id, or null when none is left. */
  allocate(): number | null {
    return this.freeList.pop() ?? null;
  }

  /** Give blocks back (a finished, aborted or preempted sequence's table). */
  release(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (!Number.isInteger(b) || b < 0 || b >= this.numBlocks) throw new KVCacheError(`release: block ${b} is not one of the ${this.numBlocks}`);
      this.freeList.push(b);
    }
    if (this.freeList.length > this.numBlocks) throw new KVCacheError('release: a block was released twice');
  }

  /** Bytes held (keys and values of all layers). */
  get bytes(): number {
    return this.k.reduce((s, t) => s + 8 * t.size, 0);
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}
