// Builds the optional `native` backend (src/backend/native/csrc -> build/Release/skymoe_native.node)
// with the node-gyp that ships with npm, when a C compiler and the Node headers are present.
// Runs from `npm install`; it never fails the install and never downloads anything: on any
// problem it prints one line and exits 0, and skymoe uses the wasm backend instead.
// Set SKYMOE_NATIVE_SKIP=1 to skip. Uses `configure` + `build`, never `rebuild`: rebuild's clean
// step would delete the whole build/ directory, including build/wasm.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function skip(reason) {
  console.log(`skymoe: native backend not built (${reason}); the wasm backend will be used`);
  process.exit(0);
}

if (process.env.SKYMOE_NATIVE_SKIP === '1') skip('SKYMOE_NATIVE_SKIP=1');

/** node-gyp: npm's own copy (npm exports its path to scripts), else one beside this node, else a local install. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  return candidates.find((p) => p && existsSync(p));
}

/** A directory holding include/node/node_api.h: npm's configured nodedir, else this node's prefix. */
function findNodeDir() {
  const candidates = [process.env.npm_config_nodedir, join(dirname(process.execPath), '..'), '/usr', '/usr/local'];
  return candidates.find((d) => d && existsSync(join(d, 'include', 'node', 'node_api.h')) && existsSync(join(d, 'include', 'node', 'common.gypi')));
}

const cc = process.env.CC || 'cc';
const probe = spawnSync(cc, ['--version'], { encoding: 'utf8' });
if (probe.error || probe.status !== 0) skip(`no C compiler (${cc})`);
const python = spawnSync('python3', ['--version'], { encoding: 'utf8' });
if (python.error || python.status !== 0) skip('node-gyp needs python3, which is missing');
const gyp = findNodeGyp();
if (!gyp) skip('node-gyp not found');
const nodedir = findNodeDir();
if (!nodedir) skip('Node headers (include/node/node_api.h) not found; not downloading them');

const t0 = Date.now();
const r = spawnSync(process.execPath, [gyp, 'configure', 'build', `--nodedir=${nodedir}`, '--release'], {
  cwd: root,
  encoding: 'utf8',
  timeout: 300_000,
  env: { ...process.env, npm_config_nodedir: nodedir },
});
if (r.error || r.status !== 0) {
  const lines = `${r.stderr ?? ''}\n${r.stdout ?? ''}`.split('\n').filter((l) => /error/i.test(l) && !/^gyp info/.test(l));
  skip(`node-gyp failed: ${(lines[0] ?? r.error?.message ?? `exit ${r.status}`).trim()}`);
}
const out = join(root, 'build', 'Release', 'skymoe_native.node');
if (!existsSync(out)) skip('node-gyp finished but build/Release/skymoe_native.node is missing');
console.log(`skymoe: native backend built in ${((Date.now() - t0) / 1000).toFixed(1)} s: build/Release/skymoe_native.node`);
