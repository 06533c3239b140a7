/**
 * Reading training runs for a report: RUN/metrics.jsonl (one StepMetrics per line, written by
 * the trainer) and, when present, RUN/run.json. Every line is validated so a bad file fails with
 * its path and line number instead of producing a silently wrong chart.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import type { StepMetrics } from '../train/trainer.js';

/** A run directory or metrics file the report cannot use; `path` (and `line`) say where. */
export class ReportError extends Error {
  constructor(
    message: string,
    readonly path: string,
    readonly line?: number,
  ) {
    super(line === undefined ? `${path}: ${message}` : `${path}:${line}: ${message}`);
    this.name = 'ReportError';
  }
}

/** One step of a run as the report reads it: the trainer's metrics plus the optional monitor. */
export type ReportStep = StepMetrics & {
  /** Mean pairwise cosine similarity of the experts' weights, per MoE layer (some steps only). */
  expertSimilarity?: number[];
};

/** A loaded run: its label, where it lives, its steps in step order, and run.json if any. */
export interface RunData {
  name: string;
  dir: string;
  steps: ReportStep[];
  info?: RunInfo;
}

/** The fields of RUN/run.json the report shows. */
export interface RunInfo {
  source?: { preset?: string; modelDir?: string; corpus?: string[] };
  options?: Record<string, unknown>;
  backend?: string;
  createdAt?: string;
}

// JSON.stringify writes NaN and Infinity as null (a diverged loss): read them back as NaN.
const num = z
  .number()
  .nullable()
  .transform((v) => v ?? Number.NaN);
const perLayer = z.array(num);

const stepSchema = z.object({
  step: z.number().int().nonnegative(),
  loss: num,
  ce: num,
  aux: perLayer,
  alpha: perLayer,
  dropRate: perLayer,
  tokensPerExpert: z.array(perLayer),
  max1OverMax2: perLayer,
  max2OverMax3: perLayer,
  entropy: perLayer,
  gradNorm: num,
  lr: num,
  tokensPerSec: num,
  valLoss: num.optional(),
  valPpl: num.optional(),
  expertSimilarity: perLayer.optional(),
});

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = issue.path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : s ? `${s}.${String(p)}` : String(p)), '');
  return at ? `field '${at}': ${issue.message}` : issue.message;
}

/**
 * Parse a metrics.jsonl text; `path` only names the file in errors. Blank lines are skipped;
 * a step written twice (a resumed run) keeps its last record.
 * @example parseMetrics('{"step":1,...}\n', 'runs/a/metrics.jsonl')
 */
export function parseMetrics(text: string, path: string): ReportStep[] {
  const byStep = new Map<number, ReportStep>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new ReportError(`malformed JSON (${(e as Error).message})`, path, i + 1);
    }
    const r = stepSchema.safeParse(value);
    if (!r.success) throw new ReportError(`not a metrics record: ${describeIssue(r.error.issues[0]!)}`, path, i + 1);
    byStep.set(r.data.step, r.data as ReportStep);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

function readInfo(dir: string): RunInfo | undefined {
  const path = join(dir, 'run.json');
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RunInfo;
  } catch (e) {
    throw new ReportError(`malformed JSON (${(e as Error).message})`, path);
  }
}

/**
 * Load one run directory.
 * @example const run = loadRun('runs/tiny'); // run.name === 'tiny'
 */
export function loadRun(dir: string, name = basename(resolve(dir))): RunData {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ReportError('not a run directory', dir);
  const path = join(dir, 'metrics.jsonl');
  if (!existsSync(path)) throw new ReportError('no metrics.jsonl: not a training run directory (skymoe train --out DIR writes one)', dir);
  const steps = parseMetrics(readFileSync(path, 'utf8'), path);
  if (steps.length === 0) throw new ReportError('empty run: no step has been recorded yet', path);
  return { name, dir, steps, info: readInfo(dir) };
}

/**
 * Load several runs, labelled by `labels` or by their directory names; equal names get the
 * parent directory prepended (then an index) so the legend can tell them apart.
 */
export function loadRuns(dirs: string[], labels?: string[]): RunData[] {
  if (dirs.length === 0) throw new ReportError('no run directories given', '.');
  if (labels && labels.length !== dirs.length) throw new ReportError(`${labels.length} labels for ${dirs.length} runs`, '.');
  const names = labels ?? uniqueNames(dirs);
  return dirs.map((d, i) => loadRun(d, names[i]));
}

function uniqueNames(dirs: string[]): string[] {
  const base = dirs.map((d) => basename(resolve(d)));
  const withParent = dirs.map((d, i) => (base.filter((b) => b === base[i]).length > 1 ? `${basename(resolve(d, '..'))}/${base[i]}` : base[i]!));
  return withParent.map((n, i) => (withParent.indexOf(n) === i ? n : `${n}#${i + 1}`));
}
