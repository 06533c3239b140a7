/**
 * Rendering a Vega-Lite spec without a browser: vega-lite compiles it to Vega, a headless Vega
 * view (renderer 'none') writes SVG, and resvg rasterizes the SVG to PNG with the system fonts.
 */
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** PNGs are drawn at this multiple of the SVG size so text stays sharp on high-DPI screens. */
export const PNG_SCALE = 2;

/**
 * The spec as a standalone SVG document.
 * @example const svg = await renderSvg(lossChart(runs).spec);
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const vg = compile(spec, { logger: specLogger }).spec;
  const view = new View(parse(vg), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const resvgOptions = (zoom: number): ResvgRenderOptions => ({
  background: 'white',
  fitTo: { mode: 'zoom', value: zoom },
  // Unknown families (a page asking for Helvetica) fall back to an installed one.
  font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
});

/** An SVG document as PNG bytes, `zoom` times its size. */
export function svgToPng(svg: string, zoom = PNG_SCALE): Buffer {
  return new Resvg(svg, resvgOptions(zoom)).render().asPng();
}

/** The spec as PNG bytes. */
export async function renderPng(spec: TopLevelSpec, zoom = PNG_SCALE): Promise<Buffer> {
  return svgToPng(await renderSvg(spec), zoom);
}

let fontsFound: boolean | undefined;

/**
 * Whether resvg finds a font to draw text with. Without one the PNGs have no text at all (the
 * page's SVGs are unaffected: the browser brings its own fonts), so the caller can warn.
 */
export function pngTextRenders(): boolean {
  if (fontsFound === undefined) {
    const probe = '<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20"><text x="2" y="16" font-size="16" font-family="sans-serif">Ag</text></svg>';
    const px = new Resvg(probe, resvgOptions(1)).render().pixels;
    fontsFound = false;
    for (let i = 0; i < px.length; i += 4) if (px[i]! < 128) fontsFound = true;
  }
  return fontsFound;
}

// vega-lite's default logger prints through console; route warnings to stderr with a prefix
// and turn errors into exceptions (a chart that cannot compile is a bug in its spec).
const specLogger = {
  level(): number {
    return 0;
  },
  error(...args: readonly unknown[]): never {
    throw new Error(`vega-lite: ${args.map(String).join(' ')}`);
  },
  warn(...args: readonly unknown[]) {
    process.stderr.write(`vega-lite warning: ${args.map(String).join(' ')}\n`);
    return specLogger;
  },
  info() {
    return specLogger;
  },
  debug() {
    return specLogger;
  },
};
