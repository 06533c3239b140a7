/**
 * Collectives over the fabric's point-to-point channels, with the algorithms the planner's cost
 * model assumes (parallel/planner/comm.ts): ring reduce-scatter and all-gather ((n-1)/n of the
 * buffer sent per rank), all-reduce as the two in turn (2(n-1)/n), pairwise all-to-all with uneven
 * splits, a chain broadcast, and point-to-point send/recv. Every call adds the bytes this rank sent
 * to its statistics, per collective kind, group and phase: 'step' for the traffic of the training
 * step the planner models, 'control' for what runs inside `control(fn)` (loss sums, the stop
 * agreement, checkpoint gathers, ...). `skymoe plan --measure` sets the step traffic beside the
 * planner's prediction (parallel/traffic-check.ts).
 *
 * Deterministic: the ring fixes the order in which each chunk's partial sums are added, and every
 * rank ends with the same bits (the all-gather copies the reduced chunks), so a run repeats exactly.
 * As with NCCL, all ranks of a group must issue the group's collectives in the same order.
 */
import { unevenSplit } from '../../model/shard.js';
import { Fabric, type FabricSpec } from './fabric.js';

export type CollectiveKind = 'all-reduce' | 'all-gather' | 'reduce-scatter' | 'all-to-all' | 'broadcast' | 'p2p' | 'barrier' | 'counts';

/**
 * What traffic a collective belongs to: 'step' is the training step the planner's bytes model
 * predicts (TP seams, expert dispatch and combine, pipeline transfers, the gradient reduction and
 * ZeRO's parameter gather); 'control' is everything else (see `Communicator.control`).
 */
export type CommPhase = 'step' | 'control';

export interface CommStat {
  kind: CollectiveKind;
  group: string;
  phase: CommPhase;
  calls: number;
  /** Bytes this rank sent. */
  bytes: number;
  /** All-to-all: bytes of this rank's own segment, which stayed (routed copies whose expert is here). */
  kept: number;
}

/** Split n items over p parts as evenly as possible, the extra ones on the first parts (the TP head split's rule). */
export const evenCounts = unevenSplit;

function offsets(counts: readonly number[]): number[] {
  const o = [0];
  for (const c of counts) o.push(o[o.length - 1]! + c);
  return o;
}

const bytesOf = (a: Float32Array | Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** One rank's view of all ranks: groups, point-to-point transfers, statistics. */
export class Communicator {
  readonly fabric: Fabric;
  private readonly stats = new Map<string, CommStat>();
  private readonly groups = new Map<string, Group>();
  private phase: CommPhase = 'step';

  constructor(spec: FabricSpec, readonly rank: number) {
    this.fabric = new Fabric(spec, rank);
  }

  get size(): number {
    return this.fabric.size;
  }

  /** The group named `name` of these global ranks (in this order); this rank must be one of them. */
  group(name: string, ranks: readonly number[]): Group {
    const have = this.groups.get(name);
    if (have) {
      if (have.ranks.join() !== ranks.join()) throw new Error(`rank ${this.rank}: group "${name}" already has ranks [${have.ranks}], not [${ranks}]`);
      return have;
    }
    if (new Set(ranks).size !== ranks.length || ranks.some((r) => !Number.isInteger(r) || r < 0 || r >= this.size))
      throw new Error(`rank ${this.rank}: group "${name}": ranks [${ranks}] must be distinct ranks of [0, ${this.size})`);
    if (!ranks.includes(this.rank)) throw new Error(`rank ${this.rank}: not a member of group "${name}" [${ranks}]`);
    const g = new Group(this, name, ranks);
    this.groups.set(name, g);
    return g;
  }

  /** @internal */
  count(kind: CollectiveKind, group: string, bytes: number, kept = 0): void {
    const phase = this.phase;
    const key = `${kind}\u0000${group}\u0000${phase}`;
    const s = this.stats.get(key) ?? { kind, group, phase, calls: 0, bytes: 0, kept: 0 };
    s.calls++;
    s.bytes += bytes;
    s.kept += kept;
    this.stats.set(key, s);
  }

  /** Bytes sent by this rank so far, per collective kind and group. */
  statistics(): CommStat[] {
    return [...this.stats.values()].map((s) => ({ ...s }));
  }

  resetStatistics(): void {
    this.stats.clear();
  }

  /**
   * Run `fn`, counting the collectives it issues on this rank as 'control' traffic: what the
   * planner does not model (losses and router statistics summed for the metrics, gradient-norm
   * scalars, the stop agreement, setup broadcasts, evaluation, checkpoint gathers). Nests; a
   * promise keeps the phase until it settles (a rank runs one thing at a time).
   *
   * @example comm.control(() => world.allReduce(Float32Array.of(stop ? 1 : 0)));
   */
  control<R>(fn: () => R): R {
    const prev = this.phase;
    this.phase = 'control';
    let r: R;
    try {
      r = fn();
    } catch (e) {
      this.phase = prev;
      throw e;
    }
    if (r instanceof Promise) return r.finally(() => (this.phase = prev)) as R;
    this.phase = prev;
    return r;
  }

  /** Send floats to global rank `to` (pipeline activations and gradients). */
  send(to: number, data: Float32Array, group = 'p2p'): void {
    this.fabric.send(to, bytesOf(data));
    this.count('p2p', group, data.byteLength);
  }

  /** Receive exactly `out.length` floats from global rank `from`. */
  recv(from: number, out: Float32Array): void {
    this.fabric.recv(from, bytesOf(out));
  }

  /**
   * Send to `to` while receiving from `from`, both progressing (the 1F1B schedule's
   * send-forward-receive-backward: two stages exchanging cannot deadlock on a full channel).
   */
  sendRecv(to: number, data: Float32Array, from: number, out: Float32Array, group = 'p2p'): void {
    this.fabric.exchange(to, bytesOf(data), from, bytesOf(out));
    this.count('p2p', group, data.byteLength);
  }
}

/** An ordered set of ranks that run collectives together. */
export class Group {
  /** This rank's index in the group. */
  readonly index: number;
  readonly size: number;

  constructor(private readonly comm: Communicator, readonly name: string, readonly ranks: readonly number[]) {
    this.index = ranks.indexOf(comm.rank);
    this.size = ranks.length;
  }

  /** Run `fn` with this rank's collectives counted as control traffic (Communicator.control). */
  control<R>(fn: () => R): R {
    return this.comm.control(fn);
  }

  private next(): number {
    return this.ranks[(this.index + 1) % this.size]!;
  }

  private prev(): number {
    return this.ranks[(this.index - 1 + this.size) % this.size]!;
  }

  private at(i: number): number {
    return this.ranks[((i % this.size) + this.size) % this.size]!;
  }

  private checkCounts(counts: readonly number[], what: string): void {
    if (counts.length !== this.size || counts.some((c) => !Number.isInteger(c) || c < 0))
      throw new Error(`rank ${this.comm.rank}: ${what} on group "${this.name}": counts [${counts}] must be ${this.size} non-negative integers`);
  }

  /**
   * Sum of every rank's `data` over its chunk: rank i of the group gets the sum of chunk i
   * (counts[i] floats; default an even split). Ring: p - 1 steps, each sending one partial chunk.
   */
  reduceScatter(data: Float32Array, counts: readonly number[] = evenCounts(data.length, this.size)): Float32Array {
    this.checkCounts(counts, 'reduce-scatter');
    const off = offsets(counts), p = this.size;
    if (off[p] !== data.length) throw new Error(`rank ${this.comm.rank}: reduce-scatter on group "${this.name}": counts sum to ${off[p]}, data has ${data.length}`);
    const work = data.slice();
    if (p > 1) this.comm.count('reduce-scatter', this.name, this.reduceRing(work, counts, off));
    return work.slice(off[this.index]!, off[this.index + 1]!);
  }

  /** Every rank's chunk, concatenated in group order (rank i contributes counts[i] floats). Ring: p - 1 steps. */
  allGather(chunk: Float32Array, counts?: readonly number[]): Float32Array {
    const c = counts ?? new Array<number>(this.size).fill(chunk.length);
    this.checkCounts(c, 'all-gather');
    if (c[this.index] !== chunk.length) throw new Error(`rank ${this.comm.rank}: all-gather on group "${this.name}": my chunk has ${chunk.length} floats, counts say ${c[this.index]}`);
    const off = offsets(c);
    const out = new Float32Array(off[this.size]!);
    out.set(chunk, off[this.index]!);
    if (this.size > 1) this.comm.count('all-gather', this.name, this.gatherRing(out, off));
    return out;
  }

  /** In-place sum over the group: ring reduce-scatter, then ring all-gather (2(p-1)/p of the buffer sent per rank). */
  allReduce(data: Float32Array): Float32Array {
    if (this.size === 1) return data;
    const counts = evenCounts(data.length, this.size), off = offsets(counts);
    const sent = this.reduceRing(data, counts, off) + this.gatherRing(data, off);
    this.comm.count('all-reduce', this.name, sent);
    return data;
  }

  /**
   * In-place sum over the group added in rank order, x_0 + x_1 + ... + x_(p-1) for every element
   * whatever the buffer's length: an element's rounding does not depend on which chunk it falls in,
   * so a token's row sums alike in a batch of any size (batch-invariant inference; the ring's order
   * of addition follows the chunk). Each chunk goes pairwise to its owner, which adds the p parts in
   * rank order, then the ring all-gather: the ring's bytes, 2(p-1)/p of the buffer per rank.
   */
  allReduceOrdered(data: Float32Array): Float32Array {
    const p = this.size, me = this.index;
    if (p === 1) return data;
    const counts = evenCounts(data.length, p), off = offsets(counts), mine = counts[me]!;
    const parts = new Float32Array(mine * p);
    parts.set(data.subarray(off[me]!, off[me + 1]!), me * mine);
    let sent = 0;
    for (let s = 1; s < p; s++) {
      const to = (me + s) % p, from = (me - s + p) % p;
      const src = data.subarray(off[to]!, off[to + 1]!);
      this.comm.fabric.exchange(this.at(to), bytesOf(src), this.at(from), bytesOf(parts.subarray(from * mine, (from + 1) * mine)));
      sent += src.byteLength;
    }
    const acc = data.subarray(off[me]!, off[me + 1]!);
    acc.set(parts.subarray(0, mine));
    for (let r = 1; r < p; r++) {
      const part = parts.subarray(r * mine, (r + 1) * mine);
      for (let i = 0; i < mine; i++) acc[i] = acc[i]! + part[i]!;
    }
    sent += this.gatherRing(data, off);
    this.comm.count('all-reduce', this.name, sent);
    return data;
  }

  /**
   * The reduce-scatter ring over `work` in place: at step s this rank sends its partial sum of chunk
   * (i - 1 - s) and adds the one of chunk (i - 2 - s) it receives, so after p - 1 steps chunk i is
   * complete. Returns the bytes sent.
   */
  private reduceRing(work: Float32Array, counts: readonly number[], off: readonly number[]): number {
    const p = this.size, me = this.index;
    const tmp = new Float32Array(Math.max(...counts));
    let sent = 0;
    for (let s = 0; s < p - 1; s++) {
      const out = (((me - 1 - s) % p) + p) % p, inc = (((me - 2 - s) % p) + p) % p;
      const src = work.subarray(off[out]!, off[out + 1]!), dst = tmp.subarray(0, counts[inc]!);
      this.comm.fabric.exchange(this.next(), bytesOf(src), this.prev(), bytesOf(dst));
      sent += src.byteLength;
      const acc = work.subarray(off[inc]!, off[inc + 1]!);
      for (let i = 0; i < acc.length; i++) acc[i] = dst[i]! + acc[i]!;
    }
    return sent;
  }

  /** The all-gather ring over `out`, whose own chunk is filled: at step s send chunk (i - s), receive (i - s - 1). Returns the bytes sent. */
  private gatherRing(out: Float32Array, off: readonly number[]): number {
    const p = this.size, me = this.index;
    let sent = 0;
    for (let s = 0; s < p - 1; s++) {
      const send = (((me - s) % p) + p) % p, inc = (((me - s - 1) % p) + p) % p;
      const src = out.subarray(off[send]!, off[send + 1]!), dst = out.subarray(off[inc]!, off[inc + 1]!);
      this.comm.fabric.exchange(this.next(), bytesOf(src), this.prev(), bytesOf(dst));
      sent += src.byteLength;
    }
    return sent;
  }

  /**
   * Rank i sends sendCounts[j] floats (segment j of `data`) to rank j and receives recvCounts[j]
   * from it; the result is the received segments in group order. Pairwise: at step s rank i sends to
   * i + s and receives from i - s. recvCounts, when not known, are exchanged first (counted apart, as
   * "counts").
   */
  allToAll(data: Float32Array, sendCounts: readonly number[], recvCounts?: readonly number[]): { data: Float32Array; counts: number[] } {
    this.checkCounts(sendCounts, 'all-to-all');
    const so = offsets(sendCounts), p = this.size, me = this.index;
    if (so[p] !== data.length) throw new Error(`rank ${this.comm.rank}: all-to-all on group "${this.name}": send counts sum to ${so[p]}, data has ${data.length}`);
    const rc = recvCounts ? [...recvCounts] : this.exchangeCounts(sendCounts);
    this.checkCounts(rc, 'all-to-all');
    if (rc[me] !== sendCounts[me]) throw new Error(`rank ${this.comm.rank}: all-to-all on group "${this.name}": receives ${rc[me]} floats from itself but sends ${sendCounts[me]}`);
    const ro = offsets(rc);
    const out = new Float32Array(ro[p]!);
    out.set(data.subarray(so[me]!, so[me + 1]!), ro[me]!);
    let sent = 0;
    for (let s = 1; s < p; s++) {
      const to = (me + s) % p, from = (me - s + p) % p;
      const src = data.subarray(so[to]!, so[to + 1]!), dst = out.subarray(ro[from]!, ro[from + 1]!);
      this.comm.fabric.exchange(this.at(to), bytesOf(src), this.at(from), bytesOf(dst));
      sent += src.byteLength;
    }
    if (p > 1) this.comm.count('all-to-all', this.name, sent, 4 * (so[me + 1]! - so[me]!));
    return { data: out, counts: rc };
  }

  /** How many floats each rank will send me, given what I send each rank. */
  exchangeCounts(sendCounts: readonly number[]): number[] {
    const p = this.size, me = this.index;
    const out = new Int32Array(p);
    out[me] = sendCounts[me]!;
    const one = new Int32Array(1);
    for (let s = 1; s < p; s++) {
      const to = (me + s) % p, from = (me - s + p) % p;
      const src = Int32Array.of(sendCounts[to]!);
      this.comm.fabric.exchange(this.at(to), bytesOf(src), this.at(from), bytesOf(one));
      out[from] = one[0]!;
    }
    if (p > 1) this.comm.count('counts', this.name, 4 * (p - 1), 4);
    return [...out];
  }

  /**
   * Count vectors, pairwise: perRank[j] goes to group rank j, and each rank sends this one
   * `length` counts (expert parallelism: tokens per expert of the receiver). Counted as "counts".
   */
  exchangeCountVectors(perRank: readonly (readonly number[])[], length: number): number[][] {
    const p = this.size, me = this.index;
    if (perRank.length !== p) throw new Error(`rank ${this.comm.rank}: count exchange on group "${this.name}": ${perRank.length} vectors for ${p} ranks`);
    if (perRank[me]!.length !== length) throw new Error(`rank ${this.comm.rank}: count exchange on group "${this.name}": ${perRank[me]!.length} counts for itself, expected ${length}`);
    const out: number[][] = Array.from({ length: p }, () => []);
    out[me] = [...perRank[me]!];
    let sent = 0;
    for (let s = 1; s < p; s++) {
      const to = (me + s) % p, from = (me - s + p) % p;
      const src = Int32Array.from(perRank[to]!), dst = new Int32Array(length);
      this.comm.fabric.exchange(this.at(to), bytesOf(src), this.at(from), bytesOf(dst));
      out[from] = [...dst];
      sent += src.byteLength;
    }
    if (p > 1) this.comm.count('counts', this.name, sent, 4 * length);
    return out;
  }

  /** `data` of group rank `root` copied into every rank's `data` (a chain: root -> root+1 -> ...). */
  broadcast(data: Float32Array, root = 0): Float32Array {
    const p = this.size;
    if (p === 1) return data;
    const pos = (this.index - root + p) % p; // position in the chain
    const bytes = bytesOf(data);
    if (pos > 0) this.comm.fabric.recv(this.prev(), bytes);
    if (pos < p - 1) {
      this.comm.fabric.send(this.next(), bytes);
      this.comm.count('broadcast', this.name, data.byteLength);
    }
    return data;
  }

  /** A JSON value of group rank `root` on every rank (a length, then the UTF-8 bytes padded to whole floats, as raw bits). */
  broadcastJson<V>(value: V | undefined, root = 0): V {
    const mine = this.index === root ? new TextEncoder().encode(JSON.stringify(value)) : null;
    const len = new Int32Array([mine?.length ?? 0]);
    this.broadcast(new Float32Array(len.buffer), root);
    const words = new Uint8Array(Math.ceil(len[0]! / 4) * 4);
    if (mine) words.set(mine);
    this.broadcast(new Float32Array(words.buffer), root);
    return JSON.parse(new TextDecoder().decode(words.subarray(0, len[0]!))) as V;
  }

  /** Every rank of the group has arrived (dissemination: log2(p) rounds of one byte). */
  barrier(): void {
    const p = this.size;
    const token = new Uint8Array(1), got = new Uint8Array(1);
    let sent = 0;
    for (let k = 1; k < p; k *= 2) {
      this.comm.fabric.exchange(this.at(this.index + k), token, this.at(this.index - k), got);
      sent++;
    }
    if (p > 1) this.comm.count('barrier', this.name, sent);
  }
}
