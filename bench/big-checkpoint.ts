/**
 * A checkpoint larger than the 4 GiB heap, loaded and generating: the `bench` model grown to 24
 * layers of 16 experts (3.5B parameters, 6.9 GB of BF16 in two shards, written once to
 * SKYMOE_BENCH_DIR, default <tmpdir>/skymoe-bench-decode/big), then `skymoe generate` on the native
 * backend while /proc/<pid>/status is sampled: anonymous memory (heap, JS) against file-backed
 * memory (the mapped weights, shared page cache). One line:
 *   big_checkpoint file_gb=6.93 params_b=3.46 load_s=... tokens_per_s=... rss_anon_mb=... rss_file_mb=... anon_pct_of_file=...
 * Run: npm run bench:big [-- --layers 24 --experts 16 --tokens 32]
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeInfo } from '../src/backend/native/index.js';
import { readConfig } from '../src/io/hf.js';
import { countParams } from '../src/model/params.js';
import { makeCheckpoint } from './make-checkpoint.js';

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const LAYERS = arg('layers', 24), EXPERTS = arg('experts', 16), TOKENS = arg('tokens', 32);
const DIR = join(process.env.SKYMOE_BENCH_DIR ?? join(tmpdir(), 'skymoe-bench-decode'), `big-${LAYERS}x${EXPERTS}`);
const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function status(pid: number): Record<string, number> {
  try {
    const out: Record<string, number> = {};
    for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const m = /^(RssAnon|RssFile|VmRSS):\s+(\d+) kB/.exec(line);
      if (m) out[m[1]!] = Number(m[2]) / 1024;
    }
    return out;
  } catch {
    return {};
  }
}

if (!nativeInfo().available) {
  console.log('big_checkpoint skipped: the native backend (which maps weights) is not built');
  process.exit(0);
}
if (!existsSync(join(DIR, 'config.json'))) {
  process.stderr.write(`bench:big: writing ${DIR} (once)\n`);
  await makeCheckpoint({ preset: 'bench', layout: 'mixtral', layers: LAYERS, experts: EXPERTS, dtype: 'bf16', out: DIR, seed: 11 }, (m) => process.stderr.write(`${m}\n`));
}
const fileBytes = readdirSync(DIR).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + statSync(join(DIR, f)).size, 0);
const params = countParams(readConfig(DIR)).total;

const child = spawn(process.execPath, [main, 'generate', '--model', DIR, '--prompt', 'Call me Ishmael.', '--max-tokens', String(TOKENS), '--temperature', '0', '--backend', 'native', '--threads', '2'], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let stderr = '';
child.stderr.on('data', (d) => (stderr += d));
child.stdout.resume();
const peak = { RssAnon: 0, RssFile: 0, VmRSS: 0 };
const timer = setInterval(() => {
  const s = status(child.pid!);
  for (const k of Object.keys(peak) as (keyof typeof peak)[]) peak[k] = Math.max(peak[k], s[k] ?? 0);
}, 20);
const code: number = await new Promise((res) => child.on('exit', (c) => res(c ?? 1)));
clearInterval(timer);
if (code !== 0) {
  console.error(stderr);
  process.exit(1);
}
const load = Number(/\[loaded .* in ([\d.]+) s/.exec(stderr)?.[1] ?? NaN);
const rate = Number(/([\d.]+) tokens\/s/.exec(stderr)?.[1] ?? NaN);
console.log(
  `big_checkpoint file_gb=${(fileBytes / 1e9).toFixed(2)} params_b=${(params / 1e9).toFixed(2)} load_s=${load.toFixed(2)} tokens_per_s=${rate.toFixed(1)} ` +
    `rss_anon_mb=${peak.RssAnon.toFixed(0)} rss_file_mb=${peak.RssFile.toFixed(0)} anon_pct_of_file=${((100 * peak.RssAnon * 2 ** 20) / fileBytes).toFixed(1)}`,
);
