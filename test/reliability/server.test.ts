/**
 * The fast part of the server campaign (campaign/server.ts, issue 12), each on a real `skymoe
 * serve` child process serving a tiny model: 300 fuzzed HTTP requests (malformed HTTP on raw
 * sockets, bad bodies, bad parameters, traversal paths), then 10 s of 16 client streams mixing
 * well-formed completions and chats with client aborts, slow readers, malformed requests and
 * attempts to read files through model names and URL paths. `npm run campaign` runs the full size
 * (10,000 cases; 64 streams for 3 minutes).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runAbuse, runFuzz } from '../../campaign/server.js';
import type { CampaignLine } from '../../campaign/lines.js';

const SEED = 12;

/** The fields of a line, for one assertion that shows them all. */
const fields = (l: CampaignLine, keys: string[]): Record<string, unknown> => Object.fromEntries(keys.map((k) => [k, l[k]]));

describe('the server under fuzzing and abuse (issue 12, fast part)', () => {
  let workDir: string;
  const logs: string[] = [];
  const log = (m: string): void => void logs.push(m);
  const why = (l: CampaignLine): string => `${JSON.stringify(l)}\n${logs.join('\n').slice(-8000)}`;

  before(() => (workDir = mkdtempSync(join(tmpdir(), 'skymoe-reliability-server-'))));
  after(() => rmSync(workDir, { recursive: true, force: true }));

  it('answers 300 fuzzed requests with a 2xx or a 4xx in OpenAI shape: no 5xx, hang, reset, crash, leak or heap growth', async () => {
    logs.length = 0;
    // The campaign's hang limit is 5 s; here 15 s, so a loaded CI machine is not mistaken for a hang.
    const l = await runFuzz({ seed: SEED, scale: 0.03, log, workDir }, 300, { timeoutMs: 15_000 });
    const failures = ['server_5xx', 'bad_error_body', 'bad_2xx', 'other_status', 'hangs', 'crashes', 'traversal_leaks', 'health_failures', 'internal_errors', 'server_warnings'];
    assert.deepEqual(fields(l, failures), Object.fromEntries(failures.map((k) => [k, 0])), why(l));
    assert.equal(Number(l.ok_2xx) + Number(l.client_4xx), 300, why(l));
    assert.ok(Number(l.ok_2xx) > 0 && Number(l.client_4xx) > 0, why(l));
    // The main thread's heap after a full collection, after the first 30 cases and at the end.
    assert.ok(Number(l.heap_growth_mb) < 10, why(l));
    assert.deepEqual(readdirSync(workDir), []);
  });

  it('serves 16 abusive client streams for 10 s: no failed well-formed request, every malformed one a 4xx in OpenAI shape, no file read, back to idle after', async () => {
    logs.length = 0;
    const l = await runAbuse({ seed: SEED, scale: 0.02, log, workDir }, 16, 10);
    assert.deepEqual(
      fields(l, ['requests_failed', 'traversal_leaks', 'kv_after', 'running_after', 'waiting_after', 'health_after', 'internal_errors', 'server_warnings']),
      { requests_failed: 0, traversal_leaks: 0, kv_after: 0, running_after: 0, waiting_after: 0, health_after: 200, internal_errors: 0, server_warnings: 0 },
      why(l),
    );
    assert.equal(l.malformed_4xx, l.malformed, why(l));
    assert.equal(l.traversal_refused, l.traversal_attempts, why(l));
    assert.equal(l.slow_readers_ok, l.slow_readers, why(l));
    for (const k of ['requests_ok', 'aborts', 'slow_readers', 'malformed', 'traversal_attempts']) assert.ok(Number(l[k]) > 0, `${k}: ${why(l)}`);
    assert.ok(Number(l.heap_after_mb) - Number(l.heap_before_mb) < 10, why(l));
    assert.deepEqual(readdirSync(workDir), []);
  });
});
