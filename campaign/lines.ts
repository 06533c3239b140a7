/**
 * The reliability campaign's shared vocabulary (issue 12): every part returns figure lines, printed by
 * campaign/main.ts as `campaign part=<part> target=<target> key=value ...`, one per line.
 */

/** One printed figure line. `part` and `target` come first; the rest in insertion order. */
export interface CampaignLine {
  part: string;
  target: string;
  [key: string]: string | number | boolean;
}

/** Options every part accepts; each part scales its work by `scale` (1 = the full campaign, ~0.02 = the fast test). */
export interface CampaignOptions {
  /** Seed of every random choice, printed with the figures so a failing case can be replayed. */
  seed: number;
  /** Fraction of the full campaign's case/kill/minute counts to run (1 = full). */
  scale: number;
  /** Progress and failure details (stderr); never figures. */
  log: (message: string) => void;
  /** A scratch directory the part may fill and must leave empty. */
  workDir: string;
}

/** A part of the campaign. */
export type CampaignPart = (o: CampaignOptions) => Promise<CampaignLine[]>;

export function formatLine(l: CampaignLine): string {
  const { part, target, ...rest } = l;
  const kv = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? +v.toFixed(3) : v}`);
  return ['campaign', `part=${part}`, `target=${target}`, ...kv].join(' ');
}
