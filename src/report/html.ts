/**
 * The report page: one self-contained HTML file (inline CSS, each chart an SVG data URI, no
 * scripts, fonts or other requests) that opens offline. Charts are embedded as <img> rather
 * than inline <svg> because every Vega SVG names its clip paths clip1, clip2, ...: inlined
 * side by side, the second chart would clip to the first one's rectangles.
 */
import type { Chart } from './charts.js';
import type { RunData } from './runs.js';
import { escapeHtml, summaryTableHtml, type RunSummary } from './summary.js';

export interface RenderedChart {
  chart: Chart;
  svg: string;
  /** The PNG's file name next to index.html. */
  png: string;
}

const STYLE = `
body { font-family: 'DejaVu Sans', 'Liberation Sans', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin: 1.6em 0 0.4em; }
.meta, .runs { color: #555; font-size: 0.9em; }
.runs li { margin: 0.2em 0; }
table.summary { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
table.summary th, table.summary td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
table.summary th[scope=row], table.summary thead th:first-child { text-align: left; }
table.summary thead th { background: #f4f4f4; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.8em; color: #777; }
code { font-size: 0.9em; }
`;

function svgDataUri(svg: string): string {
  return `data:image/svg+xml;base64,${Buffer.from(svg, 'utf8').toString('base64')}`;
}

function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  return m ? { width: Number(m[1]), height: Number(m[2]) } : { width: 0, height: 0 };
}

function runLine(r: RunData): string {
  const i = r.info;
  const src = i?.source?.modelDir ? `from ${i.source.modelDir}` : i?.source?.preset ? `preset ${i.source.preset}` : '';
  const parts = [src, i?.backend ? `backend ${i.backend}` : '', i?.createdAt ? `started ${i.createdAt}` : ''].filter(Boolean);
  const options = i?.options ? `<details><summary>options</summary><pre>${escapeHtml(JSON.stringify(i.options, null, 2))}</pre></details>` : '';
  return `<li><b>${escapeHtml(r.name)}</b>: <code>${escapeHtml(r.dir)}</code>${parts.length ? ` (${escapeHtml(parts.join(', '))})` : ''}${options}</li>`;
}

function figure(c: RenderedChart): string {
  const { width, height } = svgSize(c.svg);
  const t = escapeHtml(c.chart.title);
  return [
    `<section id="${escapeHtml(c.chart.id)}">`,
    `<h2>${t}</h2>`,
    `<figure><img src="${svgDataUri(c.svg)}" alt="${t}" width="${width}" height="${height}">`,
    `<figcaption>PNG: <a href="${escapeHtml(c.png)}">${escapeHtml(c.png)}</a></figcaption></figure>`,
    '</section>',
  ].join('\n');
}

/** The whole page. */
export function reportHtml(title: string, runs: readonly RunData[], summaries: readonly RunSummary[], charts: readonly RenderedChart[], createdAt = new Date()): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="meta">skymoe report, ${escapeHtml(createdAt.toISOString())}: ${runs.length} run${runs.length === 1 ? '' : 's'}</p>
<ul class="runs">
${runs.map(runLine).join('\n')}
</ul>
<h2>Summary</h2>
${summaryTableHtml(summaries)}
${charts.map(figure).join('\n')}
</body>
</html>
`;
}
