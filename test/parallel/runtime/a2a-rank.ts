/** Expert parallelism's differentiable all-to-all on 3 ranks with uneven and empty splits: each rank returns what it received and its input's gradient. */
import * as T from '../../../src/tensor/index.js';
import { allToAllRows } from '../../../src/parallel/runtime/autograd-comm.js';
import type { RankContext } from '../../../src/parallel/runtime/ranks.js';

/** SEND[r][j]: rows rank r sends rank j (rank 1 sends nothing; nobody sends rank 0 anything but itself). */
export const SEND = [
  [1, 0, 2],
  [0, 0, 0],
  [0, 3, 1],
];
export const H = 4;
/** Row i of rank r: values r*100 + i*10 + column. */
export const rowValue = (r: number, i: number, c: number) => r * 100 + i * 10 + c;
/** The loss weight of received row i on rank j, column c. */
export const weight = (j: number, i: number, c: number) => 1 + j + 0.5 * i + 0.25 * c;

export interface A2aResult {
  received: Float32Array;
  dx: Float32Array;
  counts: number[][];
}

export function rankMain(ctx: RankContext<null>): A2aResult {
  const g = ctx.comm.group('ep', [0, 1, 2]);
  const me = ctx.rank;
  const send = SEND[me]!, recv = SEND.map((row) => row[me]!);
  const rows = send.reduce((a, b) => a + b, 0);
  const x = T.parameter(T.tensor(Float32Array.from({ length: rows * H }, (_, k) => rowValue(me, Math.floor(k / H), k % H)), [rows, H]), 'x');
  const y = allToAllRows(x, g, send, recv);
  const w = T.tensor(Float32Array.from({ length: y.size }, (_, k) => weight(me, Math.floor(k / H), k % H)), y.shape);
  T.backward(T.sumAll(T.mul(y, w)));
  // per-expert count vectors: rank r tells rank j (which holds j + 1 experts here) r * 10 + e for each of j's experts
  const counts = g.exchangeCountVectors([0, 1, 2].map((j) => Array.from({ length: j + 1 }, (_, e) => me * 10 + e)), me + 1);
  return { received: y.toFloat32(), dx: x.grad ? x.grad.toFloat32() : new Float32Array(0), counts };
}
