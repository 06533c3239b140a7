/**
 * Point-to-point byte channels between the ranks of one process, in one SharedArrayBuffer: what
 * NCCL's transport is to a GPU cluster, for worker-thread ranks. Every collective of comm.ts is
 * built from these sends and receives, so the bytes they count are bytes that really moved from
 * one rank's memory to another's.
 *
 * Layout: a control block of Int32 (the abort word, then one doorbell per rank), then one channel
 * per ordered pair (from, to): two counters (bytes written by the sender, bytes read by the
 * receiver; both wrap modulo 2^32) and a ring of `capacity` bytes. A rank that cannot progress
 * waits on its own doorbell; whoever writes into its inbound channels or drains its outbound ones
 * rings it. Any rank can abort the fabric (a rank failed): every wait then throws FabricAborted.
 */

export class FabricAborted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FabricAborted';
  }
}

/** What a rank needs to open the fabric (structured-cloneable: passed to workers). */
export interface FabricSpec {
  sab: SharedArrayBuffer;
  size: number;
  capacity: number;
}

const CTRL_ABORT = 0;
const CH_TAIL = 0; // bytes written by the sender
const CH_HEAD = 1; // bytes read by the receiver
const CH_HEADER = 16; // bytes of a channel's counters (padded)
/** How long one wait may block before the abort word is checked again (ms). */
const WAIT_SLICE_MS = 200;

export function createFabric(size: number, capacity = 1 << 20): FabricSpec {
  if (!Number.isInteger(size) || size < 1 || size > 256) throw new RangeError(`fabric: size must be an integer in [1, 256], got ${size}`);
  if (!Number.isInteger(capacity) || capacity < 64 || capacity > 1 << 28 || (capacity & (capacity - 1)) !== 0)
    throw new RangeError(`fabric: capacity must be a power of two in [64, 2^28], got ${capacity}`);
  const ctrl = align(4 * (1 + size), 64);
  const sab = new SharedArrayBuffer(ctrl + size * size * (CH_HEADER + capacity));
  return { sab, size, capacity };
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** One rank's end of the fabric. */
export class Fabric {
  readonly size: number;
  private readonly ctrl: Int32Array;
  private readonly counters: Int32Array[] = []; // by channel index from * size + to
  private readonly rings: Uint8Array[] = [];
  private readonly capacity: number;

  constructor(spec: FabricSpec, readonly rank: number) {
    this.size = spec.size;
    this.capacity = spec.capacity;
    if (!Number.isInteger(rank) || rank < 0 || rank >= spec.size) throw new RangeError(`fabric: rank ${rank} out of [0, ${spec.size})`);
    const ctrlBytes = align(4 * (1 + spec.size), 64);
    this.ctrl = new Int32Array(spec.sab, 0, 1 + spec.size);
    for (let c = 0; c < spec.size * spec.size; c++) {
      const base = ctrlBytes + c * (CH_HEADER + spec.capacity);
      this.counters.push(new Int32Array(spec.sab, base, 2));
      this.rings.push(new Uint8Array(spec.sab, base + CH_HEADER, spec.capacity));
    }
  }

  /** Stop every rank: their waits throw FabricAborted naming the failed rank (default: this one). */
  abort(failed = this.rank): void {
    Atomics.compareExchange(this.ctrl, CTRL_ABORT, 0, 1 + failed); // the first failure is the one named
    for (let r = 0; r < this.size; r++) Atomics.notify(this.ctrl, 1 + r);
  }

  get aborted(): boolean {
    return Atomics.load(this.ctrl, CTRL_ABORT) !== 0;
  }

  private checkAbort(): void {
    const a = Atomics.load(this.ctrl, CTRL_ABORT);
    if (a !== 0) throw new FabricAborted(`rank ${this.rank}: stopped because rank ${a - 1} failed`);
  }

  private ring(r: number): void {
    Atomics.add(this.ctrl, 1 + r, 1);
    Atomics.notify(this.ctrl, 1 + r);
  }

  /** Bytes that can be written now into channel (this -> to). */
  private pushSome(to: number, src: Uint8Array, off: number): number {
    const c = this.rank * this.size + to, ctr = this.counters[c]!, ring = this.rings[c]!;
    const tail = Atomics.load(ctr, CH_TAIL) >>> 0, head = Atomics.load(ctr, CH_HEAD) >>> 0;
    const used = (tail - head) >>> 0, free = this.capacity - used;
    const n = Math.min(free, src.length - off);
    if (n <= 0) return 0;
    const at = tail & (this.capacity - 1), first = Math.min(n, this.capacity - at);
    ring.set(src.subarray(off, off + first), at);
    if (n > first) ring.set(src.subarray(off + first, off + n), 0);
    Atomics.store(ctr, CH_TAIL, (tail + n) | 0);
    this.ring(to);
    return n;
  }

  /** Bytes that can be read now from channel (from -> this). */
  private pullSome(from: number, dst: Uint8Array, off: number): number {
    const c = from * this.size + this.rank, ctr = this.counters[c]!, ring = this.rings[c]!;
    const tail = Atomics.load(ctr, CH_TAIL) >>> 0, head = Atomics.load(ctr, CH_HEAD) >>> 0;
    const n = Math.min((tail - head) >>> 0, dst.length - off);
    if (n <= 0) return 0;
    const at = head & (this.capacity - 1), first = Math.min(n, this.capacity - at);
    dst.set(ring.subarray(at, at + first), off);
    if (n > first) dst.set(ring.subarray(0, n - first), off + first);
    Atomics.store(ctr, CH_HEAD, (head + n) | 0);
    this.ring(from);
    return n;
  }

  /**
   * Send `src` to rank `to` while receiving `dst.length` bytes from rank `from`, progressing both
   * so that a ring of ranks all doing this cannot deadlock on a full channel. Either side may be
   * empty (a plain send or receive). Messages on one channel arrive in order.
   */
  exchange(to: number, src: Uint8Array, from: number, dst: Uint8Array): void {
    if (src.length && (to === this.rank || to < 0 || to >= this.size)) throw new RangeError(`fabric: rank ${this.rank} cannot send to ${to}`);
    if (dst.length && (from === this.rank || from < 0 || from >= this.size)) throw new RangeError(`fabric: rank ${this.rank} cannot receive from ${from}`);
    let sent = 0, got = 0;
    const bell = 1 + this.rank;
    while (sent < src.length || got < dst.length) {
      const seen = Atomics.load(this.ctrl, bell);
      this.checkAbort();
      let moved = 0;
      if (sent < src.length) {
        const n = this.pushSome(to, src, sent);
        sent += n;
        moved += n;
      }
      if (got < dst.length) {
        const n = this.pullSome(from, dst, got);
        got += n;
        moved += n;
      }
      if (moved === 0) Atomics.wait(this.ctrl, bell, seen, WAIT_SLICE_MS);
    }
  }

  send(to: number, src: Uint8Array): void {
    this.exchange(to, src, -1, EMPTY);
  }

  recv(from: number, dst: Uint8Array): void {
    this.exchange(-1, EMPTY, from, dst);
  }
}

const EMPTY = new Uint8Array(0);
