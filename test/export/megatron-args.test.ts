/**
 * Every flag the Megatron kit's scripts pass is one Megatron-LM accepts: test/fixtures/megatron-lm-args.txt
 * lists the flags of Megatron-LM at MEGATRON_LM_COMMIT (extracted from its source by
 * scripts/megatron-arg-names.py): pretrain_gpt.py's (megatron/training/arguments.py), convert.py's
 * with the mixtral_hf loader and core saver, and tools/preprocess_data.py's. Kits of the 146b preset
 * on 1536 A800 (the planner's layout and Skywork's own PP12 x EDP4 x DP32 with recomputation) and of a
 * tiny model with weights (convert.sh) are checked; the 146b kit is complete, config-only, and fast.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KIT_FILE, MEGATRON_LM_COMMIT } from '../../src/export/megatron/kit-config.js';
import { TORCHRUN_FLAGS } from '../../src/export/megatron/scripts.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const fixture = fileURLToPath(new URL('../../../test/fixtures/megatron-lm-args.txt', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'skymoe-megatron-args-'));
after(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '2', SKYMOE_CACHE: join(work, 'cache') };

function skymoe(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env });
  assert.equal(r.status, 0, `skymoe ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The fixture's sections: [pretrain_gpt.py], [tools/checkpoint/convert.py ...], [tools/preprocess_data.py]. */
function megatronFlags(): { commit: string; pretrain: Set<string>; convert: Set<string>; preprocess: Set<string> } {
  const text = readFileSync(fixture, 'utf8');
  const commit = /^# Megatron-LM .* commit ([0-9a-f]{40})$/m.exec(text)![1]!;
  const sections = new Map<string, Set<string>>();
  let cur: Set<string> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const head = /^\[(.*)\]$/.exec(line);
    if (head) sections.set(head[1]!, (cur = new Set()));
    else cur!.add(line.trim());
  }
  const get = (prefix: string) => [...sections.entries()].find(([k]) => k.startsWith(prefix))![1];
  return { commit, pretrain: get('pretrain_gpt.py'), convert: get('tools/checkpoint/convert.py'), preprocess: get('tools/preprocess_data.py') };
}

const FLAG = /(?<![\w-])--[a-z][a-z0-9_-]*/g;
const flagsIn = (text: string) => [...new Set(text.match(FLAG) ?? [])];

/** The convert.py command of convert.sh (from its line to the first line not continued by a backslash). */
function convertPyCommand(sh: string): string {
  const lines = sh.split('\n');
  const start = lines.findIndex((l) => l.includes('python tools/checkpoint/convert.py'));
  assert.ok(start >= 0, 'convert.sh runs tools/checkpoint/convert.py');
  let end = start;
  while (lines[end]!.trimEnd().endsWith('\\')) end++;
  return lines.slice(start, end + 1).join('\n');
}

/** Every flag of a kit's scripts and README commands, checked against the section it belongs to. */
function checkKit(kit: string, f: ReturnType<typeof megatronFlags>): number {
  let n = 0;
  const pretrain = readFileSync(join(kit, 'pretrain.sh'), 'utf8');
  for (const flag of flagsIn(pretrain)) {
    assert.ok(f.pretrain.has(flag) || TORCHRUN_FLAGS.includes(flag), `${kit}/pretrain.sh: ${flag} is not a Megatron-LM flag at ${f.commit.slice(0, 12)}`);
    n++;
  }
  if (existsSync(join(kit, 'convert.sh'))) {
    const sh = readFileSync(join(kit, 'convert.sh'), 'utf8');
    const convertPy = convertPyCommand(sh);
    for (const flag of flagsIn(convertPy)) {
      assert.ok(f.convert.has(flag), `${kit}/convert.sh: ${flag} is not a flag of convert.py with the mixtral_hf loader and core saver`);
      n++;
    }
    for (const flag of flagsIn(sh.replace(convertPy, ''))) {
      assert.ok(f.pretrain.has(flag) || TORCHRUN_FLAGS.includes(flag), `${kit}/convert.sh: ${flag} is not a Megatron-LM flag`);
      n++;
    }
  }
  const readme = readFileSync(join(kit, 'README.md'), 'utf8');
  const preprocess = /python tools\/preprocess_data\.py[^\n]*\\\n[^\n]*/.exec(readme)![0];
  for (const flag of flagsIn(preprocess)) {
    assert.ok(f.preprocess.has(flag), `${kit}/README.md: ${flag} is not a flag of tools/preprocess_data.py`);
    n++;
  }
  for (const s of ['pretrain.sh', 'convert.sh'].filter((s) => existsSync(join(kit, s)))) {
    const r = spawnSync('bash', ['-n', join(kit, s)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `bash -n ${kit}/${s}: ${r.stderr}`);
  }
  return n;
}

test('the flag list is of the commit the kit names, and tells real flags from invented ones', () => {
  const f = megatronFlags();
  assert.equal(f.commit, MEGATRON_LM_COMMIT);
  assert.ok(f.pretrain.size > 500, `${f.pretrain.size} pretrain flags`);
  for (const real of ['--num-experts', '--moe-router-topk', '--expert-tensor-parallel-size', '--pipeline-model-parallel-layout', '--disable-bias-linear', '--no-persist-layer-norm']) assert.ok(f.pretrain.has(real), real);
  // what Megatron-Core has no flag for is not in the list: the check can fail
  for (const invented of ['--moe-router-logit-norm-lambda', '--moe-aux-loss-adaptive', '--add-bias-linear']) assert.ok(!f.pretrain.has(invented), invented);
  assert.deepEqual([...f.convert].filter((x) => x.startsWith('--target')).sort(), ['--target-expert-parallel-size', '--target-pipeline-parallel-size', '--target-tensor-parallel-size']);
});

test('the 146b preset for 1536 A800: a complete config-only kit, fast, every flag a Megatron-LM flag', () => {
  const f = megatronFlags();
  const kit = join(work, 'kit-146b');
  const t0 = performance.now();
  const out = skymoe('export', 'megatron', '--preset', 'skywork-moe-146b', '--gpus', '1536', '--gpu', 'a800-80g', '--out', kit);
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 30, `${seconds} s`);
  assert.match(out, /skywork-moe-146b preset \(from scratch\)/);
  assert.deepEqual(readdirSync(kit).sort(), ['README.md', KIT_FILE, 'pretrain.sh', 'pretrain_skymoe.py', 'skymoe_megatron', 'to_hf.py'].sort());
  const k = JSON.parse(readFileSync(join(kit, KIT_FILE), 'utf8'));
  assert.equal(k.hf, null);
  assert.equal(k.router.num_experts, 16);
  assert.equal(k.router.logits_norm, true);
  assert.equal(k.parallel.gpus, 1536);
  assert.equal(k.parallel.tp * k.parallel.pp * k.parallel.dp, 1536);
  assert.equal(k.parallel.stages.reduce((a: number, b: number) => a + b, 0), 52);
  const sh = readFileSync(join(kit, 'pretrain.sh'), 'utf8');
  assert.doesNotMatch(sh, /--pretrained-checkpoint/, 'from scratch: no starting weights');
  assert.match(sh, /TOKENIZER_MODEL:\?set TOKENIZER_MODEL/);
  assert.match(sh, /--num-experts 16\n/);
  assert.match(sh, /NNODES="\$\{NNODES:-192\}"/);
  assert.match(sh, /--padded-vocab-size 65536\n/);
  const n = checkKit(kit, f);
  assert.ok(n > 50, `${n} flags checked`);
});

test("Skywork's own layout (PP12 x EDP4 x DP32, uneven stages, full recomputation) and a tiny model with convert.sh: every flag a Megatron-LM flag", () => {
  const f = megatronFlags();
  const sky = join(work, 'kit-skywork-layout');
  skymoe('export', 'megatron', '--preset', 'skywork-moe-146b', '--gpus', '1536', '--gpu', 'a800-80g', '--layout', 'tp=4,pp=12,dp=32,expert=edp,recompute=full', '--out', sky);
  const sh = readFileSync(join(sky, 'pretrain.sh'), 'utf8');
  assert.match(sh, /--expert-model-parallel-size 4\n/);
  assert.match(sh, /--moe-token-dispatcher-type allgather\n/);
  assert.match(sh, /--recompute-granularity full\n/);
  assert.match(sh, /--decoder-first-pipeline-num-layers|--pipeline-model-parallel-layout/);
  checkKit(sky, f);

  const model = join(work, 'tiny-model');
  skymoe('init', '--preset', 'tiny', '--out', model);
  const tiny = join(work, 'kit-tiny');
  skymoe('export', 'megatron', '--model', model, '--gpus', '16', '--gpu', 'h100-sxm', '--layout', 'tp=2,pp=2,dp=4,expert=ep,ep=4', '--out', tiny);
  const convert = readFileSync(join(tiny, 'convert.sh'), 'utf8');
  assert.match(convert, /--target-tensor-parallel-size 2 --target-pipeline-parallel-size 2 --target-expert-parallel-size 4\b/);
  assert.match(convert, /--ckpt-convert-format torch_dist/);
  assert.doesNotMatch(convert, /--moe-grouped-gemm/, "convert.py's checkpoint holds SequentialMLP experts");
  assert.match(readFileSync(join(tiny, 'pretrain.sh'), 'utf8'), /--pretrained-checkpoint "\$PRETRAINED"/);
  checkKit(tiny, f);
});
