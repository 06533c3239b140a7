/** `skymoe report RUN_DIR...`: an HTML page and PNG charts of one or several training runs. */
import { buildReport } from '../report/index.js';

export interface ReportCliOptions {
  out?: string;
  title?: string;
  /** Comma-separated legend names, one per run directory. */
  labels?: string;
}

/**
 * Build the report, print the path of its index.html on stdout (warnings on stderr). A bad run
 * directory throws a ReportError naming the file and line, for main's error handler to print.
 */
export async function runReport(dirs: string[], o: ReportCliOptions): Promise<string> {
  const r = await buildReport(dirs, { outDir: o.out, title: o.title, labels: o.labels?.split(',').map((s) => s.trim()) });
  for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(`${r.html}\n`);
  return r.html;
}
