/**
 * The disk-full part of the reliability campaign (issue 12): `skymoe train` and `skymoe quantize`
 * writing into a tmpfs too small for what they write.
 *
 * Every case runs in its own private mount namespace (`unshare --mount --propagation private`, or
 * `unshare --user --map-root-user --mount` where that is what works), so the tmpfs is seen by
 * nothing else and vanishes with the namespace's last process, whatever happens; and in its own
 * PID namespace, so that no process of a case outlives it. Inside, this file
 * runs as a driver (`node disk-full.js --disk-full-driver CASE`): it mounts the tmpfs, runs the CLI,
 * inspects the directory, and prints what it saw as one JSON line; the checks are made outside.
 *
 * - train: the tmpfs is sized in pages around the first checkpoint (measured on an uninterrupted
 *   reference run): some cases fail in the first save, most in a later one, some in metrics.jsonl
 *   or latest.json. Each must exit non-zero with one error line naming a path under the tmpfs and
 *   saying "no space left on device" (no stack trace), leave no temp file or directory and no lock,
 *   and keep latest.json on the last checkpoint the run announced. Then, still on the full disk
 *   (a filler file takes the rest, or all but one page: then the lock fits and the rewrite of
 *   metrics.jsonl does not), `--resume` must fail as clearly and change nothing; then, with
 *   the tmpfs remounted larger, `--resume` (or, when no checkpoint was complete, a new run) must
 *   finish, with losses equal to the reference's at every step.
 * - quantize (fp8, bf16): into a fresh directory on a tmpfs too small for the output (clear error,
 *   nothing of the output and no temp file left), and over a previous output of the other dtype
 *   with too little space left (clear error, the previous output byte for byte as it was).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../src/tensor/random.js';
import { checkpointHash, childEnv, CLI, freshArgs, lossesEqual, readMetrics, resumeArgs, tempsUnder, type TrainShape, type WrittenMetrics } from './kill.js';
import type { CampaignLine, CampaignOptions, CampaignPart } from './lines.js';

const PAGE = 4096;
const pages = (bytes: number) => Math.ceil(bytes / PAGE);

interface TrainCase {
  kind: 'train';
  mount: string;
  sizeKiB: number;
  shape: TrainShape;
  /** The work directory whose cache/ holds the tokenized corpus (SKYMOE_CACHE). */
  work: string;
  /** Pages left free for the resume on the full disk (1: its lock fits, its metrics rewrite does not). */
  fullResumeFreePages: number;
}

interface QuantizeCase {
  kind: 'quantize';
  mount: string;
  sizeKiB: number;
  to: 'fp8' | 'bf16';
  src: string;
  /** Write this target's output first, then leave only `freeKiB` free. */
  previous?: 'fp8' | 'bf16';
  freeKiB?: number;
}

type Case = TrainCase | QuantizeCase;

interface Ran {
  status: number | null;
  stderr: string;
}

interface TrainSeen {
  fail: Ran;
  temps: string[];
  lock: boolean;
  latest: number | null;
  /** The resume on the still-full disk, and whether it left metrics, latest.json and the checkpoints as they were. */
  fullResume: Ran | null;
  fullResumeUnchanged: boolean;
  fullResumeTemps: string[];
  fullResumeLock: boolean;
  recover: Ran;
  recoverArgs: 'resume' | 'fresh';
  metrics: WrittenMetrics;
  tempsAfter: string[];
  hash: string | null;
}

interface QuantizeSeen {
  previous: Ran | null;
  before: Record<string, string>;
  run: Ran;
  after: Record<string, string>;
  outExists: boolean;
  temps: string[];
}

function run(args: string[], env?: NodeJS.ProcessEnv): Ran {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: env ?? process.env, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stderr: r.stderr.slice(-4000) };
}

/** name -> sha256 of the files directly in dir. */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isFile()) out[f] = createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return out;
}

/** Every relative path under dir with its size and bytes' hash (to see that nothing changed). */
function snapshot(dir: string): string {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p, `${rel}${e}/`);
      else if (e !== '.lock') out.push(`${rel}${e} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out.join('\n');
}

/** Take every free byte of the filesystem at `dir` with one file. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 16, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
  // The last pages: byte by byte would be slow; tmpfs accounts in pages, so one page at a time.
  const fd2 = openSync(path, 'a');
  try {
    for (;;) writeSync(fd2, Buffer.alloc(PAGE, 1));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd2);
  }
}

/** Fill the filesystem at `dir` so that about `freeKiB` stay free. */
function leaveFree(path: string, freeKiB: number): void {
  const s = statfsSync(join(path, '..'));
  const free = s.bavail * s.bsize;
  const n = Math.max(0, free - freeKiB * 1024);
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.alloc(1 << 16, 1);
    for (let done = 0; done < n; ) done += writeSync(fd, chunk, 0, Math.min(chunk.length, n - done));
  } finally {
    closeSync(fd);
  }
}

function latestStep(runDir: string): number | null {
  try {
    return (JSON.parse(readFileSync(join(runDir, 'checkpoints', 'latest.json'), 'utf8')) as { step: number }).step;
  } catch {
    return null;
  }
}

/** The driver, inside the mount namespace: mount, run, look, print one JSON line. */
function driver(c: Case): TrainSeen | QuantizeSeen {
  mkdirSync(c.mount, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${c.sizeKiB}k`, 'tmpfs', c.mount]);
  if (c.kind === 'train') {
    const env = childEnv(c.work);
    const dir = join(c.mount, 'run');
    const fail = run(freshArgs(dir, c.shape), env);
    const temps = tempsUnder(c.mount);
    const lock = existsSync(join(dir, '.lock'));
    const latest = latestStep(dir);
    // A resume on the disk still full: it must fail as clearly, or succeed, and never damage the run.
    let fullResume: Ran | null = null;
    let fullResumeUnchanged = true;
    let fullResumeTemps: string[] = [];
    let fullResumeLock = false;
    const filler = join(c.mount, 'filler');
    if (latest !== null && fail.status !== 0) {
      fill(filler);
      if (c.fullResumeFreePages > 0) truncateSync(filler, statSync(filler).size - c.fullResumeFreePages * PAGE);
      const before = snapshot(dir);
      fullResume = run(resumeArgs(dir), env);
      if (fullResume.status !== 0) fullResumeUnchanged = snapshot(dir) === before;
      fullResumeTemps = tempsUnder(c.mount);
      fullResumeLock = existsSync(join(dir, '.lock'));
      unlinkSync(filler);
    }
    execFileSync('mount', ['-o', 'remount,size=256m', c.mount]);
    const recoverArgs = latestStep(dir) !== null ? 'resume' : 'fresh';
    const recover = fail.status === 0 && fullResume === null ? fail : run(recoverArgs === 'resume' ? resumeArgs(dir) : freshArgs(dir, c.shape), env);
    const metrics = readMetrics(join(dir, 'metrics.jsonl'));
    let hash: string | null = null;
    try {
      hash = checkpointHash(dir);
    } catch {
      // No checkpoint: reported as a mismatch.
    }
    return { fail, temps, lock, latest, fullResume, fullResumeUnchanged, fullResumeTemps, fullResumeLock, recover, recoverArgs, metrics, tempsAfter: tempsUnder(c.mount), hash };
  }
  const out = join(c.mount, 'q');
  let previous: Ran | null = null;
  let before: Record<string, string> = {};
  if (c.previous) {
    previous = run(['quantize', '--model', c.src, '--to', c.previous, '--out', out]);
    before = hashes(out);
    leaveFree(join(c.mount, 'filler'), c.freeKiB ?? 0);
  }
  const r = run(['quantize', '--model', c.src, '--to', c.to, '--out', out]);
  return { previous, before, run: r, after: hashes(out), outExists: existsSync(out), temps: tempsUnder(c.mount) };
}

// ---------------------------------------------------------------------------------------------
// Outside: run a case in its namespace

/**
 * The unshare prefix that can mount a tmpfs here, or null. A new PID namespace too: when unshare
 * dies (a timeout), its child, the driver, is killed, and with it every process it started.
 */
export function unsharePrefix(): string[] | null {
  for (const p of [
    ['unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child'],
    ['unshare', '--user', '--map-root-user', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child'],
  ]) {
    const r = spawnSync(p[0]!, [...p.slice(1), 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d" && rmdir "$d"'], { encoding: 'utf8' });
    if (r.status === 0) return p;
  }
  return null;
}

const THIS = fileURLToPath(import.meta.url);

function inNamespace<T>(prefix: string[], c: Case): T {
  const r = spawnSync(prefix[0]!, [...prefix.slice(1), process.execPath, THIS, '--disk-full-driver', JSON.stringify(c)], { encoding: 'utf8', timeout: 1_500_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`disk-full: the driver failed (exit ${r.status ?? r.signal}): ${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** The error line of a failed CLI run: `skymoe: ...`, the last one. */
function errorLine(r: Ran): string {
  return r.stderr.split('\n').filter((l) => l.startsWith('skymoe: ')).pop() ?? '';
}

/** Non-zero exit, one `skymoe:` line that says there is no space and names a path on the full filesystem, no stack trace. */
export function clearError(r: Ran, mount: string): boolean {
  const line = errorLine(r);
  return r.status !== 0 && r.status !== null && /no space left on device/i.test(line) && line.includes(`${mount}/`) && !/\n\s+at /.test(r.stderr);
}

/** Which file the error names (the last path under the mount). */
export function failedIn(r: Ran, mount: string): string {
  const paths = errorLine(r).match(new RegExp(`${mount.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^\\s:,'"]+`, 'g')) ?? [];
  const last = paths.pop() ?? '';
  const base = last.split('/').pop() ?? '';
  if (/^model.*\.safetensors|model\.safetensors\.index\.json/.test(base)) return 'model';
  if (base === 'optimizer.safetensors') return 'optimizer';
  if (/^tokenizer/.test(base)) return 'tokenizer';
  if (/config\.json$/.test(base)) return 'config';
  if (base === 'state.json') return 'state';
  if (base === 'latest.json') return 'latest';
  if (base === 'metrics.jsonl') return 'metrics';
  if (base === 'run.json') return 'run';
  if (base === '.lock') return 'lock';
  return last ? 'other' : 'unnamed';
}

function count(m: Record<string, number>, k: string) {
  m[k] = (m[k] ?? 0) + 1;
}

/** Cases per target at scale 1. */
const FULL_CASES = 24;

export const diskFull: CampaignPart = async (o: CampaignOptions): Promise<CampaignLine[]> => {
  const t0 = performance.now();
  const prefix = unsharePrefix();
  if (!prefix) throw new Error('disk-full: cannot mount a tmpfs in a private mount namespace here (unshare --mount, or --user --map-root-user --mount, as root)');
  const rng = new Rng(o.seed ^ 0x5eed);
  const cases = Math.max(1, Math.round(FULL_CASES * o.scale));
  const work = join(o.workDir, 'disk-full');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const mount = join(work, 'mnt');
  mkdirSync(mount);
  const env = childEnv(work);
  const lines: CampaignLine[] = [];
  let leaked = 0;
  const checkNothingLeaked = () => {
    if (readdirSync(mount).length > 0 || readFileSync('/proc/self/mounts', 'utf8').includes(mount)) leaked++;
  };
  try {
    // --- train -----------------------------------------------------------------------------------
    const shape: TrainShape = { steps: 12, saveEvery: 6, seed: o.seed % 1000 };
    const refDir = join(work, 'reference');
    const ref = run(freshArgs(refDir, shape), env);
    if (ref.status !== 0) throw new Error(`disk-full: the reference run failed: ${ref.stderr.slice(-2000)}`);
    const refMetrics = readMetrics(join(refDir, 'metrics.jsonl'));
    const refHash = checkpointHash(refDir);
    const ckDir = join(refDir, 'checkpoints', 'step-000006');
    const ckPages = readdirSync(ckDir).reduce((s, f) => s + pages(statSync(join(ckDir, f)).size), 0);
    const metricsBytes = readFileSync(join(refDir, 'metrics.jsonl'), 'utf8').split('\n').slice(0, shape.saveEvery).reduce((s, l) => s + l.length + 1, 0);
    const runJsonPages = pages(statSync(join(refDir, 'run.json')).size);
    // Used once the first checkpoint is complete: run.json, .lock, metrics, the checkpoint, latest.json.
    const afterFirst = runJsonPages + 1 + pages(metricsBytes) + ckPages + 1;
    // Pages of the second checkpoint written before its tokenizer.json (model, config, generation config),
    // plus about one page of metrics lines meanwhile: offsets there fail in the tokenizer files.
    const ckPagesOf = (f: string) => pages(statSync(join(ckDir, f)).size);
    const beforeTokenizer = ckPagesOf('model.safetensors') + ckPagesOf('config.json') + ckPagesOf('generation_config.json') + 1;
    const offsets = [
      Math.floor(ckPages / 2), 0, -1, 1, -2, beforeTokenizer + 1, beforeTokenizer + ckPagesOf('tokenizer.json'), Math.floor(ckPages / 3), ckPages - 1, -Math.floor(ckPages / 2), 2, Math.floor(ckPages * 0.9),
    ];
    while (offsets.length < cases) offsets.push(Math.floor(-ckPages / 2 + rng.float() * 1.5 * ckPages));
    const t = { runs: 0, failed: 0, clear: 0, lastGood: 0, temps: 0, locks: 0, firstSaveFailed: 0, recovered: 0, equal: 0, weightsEqual: 0, fullResumes: 0, fullResumeOk: 0 };
    const where: Record<string, number> = {};
    const fullWhere: Record<string, number> = {};
    for (const [i, off] of offsets.slice(0, cases).entries()) {
      const sizeKiB = ((afterFirst + off) * PAGE) / 1024;
      const s = inNamespace<TrainSeen>(prefix, { kind: 'train', mount, sizeKiB, shape, work, fullResumeFreePages: i % 2 });
      checkNothingLeaked();
      t.runs++;
      const announced = [...s.fail.stderr.matchAll(/checkpoint \S+step-(\d+)\n/g)].map((m) => Number(m[1])).pop() ?? null;
      if (s.fail.status !== 0) t.failed++;
      const clear = clearError(s.fail, mount);
      if (clear) t.clear++;
      else o.log(`disk-full: train at ${sizeKiB} KiB: unclear error (exit ${s.fail.status}): ${s.fail.stderr.slice(-1500)}`);
      count(where, failedIn(s.fail, mount));
      if (s.latest === null) t.firstSaveFailed++;
      const lastGood = s.latest === announced;
      if (lastGood) t.lastGood++;
      else o.log(`disk-full: train at ${sizeKiB} KiB: latest.json says step ${s.latest}, the run announced ${announced}`);
      t.temps += s.temps.length + s.fullResumeTemps.length + s.tempsAfter.length;
      if (s.temps.length + s.fullResumeTemps.length + s.tempsAfter.length) o.log(`disk-full: train at ${sizeKiB} KiB: temps left: ${[...s.temps, ...s.fullResumeTemps, ...s.tempsAfter].join(', ')}`);
      if (s.lock || s.fullResumeLock) t.locks++;
      if (s.fullResume) {
        t.fullResumes++;
        const ok = s.fullResume.status === 0 || (clearError(s.fullResume, mount) && s.fullResumeUnchanged);
        if (ok) t.fullResumeOk++;
        else o.log(`disk-full: train at ${sizeKiB} KiB: --resume on the full disk: exit ${s.fullResume.status}, unchanged ${s.fullResumeUnchanged}: ${s.fullResume.stderr.slice(-1500)}`);
        count(fullWhere, s.fullResume.status === 0 ? 'ok' : failedIn(s.fullResume, mount));
      }
      if (s.recover.status === 0) t.recovered++;
      else o.log(`disk-full: train at ${sizeKiB} KiB: ${s.recoverArgs} after remount failed: ${s.recover.stderr.slice(-1500)}`);
      if (lossesEqual(s.metrics, refMetrics)) t.equal++;
      else o.log(`disk-full: train at ${sizeKiB} KiB: losses differ from the reference after recovery`);
      if (s.hash === refHash) t.weightsEqual++;
      o.log(`disk-full: train at ${sizeKiB} KiB (${off >= 0 ? '+' : ''}${off} pages): ${errorLine(s.fail) || `exit ${s.fail.status}`}`);
    }
    lines.push({
      part: 'disk-full',
      target: 'train',
      runs: t.runs,
      failed: t.failed,
      clear_error: t.clear === t.runs,
      last_good_intact: t.lastGood === t.runs,
      temp_left: t.temps,
      lock_left: t.locks,
      first_save_failed: t.firstSaveFailed,
      ...Object.fromEntries(Object.entries(where).sort().map(([k, v]) => [`in_${k}`, v])),
      full_disk_resumes: t.fullResumes,
      full_disk_resume_ok: t.fullResumeOk,
      ...Object.fromEntries(Object.entries(fullWhere).sort().map(([k, v]) => [`full_resume_${k}`, v])),
      recovered: t.recovered,
      losses_equal: t.equal === t.runs,
      weights_equal: t.weightsEqual === t.runs,
      checkpoint_kib: (ckPages * PAGE) / 1024,
      seconds: (performance.now() - t0) / 1000,
      seed: o.seed,
    });
    rmSync(refDir, { recursive: true, force: true });

    // --- quantize --------------------------------------------------------------------------------
    const src = join(work, 'src');
    const init = run(['init', '--preset', 'tiny', '--out', src, '--seed', String(o.seed % 1000), ...['--backend', 'js']], env);
    if (init.status !== 0) throw new Error(`disk-full: init failed: ${init.stderr.slice(-2000)}`);
    for (const to of ['fp8', 'bf16'] as const) {
      const tq = performance.now();
      const other = to === 'fp8' ? 'bf16' : 'fp8';
      const refOut = join(work, `q-${to}`);
      const r = run(['quantize', '--model', src, '--to', to, '--out', refOut]);
      if (r.status !== 0) throw new Error(`disk-full: quantize --to ${to} failed on a roomy disk: ${r.stderr.slice(-2000)}`);
      const refHashes = hashes(refOut);
      const outPages = readdirSync(refOut).reduce((s, f) => s + pages(statSync(join(refOut, f)).size), 0);
      const modelPages = pages(statSync(join(refOut, 'model.safetensors')).size);
      const prevOut = join(work, `q-${other}`);
      run(['quantize', '--model', src, '--to', other, '--out', prevOut]);
      const prevPages = readdirSync(prevOut).reduce((s, f) => s + pages(statSync(join(prevOut, f)).size), 0);
      rmSync(prevOut, { recursive: true, force: true });
      rmSync(refOut, { recursive: true, force: true });
      const q = { runs: 0, fresh: 0, overwrite: 0, failed: 0, overwriteFailed: 0, fitted: 0, fittedOk: 0, clear: 0, filesLeft: 0, temps: 0, intact: 0 };
      const qWhere: Record<string, number> = {};
      // Fresh directory: total sizes below the output's; over a previous output: free space below the output's.
      const plan: { fresh: boolean; p: number }[] = [
        { fresh: true, p: outPages - 1 },
        { fresh: false, p: Math.floor(outPages / 2) },
        { fresh: true, p: Math.floor(modelPages / 2) },
        { fresh: true, p: modelPages + 1 },
        { fresh: false, p: outPages - 1 },
        { fresh: true, p: 1 },
        { fresh: false, p: 0 },
        { fresh: true, p: modelPages },
      ];
      while (plan.length < cases) plan.push({ fresh: rng.float() < 2 / 3, p: rng.int(outPages) });
      for (const { fresh, p } of plan.slice(0, cases)) {
        const c: QuantizeCase = fresh
          ? { kind: 'quantize', mount, sizeKiB: (p * PAGE) / 1024, to, src }
          : { kind: 'quantize', mount, sizeKiB: ((prevPages + outPages + 64) * PAGE) / 1024, to, src, previous: other, freeKiB: (p * PAGE) / 1024 };
        const s = inNamespace<QuantizeSeen>(prefix, c);
        checkNothingLeaked();
        q.runs++;
        if (fresh) q.fresh++;
        else q.overwrite++;
        if (s.previous && s.previous.status !== 0) throw new Error(`disk-full: the previous quantize --to ${other} failed: ${s.previous.stderr.slice(-1500)}`);
        if (s.run.status === 0) {
          // It fitted after all: then the output must be the complete one.
          q.fitted++;
          if (JSON.stringify(s.after) === JSON.stringify(refHashes)) q.fittedOk++;
          else o.log(`disk-full: quantize --to ${to} fitted in ${p} pages but wrote ${JSON.stringify(Object.keys(s.after))}, not the complete output`);
        } else {
          q.failed++;
          if (clearError(s.run, mount)) q.clear++;
          else o.log(`disk-full: quantize --to ${to} (${fresh ? 'fresh' : 'over a previous output'}, ${p} pages): unclear error (exit ${s.run.status}): ${s.run.stderr.slice(-1500)}`);
          count(qWhere, failedIn(s.run, mount));
          if (fresh) {
            const left = Object.keys(s.after);
            q.filesLeft += left.length;
            if (left.length) o.log(`disk-full: quantize --to ${to} (fresh, ${p} pages): files left: ${left.join(', ')}`);
          } else {
            q.overwriteFailed++;
            if (JSON.stringify(s.after) === JSON.stringify(s.before)) q.intact++;
            else o.log(`disk-full: quantize --to ${to} (over ${other}, ${p} pages free): the previous output changed: ${JSON.stringify(s.before)} -> ${JSON.stringify(s.after)}`);
          }
        }
        q.temps += s.temps.length;
        if (s.temps.length) o.log(`disk-full: quantize --to ${to}: temps left: ${s.temps.join(', ')}`);
        o.log(`disk-full: quantize --to ${to} (${fresh ? 'fresh' : 'over a previous output'}, ${p} pages): ${errorLine(s.run) || `exit ${s.run.status}`}`);
      }
      lines.push({
        part: 'disk-full',
        target: `quantize-${to}`,
        runs: q.runs,
        fresh_runs: q.fresh,
        overwrite_runs: q.overwrite,
        failed: q.failed,
        fitted: q.fitted,
        fitted_complete: q.fittedOk === q.fitted,
        clear_error: q.clear === q.failed,
        files_left: q.filesLeft,
        temp_left: q.temps,
        last_good_intact: q.intact === q.overwriteFailed,
        ...Object.fromEntries(Object.entries(qWhere).sort().map(([k, v]) => [`in_${k}`, v])),
        output_kib: (outPages * PAGE) / 1024,
        seconds: (performance.now() - tq) / 1000,
        seed: o.seed,
      });
    }
    for (const l of lines) l.mounts_left = leaked;
    return lines;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
};

if (process.argv[1] === THIS && process.argv[2] === '--disk-full-driver') {
  process.stdout.write(`${JSON.stringify(driver(JSON.parse(process.argv[3]!) as Case))}\n`);
}
