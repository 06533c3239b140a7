/**
 * A float64 reference forward of a Hugging Face checkpoint directory (Skywork-MoE, Mixtral, Llama,
 * Mistral, Qwen3, Qwen3-MoE or OLMoE layout), written for the tests from the HF modeling
 * conventions (modeling_llama, _mixtral, _qwen3, _qwen3_moe, _olmoe) and SPEC section 1, not
 * from src/model: it reads config.json's raw fields itself and the tensors by their file names
 * (per-expert names, no stacking), and computes token by token with plain loops. Slow; meant for
 * tiny models only.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/io/sharded.js';

interface RawConfig {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  rope_theta?: number;
  rms_norm_eps?: number;
  tie_word_embeddings?: boolean;
  num_experts?: number[] | number;
  num_local_experts?: number;
  num_experts_per_tok?: number;
  moe_use_logits_norm?: boolean;
  moe_gate_norm_std?: number;
  moe_expert_interval?: number;
  decoder_sparse_step?: number;
  mlp_only_layers?: number[];
  norm_topk_prob?: boolean;
}

type Mat = { rows: number; cols: number; data: Float32Array };

export class ReferenceModel {
  readonly cfg: RawConfig;
  readonly vocab: number;
  private readonly w = new Map<string, Mat>();

  constructor(dir: string) {
    this.cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as RawConfig;
    this.vocab = this.cfg.vocab_size;
    const r = openCheckpoint(dir);
    try {
      for (const name of r.names()) {
        const shape = r.info(name).shape;
        this.w.set(name, { rows: shape[0]!, cols: shape.length > 1 ? shape[1]! : 1, data: r.readF32(name) });
      }
    } finally {
      r.close();
    }
  }

  private get(name: string): Mat {
    const m = this.w.get(name);
    if (!m) throw new Error(`reference model: no tensor '${name}'`);
    return m;
  }

  /** y = W x for W [out, in]. */
  private mv(name: string, x: Float64Array): Float64Array {
    const m = this.get(name);
    if (m.cols !== x.length) throw new Error(`reference model: ${name} is [${m.rows}, ${m.cols}], input has ${x.length}`);
    const y = new Float64Array(m.rows);
    for (let i = 0; i < m.rows; i++) {
      let s = 0;
      for (let j = 0; j < m.cols; j++) s += m.data[i * m.cols + j]! * x[j]!;
      y[i] = s;
    }
    return y;
  }

  private rmsnorm(name: string, x: Float64Array): Float64Array {
    const w = this.get(name).data;
    const eps = this.cfg.rms_norm_eps ?? 1e-6;
    const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + eps)) * w[i]!);
  }

  /** Rotate-half RoPE on one head vector at a position. */
  private rope(v: Float64Array, pos: number): Float64Array {
    const D = v.length, half = D / 2, theta = this.cfg.rope_theta ?? 10000;
    const out = new Float64Array(D);
    for (let i = 0; i < half; i++) {
      const a = pos / theta ** ((2 * i) / D);
      out[i] = v[i]! * Math.cos(a) - v[i + half]! * Math.sin(a);
      out[i + half] = v[i + half]! * Math.cos(a) + v[i]! * Math.sin(a);
    }
    return out;
  }

  private swiglu(prefix: string, names: [string, string, string], x: Float64Array): Float64Array {
    const g = this.mv(`${prefix}.${names[0]}.weight`, x), u = this.mv(`${prefix}.${names[1]}.weight`, x);
    return this.mv(`${prefix}.${names[2]}.weight`, g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!));
  }

  /** Qwen3-MoE's rule (layer not in mlp_only_layers, (layer + 1) % step == 0); Skywork's interval is the same test. */
  private isMoe(layer: number): boolean {
    const c = this.cfg;
    if (!['skywork', 'skywork_moe', 'mixtral', 'qwen3_moe', 'olmoe'].includes(c.model_type)) return false;
    if ((c.mlp_only_layers ?? []).includes(layer)) return false;
    const n = c.decoder_sparse_step ?? c.moe_expert_interval ?? 1;
    return (layer + 1) % n === 0;
  }

  /** Qwen3 defaults head_dim to 128; OLMoE always computes with hidden / heads. */
  private headDim(): number {
    const c = this.cfg;
    if (c.model_type === 'olmoe') return c.hidden_size / c.num_attention_heads;
    return c.head_dim ?? (c.model_type === 'qwen3' ? 128 : c.hidden_size / c.num_attention_heads);
  }

  /** RMSNorm of a slice with a weight of its length. */
  private normWith(name: string, x: Float64Array): Float64Array {
    const w = this.get(name).data;
    if (w.length !== x.length) throw new Error(`reference model: ${name} has ${w.length} weights for a vector of ${x.length}`);
    const eps = this.cfg.rms_norm_eps ?? 1e-6;
    const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + eps)) * w[i]!);
  }

  private moe(layer: number, x: Float64Array): Float64Array {
    const c = this.cfg;
    const qwen = c.model_type === 'qwen3_moe' || c.model_type === 'olmoe';
    const p = `model.layers.${layer}.${qwen ? 'mlp' : 'block_sparse_moe'}`;
    const names: [string, string, string] = qwen ? ['gate_proj', 'up_proj', 'down_proj'] : ['w1', 'w3', 'w2'];
    const E = c.num_local_experts ?? (Array.isArray(c.num_experts) ? c.num_experts[0]! : c.num_experts!);
    const k = c.num_experts_per_tok ?? 2;
    // Skywork and Mixtral always renormalize the top-k; Qwen3-MoE and OLMoE as norm_topk_prob says (HF default false)
    const renormalize = qwen ? (c.norm_topk_prob ?? false) : true;
    let z = this.mv(`${p}.gate.weight`, x);
    if (c.moe_use_logits_norm) {
      const m = z.reduce((a, b) => a + b, 0) / E;
      const sd = Math.sqrt(z.reduce((s, v) => s + (v - m) ** 2, 0) / (E - 1));
      const lambda = c.moe_gate_norm_std ?? 1;
      z = z.map((v) => v / (sd / lambda));
    }
    const mx = Math.max(...z);
    const ex = z.map((v) => Math.exp(v - mx));
    const sum = ex.reduce((a, b) => a + b, 0);
    const prob = Array.from(ex, (v) => v / sum);
    const top = [...prob.keys()].sort((a, b) => prob[b]! - prob[a]! || a - b).slice(0, k);
    const wsum = renormalize ? top.reduce((s, e) => s + prob[e]!, 0) : 1;
    const y = new Float64Array(x.length);
    for (const e of top) {
      const o = this.swiglu(`${p}.experts.${e}`, names, x);
      for (let i = 0; i < y.length; i++) y[i]! += (prob[e]! / wsum) * o[i]!;
    }
    return y;
  }

  /** Logits [T, V] for one sequence of ids (positions 0..T-1), causal. */
  forward(ids: readonly number[]): Float64Array[] {
    const c = this.cfg;
    const H = c.num_attention_heads, Hkv = c.num_key_value_heads ?? H, C = c.hidden_size, D = this.headDim();
    const qkNorm = { qwen3: 'head', qwen3_moe: 'head', olmoe: 'full' }[c.model_type];
    const emb = this.get('model.embed_tokens.weight');
    let xs = ids.map((id) => Float64Array.from(emb.data.subarray(id * C, (id + 1) * C)));
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const a = `model.layers.${l}.self_attn`;
      const qs: Float64Array[][] = [], ks: Float64Array[][] = [], vs: Float64Array[][] = [];
      xs.forEach((x, t) => {
        const n = this.rmsnorm(`model.layers.${l}.input_layernorm.weight`, x);
        let q = this.mv(`${a}.q_proj.weight`, n), k = this.mv(`${a}.k_proj.weight`, n);
        const v = this.mv(`${a}.v_proj.weight`, n);
        // OLMoE: RMSNorm over the whole q and k projections; Qwen3: over each head's D
        if (qkNorm === 'full') [q, k] = [this.normWith(`${a}.q_norm.weight`, q), this.normWith(`${a}.k_norm.weight`, k)];
        const head = (vec: Float64Array, h: number, norm: string) => {
          const s = vec.slice(h * D, (h + 1) * D);
          return this.rope(qkNorm === 'head' ? this.normWith(norm, s) : s, t);
        };
        qs.push(Array.from({ length: H }, (_, h) => head(q, h, `${a}.q_norm.weight`)));
        ks.push(Array.from({ length: Hkv }, (_, h) => head(k, h, `${a}.k_norm.weight`)));
        vs.push(Array.from({ length: Hkv }, (_, h) => v.slice(h * D, (h + 1) * D)));
      });
      xs = xs.map((x, t) => {
        const heads = new Float64Array(H * D);
        for (let h = 0; h < H; h++) {
          const kvh = Math.floor(h / (H / Hkv));
          const s = Array.from({ length: t + 1 }, (_, j) => qs[t]![h]!.reduce((acc, qv, d) => acc + qv * ks[j]![kvh]![d]!, 0) / Math.sqrt(D));
          const mx = Math.max(...s);
          const e = s.map((v) => Math.exp(v - mx));
          const z = e.reduce((p, q) => p + q, 0);
          for (let d = 0; d < D; d++) heads[h * D + d] = e.reduce((acc, p, j) => acc + (p / z) * vs[j]![kvh]![d]!, 0);
        }
        const o = this.mv(`${a}.o_proj.weight`, heads);
        const h1 = x.map((v, i) => v + o[i]!);
        const n2 = this.rmsnorm(`model.layers.${l}.post_attention_layernorm.weight`, h1);
        const f = this.isMoe(l) ? this.moe(l, n2) : this.swiglu(`model.layers.${l}.mlp`, ['gate_proj', 'up_proj', 'down_proj'], n2);
        return h1.map((v, i) => v + f[i]!);
      });
    }
    const head = c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    return xs.map((x) => this.mv(head, this.rmsnorm('model.norm.weight', x)));
  }
}

/** log-softmax of one row in float64. */
export function logSoftmax64(row: ArrayLike<number>): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) mx = Math.max(mx, row[i]!);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i]! - mx);
  const lse = mx + Math.log(s);
  return Float64Array.from(row, (v) => v - lse);
}
