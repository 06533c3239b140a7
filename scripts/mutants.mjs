// Mutation check of the test suite: each mutant in test/mutants.json is a deliberate bug (one
// string replaced in one compiled file under dist/) that the named tests must catch. The
// harness applies one mutant at a time, runs those tests, and restores the file; a mutant the
// tests do not kill, or whose source line no longer exists, is reported and fails the run.
// A mutant is { id, what, file (under dist/), from and to (or edits: [{ from, to }, ...]),
// all? (replace every occurrence), tests (substrings of test file paths), pattern? (only the tests
// whose name matches), env? }.
// Usage: npm run build && npm run mutants [-- id-substring...]
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const all = JSON.parse(readFileSync('test/mutants.json', 'utf8'));
const filters = process.argv.slice(2);
const mutants = all.filter((m) => filters.length === 0 || filters.some((f) => m.id.includes(f)));

function testFiles(dir = 'dist/test') {
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (p.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const files = testFiles();

let restore = null;
process.on('SIGINT', () => {
  restore?.();
  process.exit(130);
});

const results = [];
for (const m of mutants) {
  const path = join('dist', m.file);
  const original = readFileSync(path, 'utf8');
  const edits = m.edits ?? [{ from: m.from, to: m.to }];
  const stale = edits.map((e) => [e, original.split(e.from).length - 1]).find(([, count]) => count === 0 || (count > 1 && !m.all));
  if (stale) {
    results.push({ m, status: `STALE ('${stale[0].from}' occurs ${stale[1]} times in ${path})` });
    continue;
  }
  const tests = files.filter((f) => m.tests.some((t) => f.includes(t)));
  if (tests.length === 0) {
    results.push({ m, status: `STALE (no test file matches ${m.tests.join(', ')})` });
    continue;
  }
  restore = () => writeFileSync(path, original);
  // `to` as a function's result, so that $' or $& in it stay literal (as replace patterns they
  // would paste parts of the file into the mutant and break its syntax: a false kill).
  writeFileSync(path, edits.reduce((text, e) => (m.all ? text.split(e.from).join(e.to) : text.replace(e.from, () => e.to)), original));
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...(m.pattern ? [`--test-name-pattern=${m.pattern}`] : []), ...tests], { encoding: 'utf8', env: { ...process.env, ...(m.env ?? {}) }, timeout: 600_000 });
  restore();
  restore = null;
  const failed = [...r.stdout.matchAll(/^\s*✖ (.+?) \(\d/gm)].map((x) => x[1]).filter((n) => n !== 'failing tests:');
  const killed = r.status !== 0;
  results.push({ m, status: killed ? `killed by: ${[...new Set(failed)].slice(0, 3).join(' | ') || `exit ${r.status}`}` : 'SURVIVED', killed, s: (Date.now() - t0) / 1000 });
  console.log(`${killed ? 'killed  ' : 'SURVIVED'} ${m.id} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
console.log('');
for (const { m, status } of results) console.log(`mutant ${m.id}: ${m.what}\n  ${status}`);
const bad = results.filter((r) => !r.killed);
console.log(`\n${results.length - bad.length} of ${results.length} mutants killed`);
process.exit(bad.length ? 1 : 0);
