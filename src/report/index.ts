/**
 * Training-run reports: `buildReport` reads run directories and writes OUT/index.html (a
 * self-contained page with a summary table and every chart) and one PNG per chart next to it.
 * The chart specs (`lossChart`, ... `reportCharts`) and renderers are exported for reuse.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { reportCharts } from './charts.js';
import { reportHtml, type RenderedChart } from './html.js';
import { pngTextRenders, renderSvg, svgToPng } from './render.js';
import { loadRuns } from './runs.js';
import { summarize, type RunSummary } from './summary.js';

export { alphaChart, dropRateChart, expertLoadChart, expertSimilarityChart, lossChart, lrThroughputChart, reportCharts, routerRatioChart, type Chart } from './charts.js';
export { PNG_SCALE, pngTextRenders, renderPng, renderSvg, svgToPng } from './render.js';
export { loadRun, loadRuns, parseMetrics, ReportError, type ReportStep, type RunData, type RunInfo } from './runs.js';
export { downsample, expertLoad, MAX_POINTS } from './series.js';
export { summarize, summaryTableHtml, type RunSummary } from './summary.js';

export interface ReportOptions {
  /** Default: RUN_DIR/report for one run, ./report-<timestamp> for several. */
  outDir?: string;
  title?: string;
  /** Legend names for the runs, in order (default: the directories' base names). */
  labels?: string[];
  /** Share of the last steps the expert-load heatmaps pool (default 0.1). */
  loadFraction?: number;
}

export interface Report {
  /** Path of the written index.html. */
  html: string;
  /** Paths of the written PNGs, one per chart, in page order. */
  pngs: string[];
  summaries: RunSummary[];
  /** Things the reader should know, e.g. that PNG text is missing for lack of fonts. */
  warnings: string[];
}

/** `report-20240601-153000`: a default output folder name that sorts by time. */
export function timestampedName(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `report-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/**
 * Read the runs, render every chart, write OUT/index.html and OUT/<chart>.png.
 * @example
 * ```ts
 * const r = await buildReport(['runs/a', 'runs/b'], { outDir: 'cmp', title: 'scratch vs upcycled' });
 * console.log(r.html); // cmp/index.html
 * ```
 */
export async function buildReport(runDirs: string[], opts: ReportOptions = {}): Promise<Report> {
  const runs = loadRuns(runDirs, opts.labels);
  const outDir = resolve(opts.outDir ?? (runDirs.length === 1 ? join(runDirs[0]!, 'report') : timestampedName()));
  const title = opts.title ?? (runs.length === 1 ? `Training report: ${runs[0]!.name}` : `Training report: ${runs.map((r) => r.name).join(' vs ')}`);
  mkdirSync(outDir, { recursive: true });

  const rendered: RenderedChart[] = [];
  const pngs: string[] = [];
  for (const chart of reportCharts(runs, { loadFraction: opts.loadFraction })) {
    const svg = await renderSvg(chart.spec);
    const png = `${chart.id}.png`;
    writeFileSync(join(outDir, png), svgToPng(svg));
    pngs.push(join(outDir, png));
    rendered.push({ chart, svg, png });
  }
  const summaries = runs.map(summarize);
  const html = join(outDir, 'index.html');
  writeFileSync(html, reportHtml(title, runs, summaries, rendered));
  const warnings = pngTextRenders() ? [] : ['no system font found: the PNGs have no text (index.html is unaffected); install one, e.g. apt-get install fonts-dejavu-core'];
  return { html, pngs, summaries, warnings };
}
