/** `skymoe doctor`: which backends work here, which ISA, how many threads. */
import os from 'node:os';
import { createBackend, defaultThreads } from '../backend/index.js';
import type { BackendName } from '../backend/backend.js';

export async function runDoctor(): Promise<void> {
  console.log(`node ${process.version} on ${os.platform()}/${os.arch()}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} cores`);
  console.log(`SKYMOE_BACKEND=${process.env.SKYMOE_BACKEND ?? '(unset)'} SKYMOE_THREADS=${process.env.SKYMOE_THREADS ?? '(unset)'}; threads by default: ${defaultThreads()}`);
  for (const name of ['js', 'wasm', 'native'] as BackendName[]) {
    try {
      const be = await createBackend({ name });
      console.log(`  ${name.padEnd(7)} available: ${be.describe()}`);
      await be.dispose();
    } catch (e) {
      console.log(`  ${name.padEnd(7)} unavailable: ${(e as Error).message}`);
    }
  }
  const be = await createBackend({});
  console.log(`default backend: ${be.describe()}`);
  await be.dispose();
}
