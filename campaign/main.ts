/**
 * The reliability campaign (issue 12): `npm run campaign [-- --only fuzz-files,kill] [--scale 1] [--seed N]`.
 * Runs each part, prints its figures as `campaign part=... target=... key=value ...` lines on stdout
 * (progress and failing cases go to stderr), and exits 1 when any figure says something failed.
 * Not part of `npm test`: the fast slice of every part runs there (test/reliability/), this is the
 * full run whose figures go in docs/reliability.md.
 *
 * Parts: fuzz-files (safetensors single and sharded, tokenizer.json, config.json, GGUF),
 * kill (kill -9 during training, then --resume), disk-full (train and quantize into a small tmpfs),
 * fuzz-http (requests to a real server), abuse (64 streams with aborts, slow readers, malformed
 * requests and path traversal attempts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diskFull } from './disk-full.js';
import { fuzzFiles } from './fuzz-files.js';
import { killResume } from './kill.js';
import { type CampaignLine, type CampaignPart, formatLine } from './lines.js';
import { fuzzHttp, serverAbuse } from './server.js';

const PARTS: Record<string, CampaignPart> = {
  'fuzz-files': fuzzFiles,
  'fuzz-http': fuzzHttp,
  kill: killResume,
  'disk-full': diskFull,
  abuse: serverAbuse,
};

/** Figures whose non-zero value means a failure, boolean figures that must hold, and pairs that must be equal. */
const MUST_BE_ZERO = [
  'untyped', 'unusable', 'hangs', 'crashes', 'server_5xx', 'bad_error_body', 'bad_2xx', 'other_status', 'resets', 'health_failures',
  'internal_errors', 'server_warnings', 'requests_failed', 'traversal_leaks', 'temp_left', 'lock_left', 'files_left', 'mounts_left',
  'failed_resumes', 'failures', 'kv_after', 'running_after', 'waiting_after',
];
const MUST_HOLD = ['losses_equal', 'metrics_equal', 'weights_equal', 'clear_error', 'last_good_intact', 'fitted_complete'];
const MUST_EQUAL: [string, string][] = [['malformed_4xx', 'malformed'], ['traversal_refused', 'traversal_attempts'], ['resumes_ok', 'resumes'], ['slow_readers_ok', 'slow_readers'], ['runs_equal', 'runs']];

export function failuresOf(l: CampaignLine): string[] {
  const bad: string[] = [];
  for (const k of MUST_BE_ZERO) if (typeof l[k] === 'number' && l[k] !== 0) bad.push(`${k}=${l[k]}`);
  for (const k of MUST_HOLD) if (l[k] === false) bad.push(`${k}=false`);
  for (const [a, b] of MUST_EQUAL) if (typeof l[a] === 'number' && l[a] !== l[b]) bad.push(`${a}=${l[a]} but ${b}=${l[b]}`);
  return bad;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
  const only = arg('only')?.split(',') ?? Object.keys(PARTS);
  for (const p of only) if (!PARTS[p]) throw new Error(`--only: unknown part "${p}" (parts: ${Object.keys(PARTS).join(', ')})`);
  const scale = Number(arg('scale') ?? 1);
  if (!(scale > 0 && scale <= 10)) throw new Error(`--scale must be a number in (0, 10], got ${arg('scale')}`);
  const seed = Number(arg('seed') ?? 20261129);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${arg('seed')}`);
  const log = (m: string) => process.stderr.write(`${m}\n`);
  let failed = 0;
  for (const name of only) {
    const workDir = mkdtempSync(join(tmpdir(), `skymoe-campaign-${name}-`));
    const t0 = performance.now();
    log(`campaign: ${name} (scale ${scale}, seed ${seed}) in ${workDir}`);
    const before = failed;
    try {
      const lines = await PARTS[name]!({ seed, scale, log, workDir });
      for (const l of lines) {
        process.stdout.write(`${formatLine(l)}\n`);
        const bad = failuresOf(l);
        if (bad.length) {
          failed++;
          log(`campaign: ${name}/${l.target} FAILED: ${bad.join(' ')}`);
        }
      }
    } catch (e) {
      failed++;
      log(`campaign: ${name} could not run: ${(e as Error).stack ?? e}`);
      process.stdout.write(`${formatLine({ part: name, target: 'all', failures: 1, error: JSON.stringify(String((e as Error).message ?? e)) })}\n`);
    } finally {
      // a failed part keeps its work directory (failing cases are written under failures/)
      if (failed === before) rmSync(workDir, { recursive: true, force: true });
      else log(`campaign: ${name}: kept ${workDir} for the failing cases`);
      log(`campaign: ${name} took ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`campaign: ${(e as Error).message}\n`);
    process.exit(2);
  },
);
