/** Keys and values of past positions, per layer, for incremental decoding. */
import type { Backend } from '../backend/backend.js';
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { ModelConfig } from './config.js';

export class KVCache {
  /** Per layer: keys and values [B, capacity, Hkv, D]. */
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  /** Positions filled so far (the same for every sequence of the batch). */
  length = 0;

  constructor(
    cfg: ModelConfig,
    readonly batch: number,
    readonly capacity: number,
    backend: Backend,
  ) {
    if (capacity > cfg.maxPositions) throw new RangeError(`KV cache of ${capacity} positions exceeds max_position_embeddings ${cfg.maxPositions}`);
    for (let l = 0; l < cfg.numLayers; l++) {
      const shape = [batch, capacity, cfg.numKvHeads, cfg.headDim];
      this.k.push(T.keep(T.zeros(shape, 'f32', backend)));
      this.v.push(T.keep(T.zeros(shape, 'f32', backend)));
    }
  }

  /** Bytes held (keys and values of all layers). */
  get bytes(): number {
    return this.k.reduce((s, t) => s + 8 * t.size, 0);
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}
