/** `skymoe doctor`: which backends work here, which ISA, how many threads. */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { createBackend, defaultThreads } from '../backend/index.js';
import type { Backend, BackendName } from '../backend/backend.js';
import { fmtBytes } from '../backend/heap.js';

/** Where this backend keeps checkpoint weights, checked by mapping a file when it can. */
function weightsNote(be: Backend): string {
  const limit = `heap limit ${fmtBytes(be.heap.storage.maxBytes)}`;
  if (!be.mapFile) return `copied into the heap (${limit})`;
  try {
    const m = be.mapFile(fileURLToPath(import.meta.url));
    m.unmap();
    return `read in place from memory-mapped checkpoint files (no heap, no size limit; activations: ${limit})`;
  } catch (e) {
    return `copied into the heap: mapping failed (${(e as Error).message})`;
  }
}

export async function runDoctor(): Promise<void> {
  console.log(`node ${process.version} on ${os.platform()}/${os.arch()}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores`);
  console.log(`SKYMOE_BACKEND=${process.env.SKYMOE_BACKEND ?? '(unset)'} SKYMOE_THREADS=${process.env.SKYMOE_THREADS ?? '(unset)'}; threads by default: ${defaultThreads()}`);
  for (const name of ['js', 'wasm', 'native'] as BackendName[]) {
    try {
      const be = await createBackend({ name });
      console.log(`  ${name.padEnd(7)} available: ${be.describe()}; weights ${weightsNote(be)}`);
      await be.dispose();
    } catch (e) {
      console.log(`  ${name.padEnd(7)} unavailable: ${(e as Error).message}`);
    }
  }
  const be = await createBackend({});
  console.log(`default backend: ${be.describe()}`);
  await be.dispose();
}
