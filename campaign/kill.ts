/**
 * The kill -9 part of the reliability campaign (issue 12): `skymoe train` as a child process,
 * SIGKILLed at random moments and half of the time in the middle of a checkpoint write, then
 * continued with `--resume` until it finishes. Every resume must succeed and the finished run's
 * metrics.jsonl must equal an uninterrupted run's, number for number as written, at every step
 * (and its last checkpoint's weights, optimizer moments and state byte for byte).
 *
 * - Reference: one uninterrupted run with the same options (tiny preset, batch 2 x 32 tokens,
 *   a checkpoint every 2 steps, validation every 5, js backend on one thread: a run repeats
 *   exactly on the same backend and thread count). Its checkpoint writes are timed.
 * - A "mid-write" kill watches RUN/checkpoints (fs.watch) for the temp directory of the save
 *   (`step-NNNNNN.tmp-<pid>`, src/train/checkpoint.ts), waits for the 1st, 2nd or 3rd save of this
 *   process, and kills it at once or after a random fraction of a typical write. It counts as
 *   mid-write only if that temp directory is still there after the kill (the save had not been
 *   renamed into place). A kill that missed its save counts as an ordinary kill, and the next
 *   process tries again, until half of the kills are verified mid-write.
 * - A "random" kill lands uniformly in the first seconds of the process (startup, loading the
 *   checkpoint, rewriting metrics, training, saving).
 * - After a kill: if RUN/checkpoints/latest.json exists, `skymoe train --resume RUN`. If not (the
 *   process died before its first checkpoint was complete), the CLI has nothing to resume:
 *   `--resume` is run once to check that it is refused with a named error and changes nothing
 *   (src/train/checkpoint.ts: "latest.json: not found"), then the run starts afresh with `--out RUN`
 *   and the same options, as a user would (startRun moves the dead run's metrics aside).
 * - A run that finishes before the kill targets are met is compared, and another run starts.
 *   (Each run directory is made, empty, before its first process, so that it can be watched.)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, type FSWatcher, mkdirSync, readdirSync, readFileSync, rmSync, statSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../src/tensor/random.js';
import type { CampaignLine, CampaignOptions, CampaignPart } from './lines.js';

/** The compiled CLI (dist/src/cli/main.js), next to this file's dist/campaign/. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

/** Options of the campaign's training runs: seconds per run, a checkpoint every `saveEvery` steps. */
export interface TrainShape {
  steps: number;
  saveEvery: number;
  seed: number;
}

/** Backend and threads fixed: losses repeat bit for bit only on the same backend and thread count. */
export const BACKEND_ARGS = ['--backend', 'js', '--threads', '1'];

/** `skymoe train` arguments of a new run into `runDir`. */
export function freshArgs(runDir: string, s: TrainShape): string[] {
  return ['train', '--out', runDir, '--preset', 'tiny', '--steps', String(s.steps), '--batch', '2', '--seq', '32', '--save-every', String(s.saveEvery), '--keep', '2', '--eval-every', '5', '--eval-batches', '2', '--seed', String(s.seed), ...BACKEND_ARGS];
}

/** `skymoe train --resume` arguments: the run's own options, nothing overridden. */
export function resumeArgs(runDir: string): string[] {
  return ['train', '--resume', runDir, ...BACKEND_ARGS];
}

/** Environment of the children: the tokenized-corpus cache inside the work directory. */
export function childEnv(workDir: string): NodeJS.ProcessEnv {
  return { ...process.env, SKYMOE_CACHE: join(workDir, 'cache') };
}

/** The metrics of a run as written: per line, the step and the raw text of loss and ce; and the line without tokensPerSec (the one timing-dependent field). */
export interface WrittenMetrics {
  steps: number[];
  losses: string[];
  lines: string[];
}

export function readMetrics(path: string): WrittenMetrics {
  const out: WrittenMetrics = { steps: [], losses: [], lines: [] };
  if (!existsSync(path)) return out;
  for (const l of readFileSync(path, 'utf8').split('\n')) {
    if (!l) continue;
    const step = /^\{"step":(\d+),/.exec(l);
    const loss = /"loss":([^,}]+)/.exec(l);
    const ce = /"ce":([^,}]+)/.exec(l);
    out.steps.push(step ? Number(step[1]) : NaN);
    out.losses.push(`${loss?.[1]}/${ce?.[1]}`);
    out.lines.push(l.replace(/"tokensPerSec":[^,}]+/, ''));
  }
  return out;
}

/** Same steps 1..N in order with the same loss and ce text. */
export function lossesEqual(a: WrittenMetrics, ref: WrittenMetrics): boolean {
  return a.steps.length === ref.steps.length && a.steps.every((s, i) => s === i + 1 && s === ref.steps[i] && a.losses[i] === ref.losses[i]);
}

/** Files and directories under `dir` whose names are skymoe temp names (`*.tmp-<pid>...`). */
export function tempsUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      if (/\.tmp-\d+/.test(e)) out.push(p);
      try {
        if (statSync(p).isDirectory()) walk(p);
      } catch {
        // Gone meanwhile.
      }
    }
  };
  walk(dir);
  return out;
}

/** sha256 of the final checkpoint's weights, optimizer moments and state. */
export function checkpointHash(runDir: string): string {
  const root = join(runDir, 'checkpoints');
  const latest = JSON.parse(readFileSync(join(root, 'latest.json'), 'utf8')) as { dir: string };
  const h = createHash('sha256');
  for (const f of ['model.safetensors', 'optimizer.safetensors', 'state.json']) h.update(readFileSync(join(root, latest.dir, f)));
  return h.digest('hex');
}

type Plan = { kind: 'none' } | { kind: 'random'; delayMs: number } | { kind: 'mid-write'; nth: number; delayMs: number };

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** We sent the SIGKILL (and the process died of a SIGKILL). */
  killed: boolean;
  /** A temp directory of this process's save was still there after it died. */
  midWrite: boolean;
  /** Durations of the saves seen start to end (ms). */
  writesMs: number[];
  stderr: string;
  ms: number;
}

const TEMP_DIR = /^step-\d{6,}\.tmp-(\d+)$/;

/**
 * Run `node CLI args` until it exits or the plan kills it. The checkpoints directory is watched
 * for the process's save temp directories (to time the saves and to aim mid-write kills).
 */
function runOnce(args: string[], runDir: string, plan: Plan, env: NodeJS.ProcessEnv, live: Set<ChildProcess>, timeoutMs = 300_000): Promise<Outcome> {
  const t0 = performance.now();
  const ckDir = join(runDir, 'checkpoints');
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env });
  live.add(child);
  const pid = child.pid!;
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('close', (code, signal) => res({ code, signal }))); // exited, stderr read to the end
  let killSent = false;
  const kill = () => {
    if (killSent || child.exitCode !== null || child.signalCode !== null) return;
    killSent = true;
    child.kill('SIGKILL');
  };
  const timers: NodeJS.Timeout[] = [];
  const started = new Map<string, number>();
  const writesMs: number[] = [];
  let saves = 0;
  const onCk = (_ev: string, f: string | Buffer | null) => {
    const name = typeof f === 'string' ? f : f?.toString();
    if (!name) return;
    const m = TEMP_DIR.exec(name);
    if (!m || Number(m[1]) !== pid) return;
    const now = performance.now();
    const present = existsSync(join(ckDir, name));
    if (present && !started.has(name)) {
      started.set(name, now);
      saves++;
      if (plan.kind === 'mid-write' && saves === plan.nth) {
        if (plan.delayMs < 1) kill();
        else timers.push(setTimeout(kill, plan.delayMs));
      }
    } else if (!present && started.has(name) && started.get(name)! >= 0) {
      writesMs.push(now - started.get(name)!);
      started.set(name, -1);
    }
  };
  const watchers: FSWatcher[] = [];
  let ckWatcher: FSWatcher | undefined;
  const attach = () => {
    if (ckWatcher || !existsSync(ckDir)) return;
    try {
      ckWatcher = watch(ckDir, onCk);
      watchers.push(ckWatcher);
    } catch {
      // Created and not yet visible, or removed: the run-directory watcher calls again.
    }
  };
  mkdirSync(runDir, { recursive: true });
  watchers.push(watch(runDir, (_ev, f) => (String(f) === 'checkpoints' ? attach() : undefined)));
  attach();
  if (plan.kind === 'random') timers.push(setTimeout(kill, plan.delayMs));
  let hung = false;
  timers.push(
    setTimeout(() => {
      hung = true; // not a planned kill: reported as a failure
      kill();
    }, timeoutMs),
  );
  return exited.then(({ code, signal }) => {
    live.delete(child);
    for (const t of timers) clearTimeout(t);
    for (const w of watchers) w.close();
    let midWrite = false;
    if (killSent && !hung && signal === 'SIGKILL') {
      try {
        midWrite = readdirSync(ckDir).some((d) => TEMP_DIR.exec(d)?.[1] === String(pid));
      } catch {
        // No checkpoints directory yet: not mid-write.
      }
    }
    return { code, signal, killed: killSent && !hung && signal === 'SIGKILL', midWrite, writesMs, stderr: hung ? `${stderr}\n(no exit within ${timeoutMs / 1000} s: killed)` : stderr, ms: performance.now() - t0 };
  });
}

function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, `${rel}${e}/`);
      else if (e !== '.lock') out.push(`${rel}${e} ${st.size} ${st.mtimeMs}`);
    }
  };
  walk(dir, '');
  return out;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
}

/** Kill target at this scale: 50 kills at scale 1, at least 2. */
export function killTarget(scale: number): number {
  return Math.max(2, Math.round(50 * scale));
}

export const killResume: CampaignPart = async (o: CampaignOptions): Promise<CampaignLine[]> => {
  const t0 = performance.now();
  const rng = new Rng(o.seed);
  const target = killTarget(o.scale);
  const midTarget = Math.ceil(target / 2);
  const shape: TrainShape = { steps: 30, saveEvery: 2, seed: o.seed % 1000 };
  const work = join(o.workDir, 'kill');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const env = childEnv(work);
  const live = new Set<ChildProcess>();
  const fig = { kills: 0, mid: 0, resumes: 0, resumesOk: 0, fresh: 0, refused: 0, refusedOk: 0, runs: 0, runsEqual: 0, metricsEqual: 0, weightsEqual: 0, tempLeft: 0, lockLeft: 0, failures: 0, processes: 0 };
  try {
    // The uninterrupted reference.
    const refDir = join(work, 'reference');
    const ref = await runOnce(freshArgs(refDir, shape), refDir, { kind: 'none' }, env, live);
    if (ref.code !== 0) throw new Error(`kill: the reference run failed (exit ${ref.code ?? ref.signal}): ${ref.stderr.slice(-2000)}`);
    const refMetrics = readMetrics(join(refDir, 'metrics.jsonl'));
    if (refMetrics.steps.length !== shape.steps) throw new Error(`kill: the reference run wrote ${refMetrics.steps.length} metrics lines, expected ${shape.steps}`);
    const refHash = checkpointHash(refDir);
    const writeMs = median(ref.writesMs);
    // The second run starts with a warm corpus cache, as every resume does: its length bounds random kills.
    const lifeMs = Math.min(2500, ref.ms);
    o.log(`kill: reference run ${(ref.ms / 1000).toFixed(1)} s, ${ref.writesMs.length} checkpoint writes of ~${writeMs.toFixed(1)} ms; target ${target} kills, ${midTarget} mid-write`);

    const maxProcesses = 8 * target + 40;
    while ((fig.kills < target || fig.mid < midTarget) && fig.processes < maxProcesses) {
      const runDir = join(work, `run-${fig.runs}`);
      fig.runs++;
      let done = false;
      let started = false;
      while (!done) {
        if (fig.processes >= maxProcesses) throw new Error(`kill: ${fig.processes} processes without reaching ${target} kills (${midTarget} mid-write): got ${fig.kills} (${fig.mid})`);
        const hasCheckpoint = existsSync(join(runDir, 'checkpoints', 'latest.json'));
        if (started && !hasCheckpoint) {
          // Killed before its first checkpoint: --resume must refuse, naming what is missing, and change nothing.
          fig.refused++;
          const before = listing(runDir);
          const r = spawnSync(process.execPath, [CLI, ...resumeArgs(runDir)], { env, encoding: 'utf8', timeout: 120_000 });
          const after = listing(runDir);
          if (r.status === 1 && /(latest|run)\.json: not found/.test(r.stderr) && JSON.stringify(before) === JSON.stringify(after)) fig.refusedOk++;
          else o.log(`kill: --resume without a checkpoint was not refused cleanly (exit ${r.status}): ${r.stderr.slice(-1000)}`);
          fig.fresh++;
        }
        const resuming = started && hasCheckpoint;
        const wantKill = fig.kills < target || fig.mid < midTarget;
        const aimMid = wantKill && fig.mid < midTarget && (fig.mid * 2 <= fig.kills || fig.kills >= target);
        const plan: Plan = !wantKill
          ? { kind: 'none' }
          : aimMid
            ? { kind: 'mid-write', nth: 1 + rng.int(3), delayMs: rng.float() < 0.25 ? 0 : rng.float() * 0.8 * writeMs }
            : { kind: 'random', delayMs: 20 + rng.float() * lifeMs };
        const r = await runOnce(resuming ? resumeArgs(runDir) : freshArgs(runDir, shape), runDir, plan, env, live);
        fig.processes++;
        started = true;
        if (resuming) fig.resumes++;
        if (r.code === 0) {
          if (resuming) fig.resumesOk++;
          done = true;
        } else if (r.killed) {
          if (resuming) fig.resumesOk++; // alive until the kill
          fig.kills++;
          if (r.midWrite) fig.mid++;
          o.log(`kill: run ${fig.runs} ${plan.kind}${plan.kind === 'mid-write' ? ` (save ${plan.nth}, +${plan.delayMs.toFixed(1)} ms)` : plan.kind === 'random' ? ` (+${plan.delayMs.toFixed(0)} ms)` : ''} killed after ${r.ms.toFixed(0)} ms${r.midWrite ? ', mid-write' : ''}; ${fig.kills} kills, ${fig.mid} mid-write`);
        } else {
          fig.failures++;
          o.log(`kill: run ${fig.runs}: ${resuming ? '--resume' : 'a new run'} failed by itself (exit ${r.code ?? r.signal}): ${r.stderr.slice(-2000)}`);
          break;
        }
      }
      if (!done) continue;
      const m = readMetrics(join(runDir, 'metrics.jsonl'));
      const eq = lossesEqual(m, refMetrics);
      if (eq) fig.runsEqual++;
      else o.log(`kill: run ${fig.runs}: losses differ from the uninterrupted run (${m.steps.length} lines)`);
      if (JSON.stringify(m.lines) === JSON.stringify(refMetrics.lines)) fig.metricsEqual++;
      if (checkpointHash(runDir) === refHash) fig.weightsEqual++;
      const temps = tempsUnder(runDir);
      fig.tempLeft += temps.length;
      if (temps.length) o.log(`kill: run ${fig.runs}: temp files left: ${temps.join(', ')}`);
      if (existsSync(join(runDir, '.lock'))) fig.lockLeft++;
      rmSync(runDir, { recursive: true, force: true });
    }
    if (fig.kills < target || fig.mid < midTarget) throw new Error(`kill: ${fig.processes} processes without reaching ${target} kills (${midTarget} mid-write): got ${fig.kills} (${fig.mid})`);
    return [
      {
        part: 'kill',
        target: 'train',
        kills: fig.kills,
        mid_write_kills: fig.mid,
        resumes: fig.resumes,
        resumes_ok: fig.resumesOk,
        fresh_starts: fig.fresh,
        resume_refused_ok: fig.refusedOk,
        resume_refused: fig.refused,
        failures: fig.failures,
        runs: fig.runs,
        runs_equal: fig.runsEqual,
        losses_equal: fig.runsEqual === fig.runs,
        metrics_equal: fig.metricsEqual === fig.runs,
        weights_equal: fig.weightsEqual === fig.runs,
        temp_left: fig.tempLeft,
        lock_left: fig.lockLeft,
        write_ms: writeMs,
        steps: shape.steps,
        seconds: (performance.now() - t0) / 1000,
        seed: o.seed,
      },
    ];
  } finally {
    for (const c of live) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
};
