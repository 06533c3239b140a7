/**
 * Each command as a user runs it: parsing, exit codes, what it prints, and the error for a bad flag
 * or path (named, exit code 1, nothing on stdout). Also: the README and `--help` promise only
 * commands that exist.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliHarness } from '../cli-harness.js';

const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
const { work, skymoe, fails } = cliHarness('skymoe-commands-');

const commands = [...skymoe('--help').out.split(/^Commands:$/m)[1]!.matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');

test('the README and --help list the same commands, and only commands that exist', () => {
  assert.ok(commands.length >= 12, commands.join(' '));
  const inReadme = new Set([...readme.matchAll(/`(?:npx )?skymoe ([a-z-]+)/g)].map((m) => m[1]!));
  for (const c of inReadme) assert.ok(commands.includes(c), `README mentions 'skymoe ${c}', which is not a command`);
  for (const c of commands) assert.ok(inReadme.has(c), `'skymoe ${c}' is not in the README`);
  // The program description lists what skymoe does: each verb is a command.
  const verbs = /Skywork-MoE in TypeScript: ([\s\S]*?)\n\n/.exec(skymoe('--help').out)![1]!.replace(/\s+/g, ' ').trim().split(/, /);
  for (const v of verbs) assert.ok(commands.includes(v), `--help promises '${v}'`);
  // What is not built is named only under "Not built yet", never as present.
  const notBuilt = /## Not built yet[\s\S]*?(?=\n## )/.exec(readme)![0];
  const present = readme.replace(notBuilt, '');
  // and what is built is not listed as coming: the layouts, tokenizers and the server, with their docs
  for (const built of [/Qwen3/, /OLMoE/, /SentencePiece/, /chat_template/, /OpenAI-compatible server/i]) {
    assert.match(present, built);
    assert.doesNotMatch(notBuilt, built);
  }
  assert.doesNotMatch(notBuilt, /\bserver\b/i);
  assert.match(present, /docs\/layouts\.md/);
  assert.match(present, /docs\/tokenizers\.md/);
  assert.match(present, /docs\/serving\.md/);
  for (const c of commands) assert.equal(skymoe(c, '--help').code, 0, `skymoe ${c} --help`);
  fails(['frobnicate'], /unknown command 'frobnicate'/);
});

test('inspect: an unknown preset exits non-zero naming it and the known ones', () => {
  fails(['inspect', '--preset', 'huge'], /unknown preset 'huge': expected one of skywork-moe-146b.*tiny/);
  fails(['inspect'], /a model directory or --preset NAME/);
  fails(['inspect', join(work, 'missing')], /missing\/config\.json: not found/);
});

test('upcycle: a dense checkpoint becomes an MoE with the dense logits; bad input is named', () => {
  const dense = join(work, 'dense');
  assert.equal(skymoe('init', '--preset', 'tiny-dense', '--out', dense, '--seed', '2').code, 0);
  const moe = join(work, 'moe');
  const r = skymoe('upcycle', '--from', dense, '--out', moe, '--experts', '4', '--top-k', '2');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /4 experts top-2/);
  const cfg = JSON.parse(readFileSync(join(moe, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.model_type, cfg.num_experts, cfg.num_experts_per_tok, cfg.moe_use_logits_norm], ['skywork', [4], 2, true]);
  assert.ok(existsSync(join(moe, 'tokenizer.json')));
  // Every expert is the dense FFN and the renormalized top-k weights sum to 1: the same perplexity.
  const ppl = (dir: string) => Number(/perplexity ([\d.]+)/.exec(skymoe('score', '--model', dir, '--text', 'Call me Ishmael.').out)![1]);
  assert.equal(ppl(moe), ppl(dense));
  fails(['upcycle', '--out', join(work, 'x')], /required option '--from <dir>' not specified/);
  fails(['upcycle', '--from', join(work, 'nope'), '--out', join(work, 'x')], /nope\/config\.json: not found/);
  fails(['upcycle', '--from', dense, '--out', join(work, 'x'), '--experts', '0'], /--experts.*expected a positive integer/);
  fails(['upcycle', '--from', dense, '--out', join(work, 'x'), '--experts', '4', '--top-k', '5'], /--top-k must be in \[1, 4\] \(got 5\)/);
  fails(['upcycle', '--from', moe, '--out', join(work, 'x')], /the source must be a dense model \(Llama, Mistral or Qwen3 layout\), got skywork with 4 experts/);
});

const fixtures = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

test('upcycle and inspect with the Qwen3 layouts: a Qwen3 model becomes Qwen3-MoE; inspect says q/k norm, which layers are MoE, the widths', () => {
  const out = join(work, 'qwen3-moe');
  const r = skymoe('upcycle', '--from', join(fixtures, 'golden/qwen3'), '--out', out, '--experts', '4', '--top-k', '2');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\(qwen3, .* dense\) -> .*qwen3-moe \(qwen3_moe\): 4 experts top-2, .*logit norm off, top-k weights renormalized/);
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.model_type, cfg.num_experts, cfg.norm_topk_prob, cfg.moe_intermediate_size, cfg.head_dim], ['qwen3_moe', 4, true, 48, 12]);
  let i = skymoe('inspect', out);
  assert.equal(i.code, 0, i.err);
  assert.match(i.out, /layout +qwen3_moe \(Qwen3MoeForCausalLM\)/);
  assert.match(i.out, /q\/k norm per head \(RMSNorm over head dim 12, before RoPE\)/);
  assert.match(i.out, /MoE layers +2 of 2: every layer/);
  assert.match(i.out, /expert sim\. +1\.0000 1\.0000/);
  i = skymoe('inspect', join(fixtures, 'golden/qwen3_moe'));
  assert.match(i.out, /MoE layers +2 of 3: layers 0, 2 \(dense MLP in 1\)/);
  assert.match(i.out, /FFN +expert width 24, dense MLP width 40/);
  i = skymoe('inspect', join(fixtures, 'golden/olmoe'));
  assert.match(i.out, /q\/k norm over the whole projection \(RMSNorm over q 32 and k 16, before RoPE\)/);
  assert.match(i.out, /top-k weights not renormalized/);
  const noNorm = skymoe('upcycle', '--from', join(fixtures, 'golden/qwen3'), '--out', join(work, 'qwen3-moe-nonorm'), '--experts', '4', '--top-k', '2', '--no-norm-topk');
  assert.equal(noNorm.code, 0, noNorm.err);
  assert.match(noNorm.err, /without top-k renormalization the upcycled model does not compute the dense model/);
  assert.equal(JSON.parse(readFileSync(join(work, 'qwen3-moe-nonorm', 'config.json'), 'utf8')).norm_topk_prob, false);
  fails(['upcycle', '--from', join(fixtures, 'golden/qwen3'), '--out', join(work, 'x'), '--layout', 'skywork', '--no-logits-norm'], /a qwen3 model cannot become a skywork one: the skywork layout has no q\/k norm, this model has a per-head one/);
  fails(['upcycle', '--from', join(fixtures, 'golden/llama'), '--out', join(work, 'x'), '--layout', 'qwen3_moe'], /a llama model cannot become a qwen3_moe one/);
});

test('plan --config with the published Qwen3-30B-A3B and OLMoE-1B-7B configs: 30.5B / 3.3B and 6.9B / 1.3B parameters, their Megatron-Core arguments', () => {
  const qwen = join(fixtures, 'configs/qwen3-30b-a3b.json'), olmoe = join(fixtures, 'configs/olmoe-1b-7b-0924.json');
  let r = skymoe('plan', '--config', qwen, '--gpus', '16', '--gpu', 'h100-sxm');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /qwen3-30b-a3b\.json: 30\.5B parameters, 3\.\dB active/);
  for (const flag of ['--ffn-hidden-size 6144', '--kv-channels 128', '--qk-layernorm', '--num-query-groups 4', '--num-experts 128', '--moe-ffn-hidden-size 768', '--moe-router-topk 8', '--rotary-base 1000000']) assert.ok(r.out.includes(`${flag} \\`), flag);
  assert.doesNotMatch(r.out, /--moe-router-pre-softmax|--moe-layer-freq/);
  const j = skymoe('plan', '--config', qwen, '--gpus', '16', '--gpu', 'h100-sxm', '--json');
  const model = JSON.parse(j.out).model as { totalParams: number; activeParams: number };
  assert.ok(Math.abs(model.totalParams / 30.5e9 - 1) < 0.01 && Math.abs(model.activeParams / 3.3e9 - 1) < 0.02, JSON.stringify(model));
  r = skymoe('plan', '--config', olmoe, '--gpus', '8', '--gpu', 'h100-sxm', '--json');
  assert.equal(r.code, 0, r.err);
  const o = JSON.parse(r.out) as { model: { totalParams: number; activeParams: number }; megatron: { args: [string, string][]; missing: { feature: string }[] } };
  assert.ok(Math.abs(o.model.totalParams / 6.9e9 - 1) < 0.01 && Math.abs(o.model.activeParams / 1.3e9 - 1) < 0.02, JSON.stringify(o.model));
  assert.ok(o.megatron.args.some(([f]) => f === '--moe-router-pre-softmax'), 'norm_topk_prob false: softmax before the top-k, no renormalization');
  assert.ok(!o.megatron.args.some(([f]) => f === '--qk-layernorm'), 'per-head qk-layernorm is not OLMoE\'s norm');
  assert.ok(o.megatron.missing.some((m) => /OLMoE's q\/k RMSNorm over the whole q and k projections/.test(m.feature)));
  // a dense layer among the MoE ones: Megatron's layer pattern as a list
  const mixed = join(work, 'qwen-mixed.json');
  writeFileSync(mixed, JSON.stringify({ ...JSON.parse(readFileSync(qwen, 'utf8')), num_hidden_layers: 4, mlp_only_layers: [0] }));
  r = skymoe('plan', '--config', mixed, '--gpus', '8', '--gpu', 'h100-sxm');
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.includes('--moe-layer-freq "[0,1,1,1]"'), r.out);
  writeFileSync(mixed, JSON.stringify({ ...JSON.parse(readFileSync(qwen, 'utf8')), use_sliding_window: true }));
  fails(['plan', '--config', mixed, '--gpus', '8', '--gpu', 'h100-sxm'], /qwen-mixed\.json: field 'use_sliding_window': true is not supported by skymoe/);
});

test('advise: the report rule at its boundaries, and named errors', () => {
  // C_moe / C_dense from the printed figures decides: >= 2 scratch, < 0.5 upcycle.
  const decide = (tokens: string) => {
    const r = skymoe('advise', '--dense-preset', 'small-dense', '--dense-tokens', '1e9', '--moe-preset', 'small', '--tokens', tokens);
    assert.equal(r.code, 0, r.err);
    return { ratio: Number(/C_moe \/ C_dense = ([\d.]+)/.exec(r.out)![1]), decision: /decision: (\w+)/.exec(r.out)![1] };
  };
  const low = decide('3e8'), high = decide('2e9');
  assert.ok(low.ratio < 0.5 && low.decision === 'UPCYCLE', JSON.stringify(low));
  assert.ok(high.ratio >= 2 && high.decision === 'SCRATCH', JSON.stringify(high));
  fails(['advise', '--dense-preset', 'small-dense', '--dense-tokens', '1e9', '--moe-preset', 'small', '--tokens', 'abc'], /--tokens.*expected a number, got 'abc'/);
  fails(['advise', '--dense-preset', 'nope', '--dense-tokens', '1e9', '--moe-preset', 'small', '--tokens', '1e9'], /unknown preset 'nope'/);
  fails(['advise', '--dense-preset', 'small-dense', '--moe-preset', 'small', '--tokens', '1e9'], /--dense-tokens \(tokens the dense model was trained on\) is needed/);
  fails(['advise', '--dense-preset', 'small-dense', '--dense-tokens', '1e9', '--moe-preset', 'small'], /exactly one MoE budget: --tokens, --flops or --gpu-hours \(got 0\)/);
  fails(['advise', '--dense-preset', 'small-dense', '--dense-tokens', '1e9', '--moe-preset', 'small', '--tokens', '1e9', '--flops', '1e20'], /\(got 2\)/);
});

test('report: a training run becomes an HTML page with charts; a missing run is named', () => {
  const run = join(work, 'run');
  const t = skymoe('train', '--preset', 'tiny', '--out', run, '--steps', '4', '--batch', '2', '--seq', '32', '--eval-every', '2', '--eval-batches', '1');
  assert.equal(t.code, 0, t.err);
  const r = skymoe('report', run);
  assert.equal(r.code, 0, r.err);
  const html = r.out.trim();
  assert.ok(html.endsWith('index.html') && existsSync(html), r.out);
  assert.match(readFileSync(html, 'utf8'), /<img|<svg/);
  fails(['report', join(work, 'no-run')], /no-run: not a run directory/);
  fails(['report'], /missing required argument 'runDirs'/);
});

test('selfcheck and doctor: exit 0 on working backends, with what they checked', () => {
  for (const b of ['js', 'wasm']) {
    const r = skymoe('selfcheck', '--backend', b);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /selfcheck passed/);
    assert.match(r.out, /ok +rmsnorm/);
  }
  fails(['selfcheck', '--backend', 'cuda'], /'cuda' is invalid\. Allowed choices are js, wasm, native/);
  const d = skymoe('doctor');
  assert.equal(d.code, 0, d.err);
  for (const l of [/js +available/, /wasm +available: wasm simd128/, /default backend: wasm/]) assert.match(d.out, l);
});

test('plan: a layout on the command line, --validate, and errors naming the flag', () => {
  const r = skymoe('plan', '--preset', 'skywork-moe-146b', '--gpus', '1536', '--gpu', 'a800-80g');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /chosen layout/);
  assert.match(r.out, /--expert-model-parallel-size/);
  const v = skymoe('plan', '--validate');
  assert.equal(v.code, 0, v.err);
  assert.match(v.out, /Skywork-MoE 146B.*690/);
  fails(['plan', '--preset', 'skywork-moe-146b', '--gpus', 'abc', '--gpu', 'a800-80g'], /--gpus.*expected a positive integer, got 'abc'/);
  fails(['plan', '--preset', 'skywork-moe-146b', '--gpus', '1536', '--gpu', 'v100'], /--gpu: unknown GPU 'v100'/);
  fails(['plan', '--preset', 'skywork-moe-146b', '--gpu', 'a800-80g'], /--gpus/);
  fails(['plan', '--config', join(work, 'nope.json'), '--gpus', '8', '--gpu', 'h100-sxm'], /nope\.json/);
});

test('tokenizer: convert a tokenizer.model, encode, render a chat template; bad input is named', () => {
  const spm = fileURLToPath(new URL('../../../test/fixtures/sentencepiece/bpe_fallback.model', import.meta.url));
  const out = join(work, 'tok');
  const r = skymoe('tokenizer', 'convert', spm, '--out', out);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /BPE with byte fallback, 700 tokens/);
  const json = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8'));
  assert.equal(json.model.byte_fallback, true);
  // The converted tokenizer.json and the .model encode alike.
  const a = JSON.parse(skymoe('tokenizer', 'encode', spm, '--text', 'Call me Ishmael. 東', '--json').out);
  const b = JSON.parse(skymoe('tokenizer', 'encode', out, '--text', 'Call me Ishmael. 東', '--json').out);
  assert.deepEqual(a, b);
  assert.equal(a.tokens[0], '<s>');
  assert.ok(a.tokens.includes('<0xE6>'), 'byte fallback for 東');
  assert.equal(JSON.parse(skymoe('tokenizer', 'encode', spm, '--text', 'hi', '--json', '--no-template').out).tokens[0], '▁hi');
  // chat: a template from tokenizer_config.json.
  const cfgPath = join(out, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, chat_template: '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}' }));
  const msgs = join(work, 'messages.json');
  writeFileSync(msgs, JSON.stringify([{ role: 'user', content: 'Who is Ahab?' }]));
  assert.equal(skymoe('tokenizer', 'chat', out, '--messages', msgs, '--generation-prompt').out, '<user>Who is Ahab?<assistant>');
  fails(['tokenizer', 'chat', spm, '--messages', msgs], /has no chat_template/);
  fails(['tokenizer', 'chat', out, '--messages', join(work, 'nope.json')], /--messages .*nope\.json: not found/);
  writeFileSync(join(work, 'bad.json'), '{"role": ');
  fails(['tokenizer', 'chat', out, '--messages', join(work, 'bad.json')], /--messages .*bad\.json: not valid JSON/);
  fails(['tokenizer', 'encode', join(work, 'missing-dir'), '--text', 'x'], /missing-dir: not found/);
  fails(['tokenizer', 'encode', work, '--text', 'x'], /no tokenizer\.json or tokenizer\.model in this directory/);
});

test('serve: a bad flag or a missing model directory exits non-zero, naming it, before listening', () => {
  fails(['serve'], /required option '--model <dir>'/);
  fails(['serve', '--model', join(work, 'nope')], /nope: not found/);
  fails(['serve', '--model', work, '--kv-cache-gb', '0'], /--kv-cache-gb: expected a positive number of GiB, got 0/);
  fails(['serve', '--model', work, '--port', 'x'], /--port <n>.*expected a non-negative integer, got 'x'/);
});
