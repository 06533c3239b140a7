/** Collectives between worker-thread ranks against a serial reference built from every rank's input. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evenCounts } from '../../../src/parallel/runtime/comm.js';
import { RankError, runRanks, threadsPerRank } from '../../../src/parallel/runtime/ranks.js';
import { a2aCount, type BatteryResult, type CollectiveCase, input, unevenCounts } from './collective-rank.js';

const ENTRY = new URL('./collective-rank.js', import.meta.url);

function serialSum(size: number, n: number, salt: number): Float64Array {
  const s = new Float64Array(n);
  for (let r = 0; r < size; r++) input(r, n, salt).forEach((v, i) => (s[i]! += v));
  return s;
}

function assertClose(got: Float32Array, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

for (const size of [1, 2, 3, 4, 8]) {
  test(`collectives over ${size} rank(s): sums, gathers, uneven all-to-all, broadcast, nested groups; deterministic; bytes as the ring moves them`, { timeout: 60_000 }, async () => {
    const n = 1001; // not a multiple of any size: uneven ring chunks
    const res = await runRanks<CollectiveCase, BatteryResult>({ size, entry: ENTRY, data: { kind: 'battery', n }, backend: 'js', channelBytes: 4096 });
    const sum = serialSum(size, n, 1);
    const counts = unevenCounts(size), total = counts.reduce((a, b) => a + b, 0);
    const rs = serialSum(size, total, 2);
    let off = 0;
    for (let r = 0; r < size; r++) {
      const o = res[r]!;
      assertClose(o.allReduce, sum, `rank ${r} all-reduce`);
      assert.deepEqual(new Uint32Array(o.allReduce.buffer), new Uint32Array(res[0]!.allReduce.buffer), `rank ${r}: all-reduce bits equal rank 0's`);
      assert.deepEqual(new Uint32Array(o.allReduceAgain.buffer), new Uint32Array(o.allReduce.buffer), `rank ${r}: all-reduce repeats bit for bit`);
      assertClose(o.reduceScatter, rs.subarray(off, off + counts[r]!), `rank ${r} reduce-scatter`);
      off += counts[r]!;
      const gathered: number[] = [];
      for (let q = 0; q < size; q++) gathered.push(...input(q, counts[q]!, 3));
      assert.deepEqual([...o.allGather], gathered, `rank ${r} all-gather`);
      const want: number[] = [], wantCounts: number[] = [];
      for (let q = 0; q < size; q++) {
        wantCounts.push(a2aCount(q, r));
        for (let c = 0; c < a2aCount(q, r); c++) want.push(q * 1000 + r * 10 + c);
      }
      assert.deepEqual([...o.allToAll], want, `rank ${r} all-to-all`);
      assert.deepEqual(o.allToAllCounts, wantCounts, `rank ${r} all-to-all counts`);
      assert.deepEqual([...o.broadcast], [...input(1 % size, n, 4)], `rank ${r} broadcast`);
      if (size % 2 === 0) assertClose(o.nested, serialSum(size, 64, 5), `rank ${r} row-then-column all-reduce`);
      // bytes: what the ring and pairwise algorithms send, exactly
      const sent = (kind: string, group = 'world') => o.stats.find((s) => s.kind === kind && s.group === group)?.bytes ?? 0;
      if (size > 1) {
        const ec = evenCounts(n, size);
        assert.equal(sent('all-reduce'), 2 * 4 * (2 * n - ec[r]! - ec[(r + 1) % size]!), `rank ${r} all-reduce bytes`);
        assert.equal(sent('reduce-scatter'), 4 * (total - counts[r]!), `rank ${r} reduce-scatter bytes`);
        assert.equal(sent('all-gather'), 4 * (total - counts[(r + 1) % size]!), `rank ${r} all-gather bytes`);
        let a2a = 0;
        for (let j = 0; j < size; j++) if (j !== r) a2a += 4 * a2aCount(r, j);
        assert.equal(sent('all-to-all'), a2a, `rank ${r} all-to-all bytes`);
        assert.equal(sent('broadcast'), (r - (1 % size) + size) % size < size - 1 ? 4 * n : 0, `rank ${r} broadcast bytes`);
      } else assert.deepEqual(o.stats.filter((s) => s.bytes > 0), [], 'one rank sends nothing');
    }
  });
}

test('a failing rank stops every rank, and the error names it', { timeout: 60_000 }, async () => {
  await assert.rejects(
    runRanks({ size: 4, entry: ENTRY, data: { kind: 'fail', n: 100000 } satisfies CollectiveCase, backend: 'js', channelBytes: 4096, log: () => {} }),
    (e: unknown) => e instanceof RankError && e.rank === 3 && /deliberate failure/.test(e.message),
  );
});

test('a rank whose worker dies is named, and the others do not wait for it forever', { timeout: 60_000 }, async () => {
  await assert.rejects(
    runRanks({ size: 3, entry: ENTRY, data: { kind: 'crash', n: 100000 } satisfies CollectiveCase, backend: 'js', channelBytes: 4096, log: () => {} }),
    (e: unknown) => e instanceof RankError && e.rank === 2 && /exited \(code 3\)/.test(e.message),
  );
});

test('ranks share the cores: never more kernel threads than cores, at least one each', () => {
  assert.equal(threadsPerRank(1, 2), 2);
  assert.equal(threadsPerRank(2, 2), 1);
  assert.equal(threadsPerRank(8, 2), 1);
  assert.equal(threadsPerRank(4, 16), 4);
});
