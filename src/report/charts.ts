/**
 * The report's charts as Vega-Lite specs with their data inlined, one function per chart, so
 * other commands (experiments) can reuse a chart and render it with `renderSvg`/`renderPng`.
 * Every chart colours runs the same way (the run's position in the list), and long series are
 * thinned to MAX_POINTS per series (first and last step kept).
 */
import type { TopLevelSpec } from 'vega-lite';
import type { RunData } from './runs.js';
import { downsample, expertLoad, finiteMean, lastSteps, moeLayers } from './series.js';

/** A chart of the report: a file-name-safe id, its title, and the spec. */
export interface Chart {
  id: string;
  title: string;
  spec: TopLevelSpec;
}

type Row = Record<string, number | string>;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
// Families most systems have; resvg and browsers take the first one installed.
const FONT = 'DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif';

function base(title: string, subtitle?: string | string[]) {
  return {
    $schema: SCHEMA,
    title: subtitle ? { text: title, subtitle } : title,
    background: 'white',
    padding: 8,
    config: { font: FONT, view: { stroke: '#ccc' }, title: { anchor: 'start' as const, fontSize: 14 } },
  };
}

/** The run colour scale, shared by every chart so a run keeps its colour throughout the page. */
function runColor(runs: readonly RunData[]) {
  return { field: 'run', type: 'nominal' as const, title: 'run', scale: { domain: runs.map((r) => r.name), scheme: 'tableau10' }, legend: { symbolType: 'stroke', symbolOpacity: 1, symbolStrokeWidth: 3 } };
}

/** Layers as colours: categorical while the legend stays readable, a gradient for deep models. */
function layerEncoding(layers: number) {
  return layers <= 10
    ? { color: { field: 'layer', type: 'nominal' as const, title: 'MoE layer', scale: { scheme: 'category10' } } }
    : { color: { field: 'layer', type: 'quantitative' as const, title: 'MoE layer', scale: { scheme: 'viridis' } }, detail: { field: 'layer', type: 'nominal' as const } };
}

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '') || 'run';
}

const step = { field: 'step', type: 'quantitative' as const, title: 'step' };

/** A chart that only says why it is empty. */
function notice(title: string, text: string): TopLevelSpec {
  return {
    ...base(title),
    width: 480,
    height: 60,
    data: { values: [{ text }] },
    mark: { type: 'text', fontSize: 14, color: '#666' },
    encoding: { text: { field: 'text', type: 'nominal' } },
  };
}

/**
 * Train loss and cross-entropy (lines) and validation loss (lines with points) against step,
 * every run overlaid.
 */
export function lossChart(runs: readonly RunData[]): Chart {
  const title = 'Loss: train (loss, ce) and validation';
  const rows: Row[] = [];
  for (const r of runs) {
    for (const s of downsample(r.steps)) {
      if (Number.isFinite(s.loss)) rows.push({ run: r.name, step: s.step, series: 'train loss', value: s.loss });
      if (Number.isFinite(s.ce)) rows.push({ run: r.name, step: s.step, series: 'train ce', value: s.ce });
    }
    const evals = r.steps.filter((s) => s.valLoss !== undefined && Number.isFinite(s.valLoss));
    for (const s of downsample(evals)) rows.push({ run: r.name, step: s.step, series: 'validation loss', value: s.valLoss! });
  }
  return {
    id: 'loss',
    title,
    spec: {
      ...base(title, 'loss = ce + sum over layers of alpha * aux; validation at evaluation steps'),
      width: 640,
      height: 300,
      data: { values: rows },
      encoding: {
        x: step,
        y: { field: 'value', type: 'quantitative', title: 'loss (nats/token)', scale: { zero: false } },
        color: runColor(runs),
      },
      layer: [
        {
          mark: { type: 'line', strokeWidth: 1.5 },
          encoding: { strokeDash: { field: 'series', type: 'nominal', title: 'series', scale: { domain: ['train loss', 'train ce', 'validation loss'] }, legend: { symbolType: 'stroke', symbolStrokeColor: '#444' } } },
        },
        { transform: [{ filter: "datum.series === 'validation loss'" }], mark: { type: 'point', filled: true, size: 30 } },
      ],
    },
  };
}

/** One line per MoE layer over steps, one panel per run, for a per-layer metric. */
function perLayerChart(runs: readonly RunData[], id: string, title: string, subtitle: string, pick: (s: RunData['steps'][number]) => number[], yTitle: string, format?: string): Chart {
  const rows: Row[] = [];
  for (const r of runs) {
    for (const s of downsample(r.steps)) {
      pick(s).forEach((v, l) => {
        if (Number.isFinite(v)) rows.push({ run: r.name, step: s.step, layer: l, value: v });
      });
    }
  }
  const layers = Math.max(0, ...runs.map((r) => moeLayers(r.steps)));
  if (rows.length === 0) return { id, title, spec: notice(title, 'no MoE layer recorded') };
  return {
    id,
    title,
    spec: {
      ...base(title, subtitle),
      data: { values: rows },
      facet: { field: 'run', type: 'nominal', title: null, sort: runs.map((r) => r.name) },
      columns: Math.min(runs.length, 2),
      spec: {
        width: 320,
        height: 200,
        mark: { type: 'line', strokeWidth: 1.2 },
        encoding: {
          x: step,
          y: { field: 'value', type: 'quantitative', title: yTitle, ...(format ? { axis: { format } } : {}) },
          ...layerEncoding(layers),
        },
      },
    },
  };
}

/** The adaptive aux-loss coefficient alpha_l of every MoE layer over steps (SPEC section 3). */
export function alphaChart(runs: readonly RunData[]): Chart {
  return perLayerChart(runs, 'alpha', 'Aux-loss coefficient alpha per MoE layer', 'adaptive: alpha <- beta * alpha + (1 - beta) * min(xi * drop rate, alpha_max)', (s) => s.alpha, 'alpha');
}

/** Fraction of routed tokens dropped by the capacity limit, per MoE layer over steps. */
export function dropRateChart(runs: readonly RunData[]): Chart {
  return perLayerChart(runs, 'drop-rate', 'Token drop rate per MoE layer', 'share of token-expert assignments over capacity', (s) => s.dropRate, 'drop rate', '.1%');
}

/**
 * Layer x expert heatmap of each expert's share of its layer's tokens, pooled over the last
 * `fraction` of the run's steps. The colour ramp is centred on the uniform share 1/E.
 */
export function expertLoadChart(run: RunData, fraction = 0.1): Chart {
  const title = `Expert load: ${run.name}`;
  const id = `expert-load-${slug(run.name)}`;
  const tail = lastSteps(run.steps, fraction);
  const load = expertLoad(tail);
  const experts = Math.max(0, ...load.map((row) => row.length));
  const rows: Row[] = [];
  load.forEach((row, l) => row.forEach((f, e) => Number.isFinite(f) && rows.push({ layer: l, expert: e, fraction: f })));
  if (rows.length === 0) return { id, title, spec: notice(title, 'no routed tokens recorded') };
  const uniform = 1 / experts;
  const spread = Math.max(...rows.map((r) => Math.abs((r.fraction as number) - uniform)), 1e-9);
  const range = tail.length > 1 ? `steps ${tail[0]!.step}-${tail[tail.length - 1]!.step}` : `step ${tail[0]!.step}`;
  const cellW = experts > 32 ? 12 : 34;
  const cellH = load.length > 32 ? 12 : 34;
  const text = cellW > 12 && cellH > 12;
  return {
    id,
    title,
    spec: {
      ...base(title, [`share of each MoE layer's tokens per expert, ${range} (last ${Math.round(fraction * 100)}%)`, `white = uniform 1/${experts}`]),
      width: Math.max(200, experts * cellW),
      height: Math.max(60, load.length * cellH),
      data: { values: rows },
      encoding: {
        x: { field: 'expert', type: 'ordinal', title: 'expert', axis: { labelAngle: 0 } },
        y: { field: 'layer', type: 'ordinal', title: 'MoE layer' },
      },
      layer: [
        {
          mark: 'rect',
          encoding: {
            color: { field: 'fraction', type: 'quantitative', title: 'token share', scale: { scheme: 'blueorange', domainMid: uniform }, legend: { format: '.0%' } },
          },
        },
        ...(text
          ? [
              {
                mark: { type: 'text' as const, fontSize: 9 },
                encoding: {
                  text: { field: 'fraction', type: 'quantitative' as const, format: '.0%' },
                  color: { condition: { test: `abs(datum.fraction - ${uniform}) > ${0.6 * spread}`, value: 'white' }, value: 'black' },
                },
              },
            ]
          : []),
      ],
    },
  };
}

/**
 * Max1/Max2 and Max2/Max3 gate-probability ratios over steps, averaged over MoE layers
 * (SPEC section 2: both near 1 means the router cannot tell its top experts apart).
 */
export function routerRatioChart(runs: readonly RunData[]): Chart {
  const title = 'Gate-probability ratios (mean over MoE layers)';
  const rows: Row[] = [];
  for (const r of runs) {
    for (const s of downsample(r.steps)) {
      const m12 = finiteMean(s.max1OverMax2);
      const m23 = finiteMean(s.max2OverMax3);
      if (Number.isFinite(m12)) rows.push({ run: r.name, step: s.step, ratio: 'Max1/Max2', value: m12 });
      if (Number.isFinite(m23)) rows.push({ run: r.name, step: s.step, ratio: 'Max2/Max3', value: m23 });
    }
  }
  if (rows.length === 0) return { id: 'router-ratios', title, spec: notice(title, 'no gate-probability ratios recorded') };
  return {
    id: 'router-ratios',
    title,
    spec: {
      ...base(title, 'larger = sharper routing; both near 1 = near-uniform top-k weights'),
      data: { values: rows },
      facet: { field: 'ratio', type: 'nominal', title: null },
      columns: 2,
      resolve: { scale: { y: 'independent' } },
      spec: {
        width: 320,
        height: 200,
        mark: { type: 'line', strokeWidth: 1.2 },
        encoding: { x: step, y: { field: 'value', type: 'quantitative', title: 'ratio', scale: { zero: false } }, color: runColor(runs) },
      },
    },
  };
}

/**
 * Mean pairwise cosine similarity of the experts' weights over the steps where it was recorded:
 * the mean over MoE layers as a line, the spread across layers as a band (SPEC section 4).
 */
export function expertSimilarityChart(runs: readonly RunData[]): Chart {
  const title = 'Expert similarity';
  const rows: Row[] = [];
  for (const r of runs) {
    const recorded = r.steps.filter((s) => s.expertSimilarity?.some(Number.isFinite));
    for (const s of downsample(recorded)) {
      const v = s.expertSimilarity!.filter(Number.isFinite);
      rows.push({ run: r.name, step: s.step, mean: finiteMean(v), min: Math.min(...v), max: Math.max(...v) });
    }
  }
  if (rows.length === 0) return { id: 'expert-similarity', title, spec: notice(title, 'no expert similarity recorded') };
  return {
    id: 'expert-similarity',
    title,
    spec: {
      ...base(title, 'mean pairwise cosine similarity of expert weights: line = mean over MoE layers, band = min-max'),
      width: 640,
      height: 260,
      data: { values: rows },
      encoding: { x: step, color: runColor(runs) },
      layer: [
        { mark: { type: 'area', opacity: 0.2 }, encoding: { y: { field: 'min', type: 'quantitative', title: 'cosine similarity', scale: { zero: false } }, y2: { field: 'max' } } },
        { mark: { type: 'line', strokeWidth: 1.5, point: rows.length <= 50 * runs.length }, encoding: { y: { field: 'mean', type: 'quantitative' } } },
      ],
    },
  };
}

/** Learning rate and training throughput over steps, side by side and small. */
export function lrThroughputChart(runs: readonly RunData[]): Chart {
  const title = 'Learning rate and throughput';
  const lr: Row[] = [];
  const tps: Row[] = [];
  for (const r of runs) {
    for (const s of downsample(r.steps)) {
      if (Number.isFinite(s.lr)) lr.push({ run: r.name, step: s.step, value: s.lr });
      if (Number.isFinite(s.tokensPerSec)) tps.push({ run: r.name, step: s.step, value: s.tokensPerSec });
    }
  }
  const panel = (values: Row[], yTitle: string, format: string) => ({
    width: 300,
    height: 150,
    data: { values },
    mark: { type: 'line' as const, strokeWidth: 1.2 },
    encoding: { x: step, y: { field: 'value', type: 'quantitative' as const, title: yTitle, axis: { format } }, color: runColor(runs) },
  });
  return {
    id: 'lr-throughput',
    title,
    spec: { ...base(title), hconcat: [panel(lr, 'learning rate', '.1e'), panel(tps, 'tokens/s', '~s')] },
  };
}

/** Every chart of the report, in page order: one expert-load heatmap per run. */
export function reportCharts(runs: readonly RunData[], opts: { loadFraction?: number } = {}): Chart[] {
  const charts = [
    lossChart(runs),
    alphaChart(runs),
    dropRateChart(runs),
    ...runs.map((r) => expertLoadChart(r, opts.loadFraction)),
    routerRatioChart(runs),
    expertSimilarityChart(runs),
    lrThroughputChart(runs),
  ];
  // Two run names can slug to the same file name ('a b', 'a_b'): number the later ones.
  const seen = new Set<string>();
  return charts.map((c, i) => {
    const id = seen.has(c.id) ? `${c.id}-${i}` : c.id;
    seen.add(id);
    return { ...c, id };
  });
}
