/**
 * The Skywork-MoE model (also Mixtral, Qwen3-MoE and OLMoE, and the dense Llama, Mistral and
 * Qwen3), top to bottom:
 *
 *   h = x + Attn(RMSNorm(x));  y = h + MoE(RMSNorm(h))   (or a dense SwiGLU MLP)
 *   logits = lm_head(RMSNorm(y_L))
 *
 * Parameter names are the Hugging Face names of the config's layout (SPEC section 1), except that
 * each MoE layer's experts are stacked: `...block_sparse_moe.experts.w1` (Qwen3-MoE, OLMoE:
 * `...mlp.experts.gate_proj`) is [E, F, H] (io/ maps the per-expert names at load and save).
 */
import type { Backend } from '../backend/backend.js';
import * as T from '../tensor/index.js';
import type { Tensor } from '../tensor/index.js';
import type { ExpertWeights, Weight } from '../tensor/index.js';
import { attentionBlock, type AttentionWeights, pagedAttentionBlock, type RopeTables } from './attention.js';
import { isMoeLayer, LAYOUTS, type ModelConfig, validateConfig } from './config.js';
import { KVCache } from './kv-cache.js';
import { DROPLESS, moeForward, type MoeOptions, type MoeWeights, type RouterStats } from './moe.js';
import type { PagedKVCache } from './paged-kv.js';
import { type ExpertParallelOps, headSplit, type SequenceParallelOps, shardPlan, type SliceSpec, slicedShape, sliceValues, type TensorParallelOps, unevenSplit } from './shard.js';

// ------------------------------------------------------------------ parameter layout

export type ParamKind = 'matrix' | 'norm';

export interface ParamSpec {
  name: string;
  shape: number[];
  kind: ParamKind;
}

/** Internal names of one MoE layer's parameters. */
export interface MoeParamNames {
  /** The router, as the file names it (the first layer of a 2-layer gate). */
  gate: string;
  gate2?: string;
  /** The stacked experts (`<block>.experts.<projection>`, [E, rows, cols]): gate (w1), up (w3), down (w2). */
  w1: string;
  w3: string;
  w2: string;
}

/** The parameter names of layer l's MoE block in the config's layout (block_sparse_moe.{w1,w3,w2} or mlp.{gate,up,down}_proj). */
export function moeParamNames(c: ModelConfig, l: number): MoeParamNames {
  const { moeBlock, expertProjections: [g, u, d] } = LAYOUTS[c.layout];
  const m = `model.layers.${l}.${moeBlock}`;
  const names: MoeParamNames = { gate: c.twoLayerGate ? `${m}.gate.0.weight` : `${m}.gate.weight`, w1: `${m}.experts.${g}`, w3: `${m}.experts.${u}`, w2: `${m}.experts.${d}` };
  if (c.twoLayerGate) names.gate2 = `${m}.gate.2.weight`;
  return names;
}

/** Every parameter of a config, in checkpoint order, with its shape. */
export function parameterSpecs(c: ModelConfig): ParamSpec[] {
  const H = c.hiddenSize, F = c.intermediateSize, Fe = c.moeIntermediateSize, E = c.numExperts;
  const qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], kind: 'matrix' }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [H], kind: 'norm' },
      { name: `${p}.self_attn.q_proj.weight`, shape: [qd, H], kind: 'matrix' },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kvd, H], kind: 'matrix' },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kvd, H], kind: 'matrix' },
      { name: `${p}.self_attn.o_proj.weight`, shape: [H, qd], kind: 'matrix' },
    );
    // Qwen3: one weight over the head dim, shared by the heads; OLMoE: one over the whole projection.
    if (c.qkNorm !== 'none') {
      specs.push(
        { name: `${p}.self_attn.q_norm.weight`, shape: [c.qkNorm === 'head' ? c.headDim : qd], kind: 'norm' },
        { name: `${p}.self_attn.k_norm.weight`, shape: [c.qkNorm === 'head' ? c.headDim : kvd], kind: 'norm' },
      );
    }
    specs.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H], kind: 'norm' });
    if (isMoeLayer(c, l)) {
      const m = moeParamNames(c, l);
      if (m.gate2) specs.push({ name: m.gate, shape: [8 * E, H], kind: 'matrix' }, { name: m.gate2, shape: [E, 8 * E], kind: 'matrix' });
      else specs.push({ name: m.gate, shape: [E, H], kind: 'matrix' });
      specs.push(
        { name: m.w1, shape: [E, Fe, H], kind: 'matrix' },
        { name: m.w3, shape: [E, Fe, H], kind: 'matrix' },
        { name: m.w2, shape: [E, H, Fe], kind: 'matrix' },
      );
    } else {
      specs.push(
        { name: `${p}.mlp.gate_proj.weight`, shape: [F, H], kind: 'matrix' },
        { name: `${p}.mlp.up_proj.weight`, shape: [F, H], kind: 'matrix' },
        { name: `${p}.mlp.down_proj.weight`, shape: [H, F], kind: 'matrix' },
      );
    }
  }
  specs.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' });
  if (!c.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], kind: 'matrix' });
  return specs;
}

/**
 * A pipeline stage (parallel/runtime, Megatron's pipeline parallelism): this rank runs decoder
 * layers [from, to); the first stage also holds the embedding, the last the final norm and lm_head
 * (and, with tied embeddings, its own copy of the embedding, kept equal by the trainer).
 */
export interface PipelineStage {
  index: number;
  size: number;
  from: number;
  to: number;
}

/** The stages of a split: layers[i] decoder layers on stage i, in order. */
export function pipelineStages(layers: readonly number[]): PipelineStage[] {
  let from = 0;
  return layers.map((n, index) => {
    const s = { index, size: layers.length, from, to: from + n };
    from += n;
    return s;
  });
}

/** True when a parameter lives on the stage (every parameter without a stage). */
export function stageHolds(c: ModelConfig, stage: PipelineStage | undefined, name: string): boolean {
  if (!stage) return true;
  const first = stage.index === 0, last = stage.index === stage.size - 1;
  if (name === 'model.embed_tokens.weight') return first || (last && c.tieWordEmbeddings);
  if (name === 'model.norm.weight' || name === 'lm_head.weight') return last;
  const m = /^model\.layers\.(\d+)\./.exec(name);
  if (!m) throw new ModelError(`stageHolds: '${name}' is not a parameter of the model`);
  const l = Number(m[1]);
  return l >= stage.from && l < stage.to;
}

// ------------------------------------------------------------------ the model

export interface ForwardOptions {
  /** Routing options (default: dropless, no aux loss). */
  moe?: MoeOptions;
  /** Aux-loss-free balancing: one bias vector per layer (undefined for dense layers). */
  expertBias?: (Float32Array | undefined)[];
  /** Selective recomputation: the core attention is recomputed in the backward instead of kept. */
  recomputeAttention?: boolean;
}

export interface LayerOutput {
  layer: number;
  aux: Tensor | null;
  zLoss: Tensor | null;
  stats: RouterStats;
}

export interface ForwardResult {
  /** (B, T, V) */
  logits: Tensor;
  /** One entry per MoE layer. */
  moe: LayerOutput[];
}

/**
 * One step of continuous batching: N token rows from any number of sequences (a chunk of a
 * prompt, or the last sampled token), each at its own position, with its sequence's block table.
 */
export interface PagedStep {
  /** i32 [N]: the tokens. */
  ids: Int32Array;
  /** [N]: each token's position in its sequence. */
  positions: Int32Array;
  /** [N]: the cache slot each token's key and value are written to. */
  slots: Int32Array;
  /** [N]: each row's sequence, a row of blockTables. */
  rowSeq: Int32Array;
  /** [sequences * maxBlocks]: block ids of each sequence (unused entries: any valid id). */
  blockTables: Int32Array;
  maxBlocks: number;
  /** Rows whose next-token logits are wanted (a sequence's last row when it samples). */
  logitRows: Int32Array;
}

export class ModelError extends Error {
  override name = 'ModelError';
}

/**
 * A model weight: an f32 tensor (trainable), a matrix in a storage dtype, or one matrix per expert
 * (the Hugging Face per-expert tensors, e.g. read in place from a mapped checkpoint).
 */
export type Param = Tensor | Weight | ExpertWeights;
type Matrix = Tensor | Weight;

/** The dense SwiGLU MLP of a layer that is not MoE. */
interface DenseMlpWeights {
  gate: Matrix;
  up: Matrix;
  down: Matrix;
}

/** One decoder layer's weights, resolved once from the names (no string lookups per forward). */
interface LayerWeights {
  inputNorm: Tensor;
  attention: AttentionWeights;
  postNorm: Tensor;
  moe: MoeWeights | null;
  mlp: DenseMlpWeights | null;
}

/** The real values of a weight, copied to the host (all experts stacked [E, rows, cols]). */
export function paramValues(p: Param): Float32Array {
  if (!(p instanceof T.ExpertWeights)) return p.toFloat32();
  const t = p.toTensor();
  try {
    return t.toFloat32();
  } finally {
    t.dispose();
  }
}

/** Expert e of a parameter holding all experts, copied to the host ([rows, cols]). */
export function expertValues(p: Param, e: number): Float32Array {
  if (p instanceof T.ExpertWeights) return p.experts[e]!.toFloat32();
  if (p instanceof T.Tensor) {
    const v = p.rowsView(e, e + 1);
    try {
      return v.toFloat32();
    } finally {
      v.dispose();
    }
  }
  throw new ModelError(`expertValues: ${p} is one matrix, not a set of experts`);
}

export class SkyworkMoE {
  readonly rope: RopeTables;
  private positionCache = new Map<string, Tensor>();
  /** The decoder layers this model runs (all, or a pipeline stage's [from, to)). */
  private readonly layers: LayerWeights[];
  private readonly embed?: Matrix;
  private readonly finalNorm?: Tensor;
  private readonly head?: Matrix;
  /** The first decoder layer this model holds (0 unless a pipeline stage). */
  private readonly layerFrom: number;
  /** This rank's attention heads under tensor parallelism. */
  private readonly heads?: { heads: number; kvHeads: number };

  private constructor(
    readonly config: ModelConfig,
    readonly params: Map<string, Param>,
    readonly backend: Backend,
    /** Tensor parallelism: this rank holds its slices (model/shard.ts) and calls these at the seams. */
    readonly tp?: TensorParallelOps,
    /** Pipeline parallelism: this rank holds and runs one stage (forwardStage). */
    readonly stage?: PipelineStage,
    /** Expert parallelism: this rank holds its whole experts; tokens reach them by all-to-all. */
    readonly ep?: ExpertParallelOps,
  ) {
    if (ep && tp && tp.shard.size > 1 && tp.shard.experts !== 'ep') throw new ModelError(`expert parallelism places the experts itself: the tensor-parallel cut must leave them alone (experts 'ep', got '${tp.shard.experts}')`);
    if (tp && tp.shard.size > 1) this.heads = headSplit(config, tp.shard);
    this.layerFrom = stage?.from ?? 0;
    const layerTo = stage?.to ?? config.numLayers;
    this.rope = T.ropeTables(config.maxPositions, config.headDim, config.ropeTheta, backend);
    const tensor = (name: string): Tensor => {
      const t = this.p(name);
      if (!(t instanceof T.Tensor)) throw new ModelError(`parameter '${name}' must be an f32 tensor (norms and the router stay f32), got ${t}`);
      return t;
    };
    const matrix = (name: string): Matrix => {
      const t = this.p(name);
      if (t instanceof T.ExpertWeights) throw new ModelError(`parameter '${name}' is a matrix, got expert weights`);
      return t;
    };
    const experts = (name: string): Tensor | ExpertWeights => {
      const t = this.p(name);
      if (t instanceof T.Weight) throw new ModelError(`parameter '${name}' holds all experts, got one matrix ${t}`);
      return t;
    };
    this.layers = Array.from({ length: layerTo - this.layerFrom }, (_, i) => {
      const l = this.layerFrom + i;
      const pre = `model.layers.${l}`;
      const a = `${pre}.self_attn`;
      const layer: LayerWeights = {
        inputNorm: tensor(`${pre}.input_layernorm.weight`),
        attention: { q: matrix(`${a}.q_proj.weight`), k: matrix(`${a}.k_proj.weight`), v: matrix(`${a}.v_proj.weight`), o: matrix(`${a}.o_proj.weight`) },
        postNorm: tensor(`${pre}.post_attention_layernorm.weight`),
        moe: null,
        mlp: null,
      };
      if (config.qkNorm !== 'none') {
        layer.attention.qNorm = tensor(`${a}.q_norm.weight`);
        layer.attention.kNorm = tensor(`${a}.k_norm.weight`);
      }
      if (isMoeLayer(config, l)) {
        const m = moeParamNames(config, l);
        layer.moe = { gate: tensor(m.gate), w1: experts(m.w1), w3: experts(m.w3), w2: experts(m.w2) };
        if (m.gate2) layer.moe.gate2 = tensor(m.gate2);
      } else {
        const m = `${pre}.mlp`;
        layer.mlp = { gate: matrix(`${m}.gate_proj.weight`), up: matrix(`${m}.up_proj.weight`), down: matrix(`${m}.down_proj.weight`) };
      }
      return layer;
    });
    const first = !stage || stage.index === 0, last = !stage || stage.index === stage.size - 1;
    if (first || (last && config.tieWordEmbeddings)) this.embed = matrix('model.embed_tokens.weight');
    if (last) {
      this.finalNorm = tensor('model.norm.weight');
      this.head = config.tieWordEmbeddings ? this.embed : matrix('lm_head.weight');
    }
  }

  /** This model is one pipeline stage of several (forward refuses; use forwardStage). */
  get partial(): boolean {
    return this.stage !== undefined && this.stage.size > 1;
  }

  /**
   * A new model with random weights: N(0, initializer_range) matrices, unit norms. With `tp`, this
   * rank's slices of the weights the whole model would get from the same seed; with `stage`, only
   * that pipeline stage's weights (the same values).
   */
  static create(config: ModelConfig, opts: { seed?: number; backend?: Backend; tp?: TensorParallelOps; stage?: PipelineStage; ep?: ExpertParallelOps } = {}): SkyworkMoE {
    validateConfig(config);
    if (opts.stage) checkStage(config, opts.stage);
    const backend = opts.backend ?? T.currentBackend();
    const rng = new T.Rng(opts.seed ?? 0);
    const plan = parallelPlan(config, opts.tp, opts.ep);
    const params = new Map<string, Param>();
    for (const s of parameterSpecs(config)) {
      let t = s.kind === 'norm' ? T.ones(s.shape, backend) : T.randn(s.shape, rng, config.initializerRange, backend);
      if (!stageHolds(config, opts.stage, s.name)) {
        t.dispose(); // drawn all the same: every stage sees the whole model's random stream
        continue;
      }
      const cut = plan.get(s.name);
      if (cut) {
        const whole = t;
        t = T.tensor(sliceValues(whole.toFloat32(), s.shape, cut), slicedShape(s.shape, cut), 'f32', backend);
        whole.dispose();
      }
      params.set(s.name, T.keep(T.parameter(t, s.name)));
    }
    return new SkyworkMoE(config, params, backend, opts.tp, opts.stage, opts.ep);
  }

  /**
   * A model over existing weights (from a checkpoint); checks every name and shape. With `tp`, the
   * split weights must be this rank's slices (see sliceParams); with `stage`, exactly the stage's
   * parameters.
   */
  static fromParams(config: ModelConfig, tensors: Map<string, Param>, backend: Backend, tp?: TensorParallelOps, stage?: PipelineStage, ep?: ExpertParallelOps): SkyworkMoE {
    validateConfig(config);
    if (stage) checkStage(config, stage);
    const plan = parallelPlan(config, tp, ep);
    const params = new Map<string, Param>();
    for (const whole of parameterSpecs(config)) {
      if (!stageHolds(config, stage, whole.name)) continue;
      const cut = plan.get(whole.name);
      const s = cut ? { ...whole, shape: slicedShape(whole.shape, cut) } : whole;
      const t = tensors.get(s.name);
      if (!t) throw new ModelError(`missing parameter '${s.name}' (expected shape [${s.shape}])`);
      const shape = t.shape;
      if (shape.length !== s.shape.length || shape.some((d, i) => d !== s.shape[i])) {
        throw new ModelError(`parameter '${s.name}' has shape [${shape}], the config needs [${s.shape}]`);
      }
      params.set(s.name, t instanceof T.Tensor ? T.parameter(t, s.name) : t);
    }
    for (const name of tensors.keys()) if (!params.has(name)) throw new ModelError(`unexpected parameter '${name}' for this config${stage ? ` on pipeline stage ${stage.index} (layers ${stage.from}-${stage.to - 1})` : ''}`);
    return new SkyworkMoE(config, params, backend, tp, stage, ep);
  }

  /** True when every weight is an f32 tensor in the heap (the model can be trained). */
  get trainable(): boolean {
    return [...this.params.values()].every((p) => p instanceof T.Tensor);
  }

  /** The trainable parameters in checkpoint order (every weight must be an f32 tensor). */
  parameters(): Tensor[] {
    const out: Tensor[] = [];
    for (const [name, p] of this.params) {
      if (!(p instanceof T.Tensor)) throw new ModelError(`parameter '${name}' is ${p instanceof T.Weight ? `a ${p.dtypeName}${p.mapped ? ' mapped' : ''} weight` : 'a set of per-expert weights'}, not a trainable f32 tensor: load the model with dtype f32 to train it`);
      out.push(p);
    }
    return out;
  }

  private p(name: string): Param {
    const t = this.params.get(name);
    if (!t) throw new ModelError(`no parameter '${name}'`);
    return t;
  }

  /** The dense SwiGLU MLP: down(silu(gate x) * up x). x (N, C) -> (N, C). */
  private denseMlp(m: DenseMlpWeights, x: Tensor): Tensor {
    return T.linear(T.swiglu(T.linear(x, m.gate), T.linear(x, m.up)), m.down);
  }

  /** Under expert data parallelism, the experts this rank holds; null under etp (every expert, a slice of each). */
  private expertRange(tp: TensorParallelOps): [number, number] | null {
    if (tp.shard.experts !== 'edp' || !this.config.numExperts) return null;
    const counts = unevenSplit(this.config.numExperts, tp.shard.size); // as shardPlan places them
    const from = counts.slice(0, tp.shard.index).reduce((a, b) => a + b, 0);
    return [from, from + counts[tp.shard.index]!];
  }

  private positions(B: number, Tn: number, start: number, decoding: boolean): Tensor {
    const key = `${B}x${Tn}`;
    const cached = decoding ? undefined : this.positionCache.get(key);
    if (cached) return cached;
    const t = T.tensor(Int32Array.from({ length: B * Tn }, (_, i) => start + (i % Tn)), [B * Tn], 'i32', this.backend);
    // Training and evaluation shapes repeat; decode positions do not. A few shapes at most: the
    // oldest is dropped (graphs that use it hold their own reference).
    if (!decoding) {
      this.positionCache.set(key, T.keep(t));
      if (this.positionCache.size > 8) {
        const [oldKey, old] = this.positionCache.entries().next().value as [string, Tensor];
        this.positionCache.delete(oldKey);
        old.dispose();
      }
    }
    return t;
  }

  /**
   * Forward over token ids [B, T] (training: records autograd; use inside tidy). With a cache,
   * no-grad incremental decoding: the ids continue the cached sequences.
   */
  forward(ids: Tensor, opts: ForwardOptions = {}, cache?: KVCache): ForwardResult {
    const c = this.config;
    if (this.partial) throw new ModelError(`forward: this model is pipeline stage ${this.stage!.index} of ${this.stage!.size} (layers ${this.stage!.from}-${this.stage!.to - 1}); use forwardStage`);
    if (ids.rank !== 2 || ids.dtype !== 'i32') throw new ModelError(`forward: ids must be i32 [batch, time], got ${ids.dtype} [${ids.shape}]`);
    const [B, Tn] = ids.shape as [number, number];
    const start = cache?.length ?? 0;
    if (start + Tn > c.maxPositions) throw new ModelError(`forward: positions up to ${start + Tn} exceed max_position_embeddings ${c.maxPositions}`);
    if (cache && (cache.batch !== B || start + Tn > cache.capacity)) throw new ModelError(`forward: batch ${B} x ${start + Tn} positions do not fit the KV cache (${cache.batch} x ${cache.capacity})`);
    if (cache && this.tp && this.tp.shard.size > 1) throw new ModelError('forward: a KV cache with tensor parallelism is not supported yet (train and score only)');
    const { x, moe } = this.runLayers(T.embedding(this.embed!, ids), this.positions(B, Tn, start, cache !== undefined), opts, cache);
    const logits = this.logitsOf(x); // (B, T, V)
    if (cache) cache.length += Tn;
    return { logits, moe };
  }

  /**
   * One pipeline stage's forward (training and scoring; records autograd): the first stage takes
   * token ids i32 [B, T], the others the previous stage's hidden states [B, T, C]; the last stage
   * returns logits [B, T, V], the others hidden states for the next. `moe` holds this stage's MoE
   * layers (their global indices in `layer`). A model without a stage runs everything.
   */
  forwardStage(input: Tensor, opts: ForwardOptions = {}): { out: Tensor; moe: LayerOutput[] } {
    const c = this.config;
    const first = !this.stage || this.stage.index === 0, last = !this.stage || this.stage.index === this.stage.size - 1;
    if (first && (input.rank !== 2 || input.dtype !== 'i32')) throw new ModelError(`forwardStage: the first stage takes i32 ids [batch, time], got ${input.dtype} [${input.shape}]`);
    if (!first && (input.rank !== 3 || input.dtype !== 'f32' || input.shape[2] !== c.hiddenSize)) throw new ModelError(`forwardStage: stage ${this.stage!.index} takes f32 hidden states [batch, time, ${c.hiddenSize}], got ${input.dtype} [${input.shape}]`);
    const [B, Tn] = input.shape as [number, number];
    if (Tn > c.maxPositions) throw new ModelError(`forwardStage: ${Tn} positions exceed max_position_embeddings ${c.maxPositions}`);
    const { x, moe } = this.runLayers(first ? T.embedding(this.embed!, input) : input, this.positions(B, Tn, 0, false), opts);
    return { out: last ? this.logitsOf(x) : x, moe };
  }

  /** The final norm and lm_head: hidden states [..., C] -> logits [..., V]. */
  private logitsOf(x: Tensor): Tensor {
    return T.linear(T.rmsnorm(x, this.finalNorm!, this.config.rmsNormEps), this.head!);
  }

  /**
   * runLayers under sequence parallelism: between the blocks this rank holds its rows of the
   * B*T tokens; attention and the dense MLP take the all-gathered rows and give back this rank's
   * rows of their sum; the MoE routes all tokens (replicated) and its experts' partial sums are
   * reduce-scattered. The result is all rows again, [B, T, C].
   */
  private runLayersSequenceParallel(x3: Tensor, positions: Tensor, opts: ForwardOptions, sp: SequenceParallelOps, parallel: NonNullable<MoeOptions['parallel']>): { x: Tensor; moe: LayerOutput[] } {
    const c = this.config;
    const [B, Tn] = x3.shape as [number, number, number];
    const N = B * Tn, C = c.hiddenSize;
    const moeOpts = opts.moe ?? DROPLESS;
    const moe: LayerOutput[] = [];
    const whole = (t: Tensor) => T.reshape(sp.gather(t, N), [B, Tn, C]); // into a split block
    let x = sp.scatter(T.reshape(x3, [N, C])); // (n, C): this rank's rows
    for (let i = 0; i < this.layers.length; i++) {
      const w = this.layers[i]!, l = this.layerFrom + i;
      const a = sp.reduceScatter(T.reshape(attentionBlock(whole(T.rmsnorm(x, w.inputNorm, c.rmsNormEps)), w.attention, c, this.rope, positions, undefined, this.heads, opts.recomputeAttention), [N, C]));
      const h = T.add(x, a); // (n, C)
      const hn = T.rmsnorm(h, w.postNorm, c.rmsNormEps); // (n, C)
      let f: Tensor; // (n, C)
      if (w.moe) {
        const bias = opts.expertBias?.[l];
        const o = { ...moeOpts, parallel };
        const out = moeForward(sp.gatherReplicated(hn, N), w.moe, c, bias ? { ...o, expertBias: bias } : o);
        moe.push({ layer: l, aux: out.aux, zLoss: out.zLoss, stats: out.stats });
        f = out.y;
      } else f = sp.reduceScatter(this.denseMlp(w.mlp!, sp.gather(hn, N)));
      x = T.add(h, f);
    }
    return { x: T.reshape(sp.gatherReplicated(x, N), [B, Tn, C]), moe };
  }

  /** The decoder layers this model holds over hidden states x [B, T, C]. */
  private runLayers(x: Tensor, positions: Tensor, opts: ForwardOptions, cache?: KVCache): { x: Tensor; moe: LayerOutput[] } {
    const c = this.config;
    const [B, Tn] = x.shape as [number, number, number];
    const moeOpts = opts.moe ?? DROPLESS;
    const moe: LayerOutput[] = [];
    const tp = this.tp && this.tp.shard.size > 1 ? this.tp : undefined;
    const ep = this.ep && this.ep.shard.size > 1 ? this.ep : undefined;
    // the seams of tensor parallelism: input marked (gradient summed over the group), partial output reduced
    const split = (x: Tensor, f: (x: Tensor) => Tensor) => (tp ? tp.reduce(f(tp.copy(x))) : f(x));
    const same = (x: Tensor) => x;
    const sp = tp?.sequence;
    const parallel = tp || ep
      ? { experts: tp && !ep ? this.expertRange(tp) : null, copy: tp ? (x: Tensor) => tp.copy(x) : same, combine: sp ? (y: Tensor) => sp.reduceScatter(y) : tp ? (y: Tensor) => tp.reduce(y) : same, ...(ep ? { ep } : {}) }
      : undefined;
    if (sp) return this.runLayersSequenceParallel(x, positions, opts, sp, parallel!);
    for (let i = 0; i < this.layers.length; i++) {
      const w = this.layers[i]!, l = this.layerFrom + i;
      const a = split(T.rmsnorm(x, w.inputNorm, c.rmsNormEps), (xn) => attentionBlock(xn, w.attention, c, this.rope, positions, cache ? { kv: cache, layer: l } : undefined, this.heads, opts.recomputeAttention));
      const h = T.add(x, a); // (B, T, C)
      const hn = T.reshape(T.rmsnorm(h, w.postNorm, c.rmsNormEps), [B * Tn, c.hiddenSize]); // (N, C)
      let f: Tensor; // (N, C)
      if (w.moe) {
        const bias = opts.expertBias?.[l];
        const o = parallel ? { ...moeOpts, parallel } : moeOpts;
        const out = moeForward(hn, w.moe, c, bias ? { ...o, expertBias: bias } : o);
        moe.push({ layer: l, aux: out.aux, zLoss: out.zLoss, stats: out.stats });
        f = out.y;
      } else f = split(hn, (h) => this.denseMlp(w.mlp!, h));
      x = T.add(h, T.reshape(f, [B, Tn, c.hiddenSize])); // (B, T, C)
    }
    return { x, moe };
  }

  /**
   * A continuous-batching step over a paged KV cache (no autograd): writes every row's keys and
   * values into its slot, and returns the logits of `logitRows` [R, V] on the host. Runs under
   * T.rowInvariant: a row's result does not depend on what else is in the step (batch invariance).
   *
   * Under tensor parallelism every rank of the group calls it with the same step: its heads attend
   * over its key/value heads of `kv` (a PagedKVCache built with this rank's shard), its share of the
   * MLP or experts runs, and the partial outputs of each block are summed by `tp.reduce` (no
   * autograd: `tp.copy` is not called). For batch invariance that sum must add in a fixed order
   * whatever the step's rows (Group.allReduceOrdered, as infer/tensor-parallel.ts binds it).
   */
  forwardPaged(step: PagedStep, kv: PagedKVCache): Float32Array {
    const c = this.config;
    if (this.partial) throw new ModelError('forwardPaged: a pipeline stage cannot serve (pipeline parallelism is for training)');
    const N = step.ids.length;
    if (N === 0) return new Float32Array(0);
    if (step.positions.length !== N || step.slots.length !== N || step.rowSeq.length !== N) throw new ModelError(`forwardPaged: ${N} ids but ${step.positions.length} positions, ${step.slots.length} slots, ${step.rowSeq.length} row sequences`);
    for (let i = 0; i < N; i++) {
      const id = step.ids[i]!, p = step.positions[i]!;
      if (id < 0 || id >= c.vocabSize) throw new ModelError(`forwardPaged: token id ${id} is outside the vocabulary of ${c.vocabSize}`);
      if (p < 0 || p >= c.maxPositions) throw new ModelError(`forwardPaged: position ${p} is outside max_position_embeddings ${c.maxPositions}`);
    }
    const rowLen = step.positions.map((p) => p + 1);
    const tp = this.tp && this.tp.shard.size > 1 ? this.tp : undefined;
    const reduce = (y: Tensor) => (tp ? tp.reduce(y) : y); // (N, C) partial sums -> whole
    const moeOpts: MoeOptions = tp ? { ...DROPLESS, parallel: { experts: this.expertRange(tp), copy: (x) => x, combine: reduce } } : DROPLESS;
    if (kv.kvHeads !== (this.heads?.kvHeads ?? c.numKvHeads)) throw new ModelError(`forwardPaged: the KV cache holds ${kv.kvHeads} key/value heads, this ${tp ? `tensor-parallel rank ${tp.shard.index} of ${tp.shard.size}` : 'model'} runs ${this.heads?.kvHeads ?? c.numKvHeads}`);
    return T.noGrad(() =>
      T.rowInvariant(() =>
        T.tidy(() => {
          const be = this.backend;
          const ids = T.tensor(step.ids, [N], 'i32', be);
          const positions = T.tensor(step.positions, [N], 'i32', be);
          const slots = T.tensor(step.slots, [N], 'i32', be);
          let x = T.embedding(this.embed!, ids); // (N, C)
          for (let l = 0; l < c.numLayers; l++) {
            const w = this.layers[l]!;
            const meta = { k: kv.k[l]!, v: kv.v[l]!, slots, blockSize: kv.blockSize, rowSeq: step.rowSeq, rowLen, blockTables: step.blockTables, maxBlocks: step.maxBlocks };
            const a = reduce(pagedAttentionBlock(T.rmsnorm(x, w.inputNorm, c.rmsNormEps), w.attention, c, this.rope, positions, meta, this.heads));
            const h = T.add(x, a); // (N, C)
            const hn = T.rmsnorm(h, w.postNorm, c.rmsNormEps);
            const f = w.moe ? moeForward(hn, w.moe, c, moeOpts).y : reduce(this.denseMlp(w.mlp!, hn));
            x = T.add(h, f);
          }
          const R = step.logitRows.length;
          if (R === 0) return new Float32Array(0);
          const last = T.gatherRows(x, T.tensor(step.logitRows, [R], 'i32', be)); // (R, C)
          return this.logitsOf(last).toFloat32(); // (R, V)
        }),
      ),
    );
  }

  /** Incremental decoding step(s) without autograd; returns logits (B, T, V). */
  decode(ids: Tensor, cache: KVCache): Tensor {
    return T.noGrad(() => T.tidy(() => this.forward(ids, {}, cache).logits));
  }

  newCache(batch: number, capacity = this.config.maxPositions): KVCache {
    return new KVCache(this.config, batch, capacity, this.backend);
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const t of this.positionCache.values()) t.dispose();
    this.rope.cos.dispose();
    this.rope.sin.dispose();
  }
}

/** Refuse a stage that is not one of the model's, naming why. */
export function checkStage(c: ModelConfig, s: PipelineStage): void {
  if (!Number.isInteger(s.size) || s.size < 1 || !Number.isInteger(s.index) || s.index < 0 || s.index >= s.size) throw new ModelError(`pipeline: stage ${s.index} of ${s.size} is not a stage of the pipeline`);
  if (!Number.isInteger(s.from) || !Number.isInteger(s.to) || s.from < 0 || s.to > c.numLayers || s.from > s.to) throw new ModelError(`pipeline: stage ${s.index} holds layers [${s.from}, ${s.to}), outside the model's ${c.numLayers} layers`);
}

/** The slices of this rank's parameters under tensor and expert parallelism (none: the whole model). */
export function parallelPlan(c: ModelConfig, tp?: TensorParallelOps, ep?: ExpertParallelOps): Map<string, SliceSpec> {
  if (!tp && !ep) return new Map();
  return shardPlan(c, tp?.shard ?? { size: 1, index: 0, experts: 'ep' }, ep?.shard);
}
