/**
 * The Megatron-Core kit's Python (python/skymoe_megatron) under PyTorch against skymoe itself: on
 * router logits skymoe wrote (E 4 and 16, top-1 and top-2, logit normalization on with several
 * lambdas and off, renormalized or not, capacity with both drop policies and dropless, both aux
 * losses), the softmax input, the gate probabilities, the top-k experts and weights, the kept
 * assignments, the drop rate, the aux loss and its gradient with respect to the logits must equal
 * skymoe's route / planDispatch / moeForward to fp32 rounding; so must the probs, routing map and
 * aux-loss gradient of Megatron's TopKRouter.routing once install() has patched it (on a stand-in of
 * Megatron's router module, test/export/megatron_equivalence.py), also with the tokens split over
 * two gloo ranks as sequence parallelism splits them. The adaptive coefficient's trajectory over
 * scripted drop rates, all-reduced over two gloo ranks, must equal AuxController's with the drop
 * rate combined as skymoe's trainer does; the train_step wrapper moves it after a step. The
 * kit-config loader names the field at fault. Needs a Python with torch (Debian's python3-torch;
 * .ci/run installs it): fails otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsBackend } from '../../src/backend/js/index.js';
import * as T from '../../src/tensor/index.js';
import { preset } from '../../src/model/presets.js';
import { moeForward, planDispatch, route, type DropPolicy, type RouterStats } from '../../src/model/moe.js';
import { AuxController, type ControllerOptions } from '../../src/train/aux-controller.js';
import { assertClose, assertCloseToScale, randomArray } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PYTHON_DIR = join(ROOT, 'python');
const PACKAGE_DIR = join(PYTHON_DIR, 'skymoe_megatron');
const DRIVER = join(ROOT, 'test', 'export', 'megatron_equivalence.py');

T.setBackend(new JsBackend());

/** The first of $SKYMOE_PYTHON, Debian's /usr/bin/python3, python3 that imports torch. */
function pythonWithTorch(): { python: string; torch: string } {
  const tried: string[] = [];
  for (const python of [process.env.SKYMOE_PYTHON, '/usr/bin/python3', 'python3']) {
    if (!python) continue;
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python, torch: r.stdout.trim() };
    tried.push(`${python}: ${r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  assert.fail(`no Python with PyTorch to run the Megatron kit's tests (tried ${tried.join('; ')}). Install Debian's python3-torch (.ci/run does: apt-get install -y --no-install-recommends python3-torch) or point SKYMOE_PYTHON at a python3 that has torch.`);
}

interface RouterCase {
  name: string;
  num_experts: number;
  top_k: number;
  logits_norm: boolean;
  gate_norm_std: number;
  norm_topk_prob: boolean;
  tokens: number;
  logits: number[];
  capacity_factor: number | null;
  drop_policy: DropPolicy;
  aux: 'skywork' | 'switch';
}

type Shape = Omit<RouterCase, 'name' | 'logits' | 'tokens'>;
const SHAPES: Shape[] = [
  { num_experts: 16, top_k: 2, logits_norm: true, gate_norm_std: 1, norm_topk_prob: true, capacity_factor: 1.25, drop_policy: 'probability', aux: 'skywork' },
  { num_experts: 16, top_k: 2, logits_norm: true, gate_norm_std: 2.5, norm_topk_prob: true, capacity_factor: 1, drop_policy: 'position', aux: 'skywork' },
  { num_experts: 16, top_k: 1, logits_norm: true, gate_norm_std: 1, norm_topk_prob: true, capacity_factor: 1, drop_policy: 'probability', aux: 'switch' },
  { num_experts: 16, top_k: 2, logits_norm: false, gate_norm_std: 1, norm_topk_prob: true, capacity_factor: null, drop_policy: 'probability', aux: 'skywork' },
  { num_experts: 4, top_k: 2, logits_norm: true, gate_norm_std: 1, norm_topk_prob: false, capacity_factor: 1, drop_policy: 'probability', aux: 'skywork' },
  { num_experts: 4, top_k: 1, logits_norm: true, gate_norm_std: 2, norm_topk_prob: true, capacity_factor: 1.1, drop_policy: 'position', aux: 'switch' },
  { num_experts: 4, top_k: 2, logits_norm: false, gate_norm_std: 1, norm_topk_prob: true, capacity_factor: 1.5, drop_policy: 'probability', aux: 'switch' },
];

/** Gate probabilities in float64 (SPEC section 1), to keep the inputs away from ties. */
function probs64(z: ArrayLike<number>, s: Shape): number[] {
  let v = Array.from(z);
  if (s.logits_norm) {
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
    v = v.map((x) => x / (sd / s.gate_norm_std));
  }
  const mx = Math.max(...v);
  const ex = v.map((x) => Math.exp(x - mx));
  const sum = ex.reduce((a, b) => a + b, 0);
  return ex.map((x) => x / sum);
}

/**
 * Random logits, one token at a time, redrawn until the token's top k + 1 probabilities are
 * apart and its top-k probabilities differ from every earlier token's at the same expert: rounding
 * cannot then reorder the top-k or the 'probability' drop policy's ranking.
 */
function tieFreeLogits(s: Shape, N: number, seed: number): number[] {
  const E = s.num_experts, k = s.top_k, gap = 1e-5;
  const taken: number[][] = Array.from({ length: E }, () => []);
  const out: number[] = [];
  for (let t = 0, draw = 0; t < N; draw++) {
    const z = randomArray(E, seed * 100_003 + draw, 3);
    const p = probs64(z, s);
    const order = [...p.keys()].sort((a, b) => p[b]! - p[a]!);
    const apart = order.slice(0, k).every((e, i) => p[e]! - p[order[i + 1]!]! > gap);
    if (!apart || order.slice(0, k).some((e) => taken[e]!.some((q) => Math.abs(q - p[e]!) < gap))) continue;
    order.slice(0, k).forEach((e) => taken[e]!.push(p[e]!));
    out.push(...z);
    t++;
  }
  return out;
}

function routerCases(): RouterCase[] {
  return SHAPES.map((s, i) => {
    const tokens = s.num_experts === 16 ? 64 : 40;
    const name = `E${s.num_experts} k${s.top_k} ${s.logits_norm ? `lambda ${s.gate_norm_std}` : 'no norm'}${s.norm_topk_prob ? '' : ' unnormalized'} cf ${s.capacity_factor ?? 'none'} ${s.drop_policy} ${s.aux}`;
    return { ...s, name, tokens, logits: tieFreeLogits(s, tokens, i + 1) };
  });
}

/** skymoe on one case: route, planDispatch, and moeForward on the logits (gate = identity) for the aux loss, its gradient and the stats. */
function skymoe(c: RouterCase) {
  const N = c.tokens, E = c.num_experts, k = c.top_k;
  const cfg = { ...preset('tiny'), hiddenSize: E, intermediateSize: 1, numExperts: E, topK: k, logitsNorm: c.logits_norm, gateNormStd: c.gate_norm_std, normTopK: c.norm_topk_prob };
  const opts = { capacityFactor: c.capacity_factor, dropPolicy: c.drop_policy };
  const r = T.noGrad(() => route(T.tensor(c.logits, [N, E]), cfg));
  const p = r.p.toFloat32();
  const selProbs = Float32Array.from(r.experts, (e, a) => p[Math.floor(a / k) * E + e]!);
  const plan = planDispatch(r.experts, selProbs, N, k, E, opts);
  const kept = new Set(plan.order);
  const eye = new Float32Array(E * E).map((_, i) => (i % (E + 1) === 0 ? 1 : 0));
  const x = T.tensor(c.logits, [N, E]);
  x.requiresGrad = true;
  const w = { gate: T.tensor(eye, [E, E]), w1: T.tensor(randomArray(E * E, 11, 0.1), [E, 1, E]), w3: T.tensor(randomArray(E * E, 12, 0.1), [E, 1, E]), w2: T.tensor(randomArray(E * E, 13, 0.1), [E, E, 1]) };
  const out = moeForward(x, w, cfg, { ...opts, auxLoss: c.aux, zLoss: false });
  T.backward(out.aux!);
  return {
    softmaxInput: r.logits.toFloat32(),
    p,
    experts: Array.from(r.experts),
    weights: r.weights.toFloat32(),
    kept: Array.from({ length: N * k }, (_, a) => kept.has(a)),
    stats: out.stats,
    aux: out.aux!.item(),
    auxGrad: x.grad!.toFloat32(),
  };
}

interface ControllerCase {
  name: string;
  controller: { kind: 'skywork' | 'fixed'; alpha: number; xi: number; alpha_max: number; beta: number };
  ranks: number;
  /** [step][rank][micro-batch][layer] */
  drops: number[][][][];
}

/** Drop rates around the threshold alpha_max / xi = 0.05, with runs of exactly 0, exactly 0.05 and high. */
function dropScript(steps: number, ranks: number, micro: number, layers: number, seed: number): number[][][][] {
  const u = randomArray(steps * ranks * micro * layers, seed, 1);
  let i = 0;
  return Array.from({ length: steps }, (_, s) =>
    Array.from({ length: ranks }, () =>
      Array.from({ length: micro }, () =>
        Array.from({ length: layers }, (_, l) => {
          const r = (u[i++]! + 1) / 2;
          if (s < 5 && l === 0) return 0;
          if (s >= 5 && s < 10 && l === 1) return 0.05;
          return l === 2 ? 0.2 * r : 0.12 * r;
        }),
      ),
    ),
  );
}

const CONTROLLERS: ControllerCase[] = [
  { name: 'skywork, 2 ranks x 2 micro-batches, 3 layers', controller: { kind: 'skywork', alpha: 0.01, xi: 0.2, alpha_max: 0.01, beta: 0.99 }, ranks: 2, drops: dropScript(60, 2, 2, 3, 5) },
  { name: 'skywork from alpha 0, beta 0.9, 1 rank x 3 micro-batches', controller: { kind: 'skywork', alpha: 0, xi: 0.25, alpha_max: 0.02, beta: 0.9 }, ranks: 1, drops: dropScript(40, 1, 3, 2, 6) },
  { name: 'fixed, 2 ranks', controller: { kind: 'fixed', alpha: 0.003, xi: 0.2, alpha_max: 0.01, beta: 0.99 }, ranks: 2, drops: dropScript(10, 2, 1, 2, 7) },
];

/** AuxController over the script, the drop rate combined as the trainer does: sum of dropRate / accum over every rank's micro-batches. */
function skymoeAlphas(c: ControllerCase): number[][] {
  const o: ControllerOptions = { kind: c.controller.kind, alpha: c.controller.alpha, xi: c.controller.xi, alphaMax: c.controller.alpha_max, beta: c.controller.beta, biasRate: 0 };
  const layers = c.drops[0]![0]![0]!.length;
  const ctl = new AuxController(o, layers, 4);
  return c.drops.map((step) => {
    const accum = step.length * step[0]!.length;
    const stats: RouterStats[] = Array.from({ length: layers }, (_, l) => ({ routedPerExpert: [], tokensPerExpert: [], dropRate: step.reduce((s, rank) => s + rank.reduce((sr, micro) => sr + micro[l]! / accum, 0), 0), max1OverMax2: 0, max2OverMax3: 0, entropy: 0, capacity: null }));
    ctl.update(stats);
    return [...ctl.state.alpha];
  });
}

const VALID_KIT = {
  format: 'skymoe-megatron-kit',
  version: 1,
  router: { num_experts: 16, top_k: 2, logits_norm: true, gate_norm_std: 1, norm_topk_prob: true },
  aux_loss: { type: 'skywork', controller: { kind: 'skywork', alpha: 0.01, xi: 0.2, alpha_max: 0.01, beta: 0.99 }, capacity_factor: 1.25, drop_policy: 'probability', z_loss_coeff: 0 },
  model: { model_type: 'skywork', num_experts: [16] },
  hf: null,
  parallel: { tp: 4, pp: 12 },
  predictions: { tokensPerGpuPerS: 690 },
};

/** A copy of VALID_KIT with `path` set to `value` (undefined deletes it). */
function kitWith(path: string, value: unknown): object {
  const c = structuredClone(VALID_KIT) as Record<string, unknown>;
  const keys = path.split('.');
  let o = c;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  if (value === undefined) delete o[keys.at(-1)!];
  else o[keys.at(-1)!] = value;
  return c;
}

const BAD_KITS: { field: string; value: unknown }[] = [
  { field: 'format', value: 'skymoe-kit' },
  { field: 'version', value: 2 },
  { field: 'router', value: undefined },
  { field: 'router.top_k', value: undefined },
  { field: 'router.top_k', value: 0 },
  { field: 'router.top_k', value: 17 },
  { field: 'router.num_experts', value: 16.5 },
  { field: 'router.logits_norm', value: 1 },
  { field: 'router.gate_norm_std', value: '1' },
  { field: 'router.gate_norm_std', value: 0 },
  { field: 'aux_loss.type', value: 'seq_aux_loss' },
  { field: 'aux_loss.controller.kind', value: 'bias' },
  { field: 'aux_loss.controller.beta', value: 1.5 },
  { field: 'aux_loss.controller.xi', value: undefined },
  { field: 'aux_loss.capacity_factor', value: undefined },
  { field: 'aux_loss.drop_policy', value: 'probs' },
  { field: 'model', value: undefined },
];

/** What test/export/megatron_equivalence.py prints. */
interface DriverResult {
  torch: string;
  router: {
    softmax_input: number[];
    probs: number[];
    experts: number[];
    weights: number[];
    kept: boolean[];
    routed: number[];
    kept_per_expert: number[];
    capacity: number | null;
    drop_rate: number;
    aux: number;
    aux_grad: number[];
    patched: { probs: number[]; routing_map: number[]; grad: number[]; alpha: number; drop_rate: number; aux: number; next_alpha: number };
  }[];
  /** Per router case, its tokens split over two ranks: the gradient of both halves, each rank's aux loss and mean drop rate. */
  sharded: { grad: number[]; aux: number[]; drop_rate: number[] }[];
  config_errors: { override: string; error: string | null }[];
  train_step: { wrapped: boolean; returned: string[]; alpha0: number; alpha: number };
  launcher: { error?: string; name: string; argv: string[]; patched: boolean; train_step_wrapped: boolean; path0_is_script_dir: boolean };
  controller: { name: string; alpha: number[][]; ranks_agree: boolean }[];
  kits: { name: string; error: string | null; field?: string; router?: object; controller?: object }[];
}

/** The .py files under a directory, recursively. */
function pythonFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? (e.name === '__pycache__' ? [] : pythonFiles(join(dir, e.name))) : e.name.endsWith('.py') ? [join(dir, e.name)] : []));
}

test('every Python file compiles (the kit\'s python/ and the tests\' drivers)', () => {
  const { python } = pythonWithTorch();
  const files = [...pythonFiles(PYTHON_DIR), ...pythonFiles(join(ROOT, 'test', 'export'))];
  assert.ok(files.filter((f) => f.startsWith(PACKAGE_DIR)).length >= 5, `python files in ${PACKAGE_DIR}: ${files.join(', ')}`);
  const cache = mkdtempSync(join(tmpdir(), 'skymoe-pycache-'));
  try {
    // the byte code goes to a scratch prefix, not next to the sources the exporter copies
    const r = spawnSync(python, ['-m', 'py_compile', ...files], { encoding: 'utf8', env: { ...process.env, PYTHONPYCACHEPREFIX: cache } });
    assert.equal(r.status, 0, `py_compile: ${r.stderr}`);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test('the kit under PyTorch equals skymoe: router, capacity, aux loss and gradient, patched TopKRouter, adaptive coefficient, kit config', async (t) => {
  const { python, torch } = pythonWithTorch();
  t.diagnostic(`${python}, torch ${torch}`);
  const routers = routerCases();
  const work = mkdtempSync(join(tmpdir(), 'skymoe-megatron-'));
  let result: DriverResult;
  try {
    const input = join(work, 'input.json');
    const kits = [{ name: 'valid, with unknown keys', config: VALID_KIT }, ...BAD_KITS.map((b) => ({ name: `${b.field} = ${JSON.stringify(b.value) ?? '(missing)'}`, config: kitWith(b.field, b.value) }))];
    writeFileSync(input, JSON.stringify({ router: routers, controller: CONTROLLERS, kits }));
    const r = spawnSync(python, [DRIVER, PYTHON_DIR, input, join(work, 'scratch')], { encoding: 'utf8', env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, maxBuffer: 64 << 20, timeout: 120_000 });
    assert.equal(r.status, 0, `${DRIVER} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
    result = JSON.parse(r.stdout) as DriverResult;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const worst: Record<string, number> = {};
  const track = (what: string, a: ArrayLike<number>, b: ArrayLike<number>, scale = 1) => {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / scale);
    worst[what] = Math.max(worst[what] ?? 0, m);
  };

  await t.test('router, capacity, aux loss and its gradient', () => {
    assert.equal(result.router.length, routers.length);
    routers.forEach((c, i) => {
      const py = result.router[i]!;
      const sk = skymoe(c);
      const K = c.top_k;
      assertClose(py.softmax_input, sk.softmaxInput, `${c.name}: softmax input`, 2e-6, 1e-6);
      assertClose(py.probs, sk.p, `${c.name}: gate probabilities`, 1e-5, 1e-7);
      assert.deepEqual(py.experts, sk.experts, `${c.name}: top-k experts`);
      assertClose(py.weights, sk.weights, `${c.name}: top-k weights`, 1e-5, 1e-7);
      assert.deepEqual(py.kept, sk.kept, `${c.name}: kept assignments`);
      assert.deepEqual(py.routed, sk.stats.routedPerExpert, `${c.name}: routed per expert`);
      assert.deepEqual(py.kept_per_expert, sk.stats.tokensPerExpert, `${c.name}: kept per expert`);
      assert.equal(py.capacity, sk.stats.capacity, `${c.name}: capacity`);
      assert.equal(py.drop_rate, sk.stats.dropRate, `${c.name}: drop rate`);
      assertClose([py.aux], [sk.aux], `${c.name}: aux loss`, 1e-5, 1e-9);
      assertCloseToScale(py.aux_grad, sk.auxGrad, `${c.name}: aux loss gradient in the logits`, 1e-5);
      if (c.capacity_factor !== null) assert.ok(sk.stats.dropRate > 0 || c.capacity_factor > 1, `${c.name}: the case should drop`);
      track('softmax input (rel)', py.softmax_input, sk.softmaxInput, Math.max(...Array.from(sk.softmaxInput, Math.abs)));
      track('probabilities', py.probs, sk.p);
      track('weights', py.weights, sk.weights);
      track('aux (rel)', [py.aux], [sk.aux], Math.abs(sk.aux));
      track('aux gradient (rel to max)', py.aux_grad, sk.auxGrad, Math.max(...Array.from(sk.auxGrad, Math.abs)));

      // TopKRouter.routing after install(): dense probs and routing map, alpha times the aux gradient, the drop rate recorded
      const pt = py.patched;
      const E = c.num_experts;
      const dense = new Float64Array(c.tokens * E), map = new Array<number>(c.tokens * E).fill(0);
      sk.experts.forEach((e, a) => {
        const row = Math.floor(a / K) * E;
        if (sk.kept[a]) {
          dense[row + e] = sk.weights[a]!;
          map[row + e] = 1;
        }
      });
      assertClose(pt.probs, dense, `${c.name}: patched routing probs`, 1e-5, 1e-7);
      assert.deepEqual(pt.routing_map, map, `${c.name}: patched routing map`);
      assertCloseToScale(pt.grad, Array.from(sk.auxGrad, (g) => g * pt.alpha), `${c.name}: patched aux gradient (alpha x skymoe's)`, 1e-5);
      assert.equal(pt.drop_rate, sk.stats.dropRate, `${c.name}: drop rate recorded by the patched router`);
      assertClose([pt.aux], [sk.aux], `${c.name}: aux loss recorded by the patched router`, 1e-5, 1e-9);
      assert.equal(pt.next_alpha, pt.alpha, `${c.name}: a fixed controller keeps alpha`);
      track('patched probs', pt.probs, dense);
      track('patched aux gradient (rel to max)', pt.grad, Array.from(sk.auxGrad, (g) => g * pt.alpha), pt.alpha * Math.max(...Array.from(sk.auxGrad, Math.abs)));
    });
  });

  await t.test('tokens split over two ranks (sequence parallelism): the whole micro-batch\'s aux loss and gradient', () => {
    routers.forEach((c, i) => {
      const sh = result.sharded[i]!;
      const sk = skymoe(c);
      const alpha = result.router[i]!.patched.alpha;
      assertCloseToScale(sh.grad, Array.from(sk.auxGrad, (g) => g * alpha), `${c.name}: gradient of both halves`, 1e-5);
      for (const a of sh.aux) assertClose([a], [sk.aux], `${c.name}: aux loss on each rank`, 1e-5, 1e-9);
      // capacity applies to each rank's tokens (as Megatron's token dropping): the drop rate is the mean of the halves'
      const half = c.tokens / 2;
      const halves = [0, 1].map((h) => skymoe({ ...c, tokens: half, logits: c.logits.slice(h * half * c.num_experts, (h + 1) * half * c.num_experts) }).stats.dropRate);
      for (const d of sh.drop_rate) assertClose([d], [(halves[0]! + halves[1]!) / 2], `${c.name}: drop rate averaged over the ranks`, 1e-12, 1e-15);
      track('sharded aux gradient (rel to max)', sh.grad, Array.from(sk.auxGrad, (g) => g * alpha), alpha * Math.max(...Array.from(sk.auxGrad, Math.abs)));
    });
  });

  await t.test('install() refuses a Megatron config that disagrees with the kit, naming the field', () => {
    const fields = result.config_errors.map((e) => {
      assert.ok(e.error?.includes(e.override), `${e.override}: ${e.error}`);
      return e.override;
    });
    assert.deepEqual(fields, ['moe_router_topk', 'moe_expert_capacity_factor', 'moe_router_load_balancing_type', 'moe_pad_expert_input_to_capacity']);
  });

  await t.test('install() wraps train_step (the coefficient moves after each step); python -m skymoe_megatron runs a training script', () => {
    const ts = result.train_step;
    assert.ok(ts.wrapped, 'train_step wrapped');
    assert.deepEqual(ts.returned, ['stepped'], 'the wrapped train_step returns what it returned');
    const c = routers[0]!;
    const d = skymoe(c).stats.dropRate;
    const want = AuxController.adaptiveStep(ts.alpha0, d, { xi: 0.2, alphaMax: 0.01, beta: 0.99 });
    assert.ok(want !== ts.alpha0, 'the step should move alpha');
    assertClose([ts.alpha], [want], `alpha after one train_step (drop rate ${d})`, 1e-12, 1e-15);
    const l = result.launcher;
    assert.equal(l.error, undefined, l.error);
    assert.deepEqual(l, { name: '__main__', argv: ['pretrain_gpt.py', '--num-layers', '2'], patched: true, train_step_wrapped: true, path0_is_script_dir: true });
  });

  await t.test('adaptive coefficient: trajectory over scripted drop rates, all-reduced over ranks', () => {
    CONTROLLERS.forEach((c, i) => {
      const py = result.controller[i]!;
      assert.ok(py.ranks_agree, `${c.name}: every rank holds the same coefficients`);
      const sk = skymoeAlphas(c);
      assert.equal(py.alpha.length, sk.length);
      py.alpha.forEach((row, s) => assertClose(row, sk[s]!, `${c.name}: alpha after step ${s + 1}`, 1e-12, 1e-15));
      track('alpha', py.alpha.flat(), sk.flat());
      if (c.controller.kind === 'skywork') assert.ok(sk.at(-1)!.some((a, l) => a !== sk[0]![l]), `${c.name}: the script should move alpha`);
    });
  });

  await t.test('kit config: unknown keys ignored, a bad field named', () => {
    const [ok, ...bad] = result.kits;
    assert.equal(ok!.error, null, ok!.error ?? '');
    assert.deepEqual(ok!.router, VALID_KIT.router);
    assert.deepEqual(ok!.controller, VALID_KIT.aux_loss.controller);
    BAD_KITS.forEach((b, i) => {
      const got = bad[i]!;
      assert.equal(got.field, b.field, `${got.name}: ${got.error}`);
      assert.ok(got.error?.includes(`field '${b.field}'`), got.error ?? `${got.name}: no error`);
    });
  });
  t.diagnostic(`max differences: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
});
