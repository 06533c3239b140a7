/** A rank's body for the collective tests (run by runRanks from collectives.test.ts). */
import type { CommStat } from '../../../src/parallel/runtime/comm.js';
import type { RankContext } from '../../../src/parallel/runtime/ranks.js';

export interface CollectiveCase {
  kind: 'battery' | 'fail' | 'crash';
  n: number;
}

/** Rank r's input for a named operation: deterministic, so the test can rebuild every rank's. */
export function input(rank: number, n: number, salt: number): Float32Array {
  let s = (rank + 1) * 2654435761 + salt * 40503;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

/** Floats rank `from` sends rank `to` in the all-to-all (some zero). */
export const a2aCount = (from: number, to: number) => (from * 3 + to * 5) % 4;
/** Uneven chunks, one of them empty. */
export const unevenCounts = (p: number) => Array.from({ length: p }, (_, i) => (i === 1 ? 0 : 2 * i + 3));

export interface BatteryResult {
  allReduce: Float32Array;
  allReduceAgain: Float32Array;
  reduceScatter: Float32Array;
  allGather: Float32Array;
  allToAll: Float32Array;
  allToAllCounts: number[];
  broadcast: Float32Array;
  nested: Float32Array;
  stats: CommStat[];
}

export async function rankMain(ctx: RankContext<CollectiveCase>): Promise<BatteryResult | null> {
  const { comm, rank, size, data } = ctx;
  const world = comm.group('world', Array.from({ length: size }, (_, i) => i));
  if (data.kind === 'fail') {
    world.barrier();
    if (rank === size - 1) throw new Error('deliberate failure');
    world.allReduce(input(rank, data.n, 9)); // waits for the failed rank: must be stopped, not hang
    return null;
  }
  if (data.kind === 'crash') {
    world.barrier();
    if (rank === size - 1) process.exit(3);
    world.allReduce(input(rank, data.n, 9));
    return null;
  }
  const allReduce = world.allReduce(input(rank, data.n, 1));
  const allReduceAgain = world.allReduce(input(rank, data.n, 1));
  const counts = unevenCounts(size);
  const total = counts.reduce((a, b) => a + b, 0);
  const reduceScatter = world.reduceScatter(input(rank, total, 2), counts);
  const allGather = world.allGather(input(rank, counts[rank]!, 3), counts);
  const sendCounts = Array.from({ length: size }, (_, j) => a2aCount(rank, j));
  const send = new Float32Array(sendCounts.reduce((a, b) => a + b, 0));
  let k = 0;
  for (let j = 0; j < size; j++) for (let c = 0; c < sendCounts[j]!; c++) send[k++] = rank * 1000 + j * 10 + c;
  const a2a = world.allToAll(send, sendCounts);
  const broadcast = world.broadcast(rank === 1 % size ? input(rank, data.n, 4) : new Float32Array(data.n), 1 % size);
  // a 2 x (size/2) mesh: reduce over rows, then over columns = the world sum
  let nested = input(rank, 64, 5);
  if (size % 2 === 0) {
    const half = size / 2;
    const row = comm.group(`row${Math.floor(rank / half)}`, Array.from({ length: half }, (_, i) => Math.floor(rank / half) * half + i));
    const col = comm.group(`col${rank % half}`, [rank % half, (rank % half) + half]);
    nested = col.allReduce(row.allReduce(nested));
  }
  world.barrier();
  return { allReduce, allReduceAgain, reduceScatter, allGather, allToAll: a2a.data, allToAllCounts: a2a.counts, broadcast, nested, stats: comm.statistics() };
}
