/**
 * Collective costs with the ring / pairwise model: an all-reduce of B bytes over n ranks moves
 * 2(n-1)/n B per rank, an all-gather or reduce-scatter (n-1)/n B, an all-to-all (n-1)/n B, each at
 * the slowest link the group crosses, plus a start-up latency per collective (Thakur et al. 2005,
 * the model NCCL's own tuning uses). Ranks are ordered TP, then DP, then PP (Megatron-Core's
 * default order tp-cp-ep-dp-pp), so a group of consecutive ranks stays inside a node while it fits.
 */
import type { Cluster } from './gpus.js';

export type Collective = 'all-reduce' | 'all-gather' | 'reduce-scatter' | 'all-to-all' | 'broadcast' | 'p2p';

/** Bandwidth (bytes/s) and latency of a group of `size` ranks spaced `stride` ranks apart. */
export function groupLink(c: Cluster, size: number, stride = 1): { bw: number; latency: number; crossesNodes: boolean } {
  const span = (size - 1) * stride + 1;
  const crossesNodes = size > 1 && (span > c.gpusPerNode || stride >= c.gpusPerNode);
  return crossesNodes ? { bw: c.interNodeGBs * 1e9, latency: c.interLatency, crossesNodes } : { bw: c.intraNodeGBs * 1e9, latency: c.intraLatency, crossesNodes };
}

/** Seconds for one collective of `bytes` (the full buffer one rank holds or receives) over `size` ranks. */
export function collectiveTime(c: Cluster, kind: Collective, bytes: number, size: number, stride = 1): number {
  if (size <= 1 || bytes <= 0) return 0;
  const { bw, latency } = groupLink(c, size, stride);
  const frac = (size - 1) / size;
  // a chain broadcast: every rank but the last forwards the whole buffer, pipelined
  const volume = kind === 'all-reduce' ? 2 * frac * bytes : kind === 'p2p' || kind === 'broadcast' ? bytes : frac * bytes;
  const steps = kind === 'all-reduce' ? 2 * (size - 1) : kind === 'p2p' ? 1 : size - 1;
  // ring latency grows with the steps; NCCL's tree / pipelined rings cap it, so count log2 for large groups
  return volume / bw + latency * Math.min(steps, 2 * Math.ceil(Math.log2(size)) + 2);
}

/** One point-to-point transfer between neighbouring pipeline stages `stride` ranks apart. */
export function p2pTime(c: Cluster, bytes: number, stride: number): number {
  if (bytes <= 0) return 0;
  const intra = stride < c.gpusPerNode;
  return bytes / ((intra ? c.intraNodeGBs : c.interNodeGBs) * 1e9) + (intra ? c.intraLatency : c.interLatency);
}
