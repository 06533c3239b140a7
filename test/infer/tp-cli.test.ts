/**
 * `--tp N` as a user runs it: `skymoe generate --tp 2|3` prints the one-rank greedy text,
 * `skymoe serve --tp 2` answers a chat completion through the official openai client with the
 * one-rank server's reply, and every --tp the model cannot be split over is refused by name
 * (exit 1, nothing on stdout) by generate, serve and chat.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { JsBackend } from '../../src/backend/js/index.js';
import { saveModel } from '../../src/io/hf.js';
import { saveTokenizer, trainBpe } from '../../src/io/tokenizer/index.js';
import { configToHF, type ModelConfig } from '../../src/model/config.js';
import { preset } from '../../src/model/presets.js';
import { SkyworkMoE } from '../../src/model/skywork-moe.js';

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const env = { ...process.env, SKYMOE_BACKEND: 'wasm', SKYMOE_THREADS: '2' };
const work = mkdtempSync(join(tmpdir(), 'skymoe-tp-cli-'));
const dir = join(work, 'model');
after(() => rmSync(work, { recursive: true, force: true }));

/** 6 heads in 3 key/value groups, 4 experts: over 2 ranks heads 4+2 and experts 2+2. */
const gqa: ModelConfig = { ...preset('tiny'), hiddenSize: 48, numHeads: 6, numKvHeads: 3, headDim: 8, intermediateSize: 96, moeIntermediateSize: 96 };

before(async () => {
  const tok = trainBpe(['Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.'], { vocabSize: 300 });
  const model = SkyworkMoE.create({ ...gqa, vocabSize: tok.vocabSize }, { seed: 6, backend: new JsBackend() });
  saveModel(model, dir, { dtype: 'F32' });
  model.dispose();
  await saveTokenizer(dir, tok, { modelMaxLength: gqa.maxPositions });
});

function skymoe(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The same, without blocking: failing runs are started together. */
function skymoeAsync(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('close', (code) => resolve({ code, out, err }));
  });
}

describe('skymoe generate --tp', () => {
  it('--tp 2 and --tp 3 print the one-rank greedy text', { timeout: 60_000 }, () => {
    const args = ['generate', '--model', dir, '--prompt', 'Call me Ishmael.', '--temperature', '0', '--max-tokens', '20'];
    const one = skymoe(...args);
    assert.equal(one.code, 0, one.err);
    assert.match(one.err, /\[20 tokens in/);
    for (const tp of ['2', '3']) {
      const r = skymoe(...args, '--tp', tp);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, one.out, `--tp ${tp}`);
      assert.match(r.err, new RegExp(`tensor parallel over ${tp} ranks`));
      assert.match(r.err, /\[20 tokens in .* stopped by length\]/);
    }
  });

  it('refuses a --tp the model cannot be split over, naming --tp and why (generate, serve, chat)', { timeout: 60_000 }, async () => {
    const config = (name: string, c: ModelConfig) => {
      const d = join(work, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'config.json'), JSON.stringify(configToHF(c)));
      return d;
    };
    const olmoe = config('olmoe', { ...gqa, layout: 'olmoe', qkNorm: 'full', normTopK: false, logitsNorm: false });
    const twoExperts = config('two-experts', { ...gqa, numExperts: 2 });
    const cases: [string[], RegExp][] = [
      [['--model', dir, '--tp', '0'], /option '--tp <n>' argument '0' is invalid.*positive integer/],
      [['--model', dir, '--tp', '1.5'], /option '--tp <n>' argument '1.5' is invalid/],
      [['--model', dir, '--tp', '4'], /--tp 4: 3 key\/value heads cannot be split over 4 ranks/],
      [['--model', dir, '--tp', '2', '--tp-experts', 'ep'], /option '--tp-experts <placement>' argument 'ep' is invalid/],
      [['--model', olmoe, '--tp', '2'], /--tp 2: the olmoe layout's q\/k norm spans all heads/],
      [['--model', twoExperts, '--tp', '3'], /--tp 3: 2 experts cannot be placed over 3 ranks with edp .*use etp/],
    ];
    // every case on generate; serve and chat share its check (cli/common.ts): two cases each
    const runs = [
      ...cases.map(([args, re]) => [['generate', '--prompt', 'x', ...args], re] as const),
      ...[cases[2]!, cases[4]!].flatMap(([args, re]) => [[['serve', '--port', '0', ...args], re] as const, [['chat', ...args], re] as const]),
    ];
    await Promise.all(
      runs.map(async ([args, re]) => {
        const r = await skymoeAsync(...args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
        assert.match(r.err, re, args.join(' '));
        assert.equal(r.out, '', `${args.join(' ')} printed to stdout`);
      }),
    );
  });
});

describe('skymoe serve --tp 2', () => {
  async function serve(...extra: string[]): Promise<{ client: OpenAI; stop: () => Promise<number | null> }> {
    const child = spawn(process.execPath, [main, 'serve', '--model', dir, '--port', '0', '--served-model-name', 'whale', ...extra], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    const t0 = Date.now();
    while (!out.includes('\n')) {
      if (Date.now() - t0 > 60_000 || child.exitCode !== null) {
        child.kill('SIGKILL');
        assert.fail(`serve ${extra.join(' ')} did not get ready: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const m = /^serving 'whale' at (http:\/\/127\.0\.0\.1:\d+)\/v1 /.exec(out);
    assert.ok(m, out);
    return {
      client: new OpenAI({ baseURL: `${m[1]}/v1`, apiKey: 'none', maxRetries: 0 }),
      stop: async () => {
        child.kill('SIGTERM');
        const code = await exited;
        child.kill('SIGKILL');
        return code;
      },
    };
  }

  it("answers a chat completion (openai client) with the one-rank server's reply, and exits 0 on SIGTERM", { timeout: 60_000 }, async () => {
    const [one, two] = await Promise.all([serve(), serve('--tp', '2')]);
    try {
      const ask = (c: OpenAI) => c.chat.completions.create({ model: 'whale', messages: [{ role: 'user', content: 'Call me Ishmael.' }], temperature: 0, max_tokens: 10 });
      const [want, got] = await Promise.all([ask(one.client), ask(two.client)]);
      assert.equal(got.object, 'chat.completion');
      assert.equal(got.choices[0]!.message.role, 'assistant');
      assert.equal(got.choices[0]!.message.content, want.choices[0]!.message.content);
      assert.deepEqual(got.usage, want.usage);
      assert.ok(got.usage!.completion_tokens > 0);
    } finally {
      assert.deepEqual(await Promise.all([one.stop(), two.stop()]), [0, 0]);
    }
  });
});
