/** `skymoe selfcheck`: the chosen backend's kernels against the js reference. */
import { createBackend } from '../backend/index.js';
import type { BackendName } from '../backend/backend.js';
import { selfcheck } from '../backend/selfcheck.js';

export async function runSelfcheck(opts: { backend?: BackendName; threads?: number }): Promise<boolean> {
  const be = await createBackend({ name: opts.backend, threads: opts.threads });
  console.log(`selfcheck ${be.describe()}`);
  let ok = true;
  try {
    for (const r of selfcheck(be)) {
      console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(28)} max rel err ${r.maxRelErr.toExponential(2)}`);
      ok &&= r.ok;
    }
  } finally {
    await be.dispose();
  }
  console.log(ok ? 'selfcheck passed' : 'selfcheck FAILED');
  return ok;
}
