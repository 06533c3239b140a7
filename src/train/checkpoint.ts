/**
 * Training checkpoints: everything a resumed run needs to continue exactly as if never stopped.
 *
 * RUN/checkpoints/step-000120/   config.json, model.safetensors, tokenizer.json, tokenizer_config.json
 *                                (a loadable HF model directory), optimizer.safetensors (AdamW m and v),
 *                                state.json (step, data sampler RNG, aux controllers, warning counters)
 * RUN/checkpoints/latest.json    { "step": 120, "dir": "step-000120" }, replaced atomically last
 *
 * A checkpoint directory is written under a temporary name and renamed into place, and
 * latest.json moves only after that: a crash at any moment leaves the previous good checkpoint
 * as the one `--resume` loads.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { fsyncDir, processAlive } from '../io/atomic.js';
import { checkTokenizerFitsModel, loadModel, saveModel, writeJsonAtomic } from '../io/hf.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import { type Tokenizer, loadTokenizer, saveTokenizer } from '../io/tokenizer/index.js';
import type { SkyworkMoE } from '../model/skywork-moe.js';
import type { AdamW } from './optimizer.js';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export const STATE_VERSION = 1;

export interface TrainerState {
  version: number;
  step: number;
  tokensSeen: number;
  adamStep: number;
  dataRng: { s: number[]; spare: number | null };
  controller: unknown;
  warnings: unknown;
  /** Hash of the training options that must not change across a resume. */
  optionsHash: string;
}

export function checkpointRoot(runDir: string): string {
  return join(runDir, 'checkpoints');
}

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** Write a checkpoint atomically and point latest.json at it; keep the newest `keep`. */
export async function saveCheckpoint(runDir: string, model: SkyworkMoE, tok: Tokenizer, opt: AdamW, state: TrainerState, keep: number): Promise<string> {
  const root = checkpointRoot(runDir);
  mkdirSync(root, { recursive: true });
  const name = stepDirName(state.step);
  const tmp = join(root, `${name}.tmp-${process.pid}`);
  removeDeadTemps(root);
  rmSync(tmp, { recursive: true, force: true });
  try {
    saveModel(model, tmp, { maxShardBytes: Number.MAX_SAFE_INTEGER });
    await saveTokenizer(tmp, tok, { modelMaxLength: model.config.maxPositions });
    const moments = [...opt.m.entries()].flatMap(([n, m]) => [
      { name: `m.${n}`, dtype: 'F32' as const, shape: [...m.shape], data: () => m.toFloat32() },
      { name: `v.${n}`, dtype: 'F32' as const, shape: [...m.shape], data: () => opt.v.get(n)!.toFloat32() },
    ]);
    // Per-parameter update counts, written only where they differ from the step count (a parameter
    // that once had no gradient).
    const lagging = Object.fromEntries([...opt.steps].filter(([, n]) => n !== opt.step));
    writeSafetensors(join(tmp, 'optimizer.safetensors'), moments, { adam_step: String(opt.step), adam_param_steps: JSON.stringify(lagging) });
    writeJsonAtomic(join(tmp, 'state.json'), state);
  } catch (e) {
    // A failed save (disk full, say) leaves nothing behind: the last good checkpoint stays the
    // latest, and repeated failures do not pile up full-size copies.
    rmSync(tmp, { recursive: true, force: true });
    throw new CheckpointError(`saving step ${state.step} to ${tmp} failed, the checkpoint of latest.json is untouched: ${(e as Error).message}`);
  }
  const final = join(root, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncDir(root);
  writeJsonAtomic(join(root, 'latest.json'), { step: state.step, dir: name });
  prune(root, keep, name);
  return final;
}

/** Temp directories of saves whose process died (kill -9 mid-save): theirs to remove, not a live writer's. */
function removeDeadTemps(root: string): void {
  for (const d of readdirSync(root)) {
    const m = /^step-\d{6,}\.tmp-(\d+)$/.exec(d);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) rmSync(join(root, d), { recursive: true, force: true });
  }
}

function prune(root: string, keep: number, current: string): void {
  const dirs = readdirSync(root)
    .filter((d) => /^step-\d{6,}$/.test(d))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  for (const d of dirs.slice(0, Math.max(0, dirs.length - keep))) if (d !== current) rmSync(join(root, d), { recursive: true, force: true });
  for (const d of readdirSync(root)) if (/^step-\d{6,}\.tmp-/.test(d)) rmSync(join(root, d), { recursive: true, force: true });
}

export interface LoadedCheckpoint {
  dir: string;
  model: SkyworkMoE;
  tokenizer: Tokenizer;
  state: TrainerState;
}

/** The checkpoint latest.json points to (or a given step directory), with its errors named. */
export async function loadCheckpoint(runDir: string, backend: Backend): Promise<LoadedCheckpoint> {
  const root = checkpointRoot(runDir);
  const latestPath = join(root, 'latest.json');
  if (!existsSync(latestPath)) throw new CheckpointError(`${latestPath}: not found (is ${runDir} a training run with a checkpoint?)`);
  let latest: { step?: unknown; dir?: unknown };
  try {
    latest = JSON.parse(readFileSync(latestPath, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${latestPath}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof latest.dir !== 'string' || !/^step-\d{6,}$/.test(latest.dir)) throw new CheckpointError(`${latestPath}: field 'dir' must name a step-NNNNNN directory`);
  const dir = join(root, latest.dir);
  const statePath = join(dir, 'state.json');
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(statePath, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${statePath}: unreadable (${(e as Error).message})`);
  }
  if (state.version !== STATE_VERSION) throw new CheckpointError(`${statePath}: state version ${state.version}, this skymoe reads ${STATE_VERSION}`);
  if (!Number.isInteger(state.step) || state.step !== latest.step) throw new CheckpointError(`${statePath}: step ${state.step} does not match latest.json (${String(latest.step)})`);
  const model = loadModel(dir, backend);
  let tokenizer: Tokenizer;
  try {
    tokenizer = await loadTokenizer(dir);
    checkTokenizerFitsModel(tokenizer, model.config, dir);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { dir, model, tokenizer, state };
}

/** Restore AdamW moments from a checkpoint directory into an optimizer over the same parameters. */
export function loadOptimizer(dir: string, opt: AdamW): void {
  const path = join(dir, 'optimizer.safetensors');
  const f = openSafetensors(path);
  try {
    for (const [n, m] of opt.m) {
      for (const [prefix, t] of [['m', m], ['v', opt.v.get(n)!]] as const) {
        const name = `${prefix}.${n}`;
        if (!f.has(name)) throw new CheckpointError(`${path}: missing optimizer state '${name}'`);
        const info = f.info(name);
        if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
          throw new CheckpointError(`${path}: '${name}' has shape [${info.shape}], the model needs [${t.shape}]`);
        }
        t.assign(f.readF32(name));
      }
    }
    // Decimal digits only: Number() would take "" as 0 and "0x10" as 16.
    const step = f.metadata?.adam_step;
    if (typeof step !== 'string' || !/^(0|[1-9][0-9]{0,15})$/.test(step)) throw new CheckpointError(`${path}: metadata 'adam_step' missing or not a non-negative integer (got ${JSON.stringify(step)})`);
    opt.step = Number(step);
    let lagging: Record<string, unknown> = {};
    try {
      lagging = JSON.parse(f.metadata?.adam_param_steps ?? '{}');
    } catch {
      throw new CheckpointError(`${path}: metadata 'adam_param_steps' is not valid JSON`);
    }
    for (const name of opt.steps.keys()) {
      const n = lagging[name] ?? opt.step;
      if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > opt.step) throw new CheckpointError(`${path}: metadata 'adam_param_steps' has ${JSON.stringify(n)} for '${name}' (expected an integer in [0, ${opt.step}])`);
      opt.steps.set(name, n as number);
    }
  } finally {
    f.close();
  }
}
