// Installs the llama.cpp peer (node-llama-cpp 3.21.1 and its prebuilt linux-x64 CPU binary, from the
// npm registry; no downloads of its own: its postinstall is skipped) into bench/peers/llama-cpp,
// for bench:decode and the GGUF tests. Never a dependency of skymoe itself. Other platforms: it
// says why and stops. `--required` (CI) fails the command when the install fails.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'peers', 'llama-cpp');
const required = process.argv.includes('--required');

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.log(`skymoe: llama.cpp peer not installed: its prebuilt binary here is for linux-x64 (this is ${process.platform}-${process.arch})`);
  process.exit(0);
}
const npm = process.env.npm_execpath
  ? [process.execPath, [process.env.npm_execpath]]
  : ['npm', []];
const r = spawnSync(npm[0], [...npm[1], 'ci', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
if (r.status !== 0 || !existsSync(join(dir, 'node_modules', 'node-llama-cpp'))) {
  console.log(`skymoe: llama.cpp peer install failed in ${dir} (npm exited ${r.status})`);
  process.exit(required ? 1 : 0);
}
console.log(`skymoe: llama.cpp peer installed in ${dir}`);
