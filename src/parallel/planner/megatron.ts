/**
 * Export a plan as Megatron-Core command-line arguments (names as in megatron/training/arguments.py
 * of Megatron-LM core_r0.13+), and list what the Skywork-MoE recipe needs that Megatron-Core has
 * no flag for, with what the user must add.
 */
import { isMoeLayer, type ModelConfig } from '../../model/config.js';
import type { ModelShape } from './flops.js';
import type { Layout, TrainingSetup } from './setup.js';

export interface MegatronExport {
  /** [flag, value] pairs; value '' for switches. */
  args: [string, string][];
  /** Features of the plan or the model Megatron-Core cannot express, each with what to add. */
  missing: { feature: string; add: string }[];
  /** Plan details the flags only approximate. */
  notes: string[];
}

/** Megatron-Core's layout string: E embedding, t a transformer layer, L output layer and loss, '|' between stages. */
export function pipelineLayoutString(stages: number[]): string {
  return stages.map((n, i) => `${i === 0 ? 'E' : ''}${n > 0 ? (n === 1 ? 't' : `t*${n}`) : ''}${i === stages.length - 1 ? 'L' : ''}`).join('|');
}

export interface ExportOptions {
  /** Initial aux-loss coefficient (the adaptive controller starts here; SPEC section 3). */
  auxLossCoeff?: number;
  /** Capacity factor: the adaptive coefficient needs token drops to measure (null: dropless, no capacity flags). */
  capacityFactor?: number | null;
  /** Which assignments an over-full expert drops (Megatron's --moe-token-drop-policy; default probs). */
  dropPolicy?: 'probs' | 'position';
}

export function megatronArgs(m: ModelShape, s: TrainingSetup, l: Layout, cfg?: ModelConfig, o: ExportOptions = {}): MegatronExport {
  const args: [string, string][] = [];
  const a = (flag: string, value: string | number = '') => args.push([flag, String(value)]);
  const notes: string[] = [];
  const missing: { feature: string; add: string }[] = [];
  // model
  a('--num-layers', m.layers);
  a('--hidden-size', m.hidden);
  a('--ffn-hidden-size', m.ffn);
  a('--num-attention-heads', m.heads);
  if (m.kvHeads !== m.heads) {
    a('--group-query-attention');
    a('--num-query-groups', m.kvHeads);
  }
  if (m.heads * m.headDim !== m.hidden) a('--kv-channels', m.headDim);
  // Megatron-Core's qk_layernorm normalizes each head over kv_channels, as Qwen3 does.
  if (m.qkNorm === 'head') a('--qk-layernorm');
  a('--seq-length', s.seq);
  a('--max-position-embeddings', Math.max(s.seq, cfg?.maxPositions ?? s.seq));
  a('--position-embedding-type', 'rope');
  if (cfg) a('--rotary-base', cfg.ropeTheta);
  a('--normalization', 'RMSNorm');
  if (cfg) a('--norm-epsilon', cfg.rmsNormEps);
  if (m.gated) a('--swiglu');
  a('--disable-bias-linear');
  if (!m.tied) a('--untie-embeddings-and-output-weights');
  a('--attention-dropout', 0);
  a('--hidden-dropout', 0);
  if (cfg) a('--init-method-std', cfg.initializerRange);
  // parallelism
  a('--tensor-model-parallel-size', l.tp);
  if (l.tp > 1) a('--sequence-parallel');
  a('--pipeline-model-parallel-size', l.pp);
  if (l.vp > 1) a('--num-layers-per-virtual-pipeline-stage', m.layers / (l.pp * l.vp));
  if (l.pp > 1 && l.vp === 1 && l.stages.some((n) => n !== l.stages[0])) {
    const mid = l.stages.slice(1, -1);
    if (mid.every((n) => n === mid[0])) {
      if (l.stages[0] !== mid[0] || mid.length === 0) a('--decoder-first-pipeline-num-layers', l.stages[0]!);
      if (l.stages[l.pp - 1] !== mid[0] || mid.length === 0) a('--decoder-last-pipeline-num-layers', l.stages[l.pp - 1]!);
    } else a('--pipeline-model-parallel-layout', `"${pipelineLayoutString(l.stages)}"`);
  }
  a('--micro-batch-size', l.microBatch);
  a('--global-batch-size', s.globalBatch);
  if (s.zero === 1) a('--use-distributed-optimizer');
  if (s.zero >= 2) {
    a('--use-megatron-fsdp');
    a('--data-parallel-sharding-strategy', s.zero === 2 ? 'optim_grads' : 'optim_grads_params');
    notes.push(`ZeRO-${s.zero} maps to Megatron-FSDP (core_r0.14+); older releases only have --use-distributed-optimizer (ZeRO-1).`);
  }
  if (s.dpOverlap) {
    a('--overlap-grad-reduce');
    if (s.zero >= 1) a('--overlap-param-gather');
  }
  if (s.tpOverlap > 0 && l.tp > 1) a('--tp-comm-overlap');
  // recomputation
  const modes = new Set(l.recompute);
  const fullStages = l.recompute.map((r, i) => (r === 'full' ? i : -1)).filter((i) => i >= 0);
  if (fullStages.length) {
    const most = Math.max(...fullStages.map((i) => l.stages[i]!));
    a('--recompute-granularity', 'full');
    a('--recompute-method', 'block');
    a('--recompute-num-layers', l.vp > 1 ? most / l.vp : most);
    if (fullStages.length < l.pp) {
      notes.push(`full recomputation is planned only on stage${fullStages.length > 1 ? 's' : ''} ${fullStages.join(', ')}; --recompute-num-layers applies to every stage, which costs more than planned`);
      missing.push({ feature: 'recomputation chosen per pipeline stage', add: `in megatron/core/transformer/transformer_block.py, read recompute_num_layers from a per-stage list indexed by the pipeline rank (here: ${l.recompute.map((r, i) => (r === 'full' ? l.stages[i] : 0)).join(',')} layers)` });
    }
  } else if (modes.has('selective')) {
    a('--recompute-granularity', 'selective');
    a('--recompute-modules', m.experts ? 'core_attn layernorm moe_act' : 'core_attn layernorm');
    if (modes.has('none')) notes.push('selective recomputation is planned on some stages only; the flags apply it everywhere (its cost is small)');
  }
  // MoE
  if (m.experts) {
    a('--num-experts', m.experts);
    a('--moe-ffn-hidden-size', m.expertFfn);
    a('--moe-router-topk', m.topK);
    // A list, not an integer N: Megatron's N makes layers 0, N, 2N MoE, Skywork's and Qwen3's (i + 1) % N == 0.
    if (cfg && m.moeLayers !== m.layers) a('--moe-layer-freq', `"[${Array.from({ length: m.layers }, (_, i) => (isMoeLayer(cfg, i) ? 1 : 0)).join(',')}]"`);
    // softmax over all experts, then the top k without renormalizing: norm_topk_prob false. With
    // top-1 Megatron-Core requires it whatever the renormalization (a softmax over one logit is
    // constant 1: the router would get no gradient); one expert's renormalized weight is 1 anyway.
    if (cfg && (!cfg.normTopK || m.topK === 1)) a('--moe-router-pre-softmax');
    a('--moe-router-load-balancing-type', 'aux_loss');
    a('--moe-aux-loss-coeff', o.auxLossCoeff ?? 0.01);
    a('--moe-router-dtype', 'fp32');
    a('--moe-grouped-gemm');
    a('--moe-permute-fusion');
    a('--expert-model-parallel-size', l.ep);
    a('--expert-tensor-parallel-size', l.etp);
    a('--moe-token-dispatcher-type', l.expert === 'edp' ? 'allgather' : 'alltoall');
    const cf = o.capacityFactor === undefined ? 1.25 : o.capacityFactor;
    if (cf !== null) {
      a('--moe-expert-capacity-factor', cf);
      a('--moe-token-drop-policy', o.dropPolicy ?? 'probs');
    }
    if (l.expert === 'edp') notes.push('EDP: expert-parallel group = the TP group, so --moe-token-dispatcher-type allgather keeps dispatch inside the node (Skywork dispatches locally from the non-sequence-parallel attention output; the all-gather is the same traffic as a dense MLP\'s)');
    if (cfg?.logitsNorm ?? m.experts > 0) {
      missing.push({
        feature: `gating logit normalization (report section 4.1, lambda ${cfg?.gateNormStd ?? 1})`,
        add: 'in megatron/core/transformer/moe/router.py TopKRouter.forward, before the softmax: logits = lambda * (logits - logits.mean(-1, keepdim=True)) / logits.std(-1, keepdim=True); add a config field (e.g. moe_router_logit_norm_lambda) and its flag',
      });
    }
    missing.push({
      feature: 'adaptive auxiliary-loss coefficient per layer (report section 4.2: alpha_l <- beta alpha_l + (1-beta) min(xi d_l, alpha_max), xi 1/5, alpha_max 0.01, beta 0.99)',
      add: 'Megatron-Core applies one fixed --moe-aux-loss-coeff to every layer. Keep a per-layer coefficient tensor, have the capacity-limited dispatcher report each layer\'s dropped fraction d_l (all-reduced over the data-parallel group), and update the coefficients after each step in the training loop (megatron/training/training.py train_step) before the next forward reads them in MoEAuxLossAutoScaler',
    });
    missing.push({ feature: "Skywork's aux loss form sum_j (1/E - mean_i g_ij)^2", add: "Megatron's aux_loss is the Switch form E sum_j f_j P_j; add the squared-deviation form to megatron/core/transformer/moe/moe_utils.py and select it with a new --moe-router-load-balancing-type value" });
    if (cfg?.twoLayerGate) missing.push({ feature: 'the 2-layer gate Linear(H, 8E) -> tanh -> Linear(8E, E)', add: 'replace TopKRouter.weight by a small fp32 MLP' });
  }
  if (m.qkNorm === 'full') {
    missing.push({ feature: "OLMoE's q/k RMSNorm over the whole q and k projections (weights [heads x head dim] and [kv heads x head dim])", add: 'in megatron/core/transformer/attention.py, apply an RMSNorm to the query and key projections before they are split into heads (with tensor parallelism the norm needs the full projection: all-gather it, or an all-reduce of the sum of squares); --qk-layernorm normalizes per head and computes something else' });
  }
  a(s.precision === 'fp8' ? '--fp8-format' : '--bf16', s.precision === 'fp8' ? 'hybrid' : '');
  if (s.precision === 'fp8') a('--bf16');
  return { args, missing, notes };
}

/** The arguments as shell lines, `--flag value \` each. */
export function formatArgs(args: [string, string][]): string[] {
  return args.map(([f, v], i) => `  ${f}${v !== '' ? ` ${v}` : ''}${i < args.length - 1 ? ' \\' : ''}`);
}
