/** The per-run summary table: where each run ended, its best validation, speed and drop rate. */
import type { RunData } from './runs.js';
import { finiteMean } from './series.js';

export interface RunSummary {
  name: string;
  /** Recorded steps and the last step number. */
  steps: number;
  lastStep: number;
  finalLoss: number;
  /** Lowest validation loss and its step; NaN / undefined when the run never evaluated. */
  bestValLoss: number;
  bestValStep?: number;
  bestValPpl: number;
  finalValLoss: number;
  finalValPpl: number;
  meanTokensPerSec: number;
  /** Mean over MoE layers of the last step's drop rate. */
  finalDropRate: number;
}

/**
 * Summarize one run. Perplexity is the recorded valPpl, else exp(valLoss).
 * @example summarize(loadRun('runs/tiny')).finalLoss
 */
export function summarize(run: RunData): RunSummary {
  const last = run.steps[run.steps.length - 1]!;
  const evals = run.steps.filter((s) => s.valLoss !== undefined && Number.isFinite(s.valLoss));
  const ppl = (s: (typeof evals)[number]) => (s.valPpl !== undefined && Number.isFinite(s.valPpl) ? s.valPpl : Math.exp(s.valLoss!));
  const best = evals.reduce<(typeof evals)[number] | undefined>((b, s) => (b === undefined || s.valLoss! < b.valLoss! ? s : b), undefined);
  const finalEval = evals[evals.length - 1];
  return {
    name: run.name,
    steps: run.steps.length,
    lastStep: last.step,
    finalLoss: last.loss,
    bestValLoss: best ? best.valLoss! : Number.NaN,
    bestValStep: best?.step,
    bestValPpl: best ? ppl(best) : Number.NaN,
    finalValLoss: finalEval ? finalEval.valLoss! : Number.NaN,
    finalValPpl: finalEval ? ppl(finalEval) : Number.NaN,
    meanTokensPerSec: finiteMean(run.steps.map((s) => s.tokensPerSec)),
    finalDropRate: finiteMean(last.dropRate),
  };
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const fixed = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '–');

/** The summary as an HTML table; each value cell carries its raw number in data-value. */
export function summaryTableHtml(rows: readonly RunSummary[]): string {
  const cell = (x: number, text: string) => `<td data-value="${Number.isFinite(x) ? x : ''}">${text}</td>`;
  const head = ['run', 'steps', 'final train loss', 'best val loss', 'best val ppl', 'final val loss', 'final val ppl', 'mean tokens/s', 'final drop rate'];
  const body = rows.map((r) =>
    [
      `<tr><th scope="row">${escapeHtml(r.name)}</th>`,
      cell(r.lastStep, `${r.lastStep}${r.steps !== r.lastStep ? ` <small>(${r.steps} recorded)</small>` : ''}`),
      cell(r.finalLoss, fixed(r.finalLoss, 4)),
      cell(r.bestValLoss, `${fixed(r.bestValLoss, 4)}${r.bestValStep !== undefined ? ` <small>@${r.bestValStep}</small>` : ''}`),
      cell(r.bestValPpl, fixed(r.bestValPpl, 2)),
      cell(r.finalValLoss, fixed(r.finalValLoss, 4)),
      cell(r.finalValPpl, fixed(r.finalValPpl, 2)),
      cell(r.meanTokensPerSec, fixed(r.meanTokensPerSec, 0)),
      cell(r.finalDropRate, Number.isFinite(r.finalDropRate) ? `${(r.finalDropRate * 100).toFixed(2)}%` : '–'),
      '</tr>',
    ].join(''),
  );
  return `<table class="summary">\n<thead><tr>${head.map((h) => `<th scope="col">${h}</th>`).join('')}</tr></thead>\n<tbody>\n${body.join('\n')}\n</tbody>\n</table>`;
}
