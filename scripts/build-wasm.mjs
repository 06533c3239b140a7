// Compiles src/backend/wasm/assembly/index.ts twice with the local AssemblyScript compiler:
// build/wasm/kernels.relaxed.wasm (relaxed SIMD: f32x4.relaxed_madd) and build/wasm/kernels.wasm
// (plain SIMD128, mul+add). The JS side picks the relaxed build when WebAssembly.validate accepts it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asc = join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'asc.cmd' : 'asc');
const entry = join(root, 'src', 'backend', 'wasm', 'assembly', 'index.ts');
const outDir = join(root, 'build', 'wasm');

if (!existsSync(asc)) {
  console.error('build-wasm: AssemblyScript is not installed (run npm install)');
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });

// Shared memory imported from JS; 65536 pages = 4 GiB is the wasm32 limit, so JS may grow the heap
// that far. The stub runtime has no GC and no shadow stack: kernels use raw loads and stores only.
const common = [
  entry,
  '--runtime', 'stub',
  '-O3', '--noAssert',
  '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536',
  '--enable', 'simd', '--enable', 'threads',
  '--use', 'abort=',
];
const builds = [
  { out: 'kernels.relaxed.wasm', extra: ['--enable', 'relaxed-simd'] },
  { out: 'kernels.wasm', extra: [] },
];
for (const b of builds) {
  const outFile = join(outDir, b.out);
  execFileSync(asc, [...common, ...b.extra, '-o', outFile], { stdio: 'inherit', cwd: root });
  console.log(`build-wasm: ${join('build', 'wasm', b.out)}`);
}
