/**
 * The one order every sampling filter and every tie-break uses: descending logit, ties lower id
 * first. Selection of the best n ids without sorting the vocabulary (a bounded heap), and sort keys
 * that let a typed array's native numeric sort put candidates in that order.
 */

/** Ids up to 2^21 (2,097,152) fit beside a 32-bit logit key in a float64's 53-bit mantissa. */
export const MAX_VOCAB = 2 ** 21;

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * A number whose ascending order is the rank order of (logit, id): descending logit, ties lower id
 * first. The logit is a float32 value (as the logits are); its bits map to an unsigned integer
 * that grows with the value (sign flipped for positives, all bits flipped for negatives), so
 * -Infinity ranks last and -0 ties with +0.
 */
export function rankKey(logit: number, id: number): number {
  F32[0] = logit === 0 ? 0 : logit;
  const u = U32[0]!;
  const ascending = u & 0x80000000 ? ~u >>> 0 : (u | 0x80000000) >>> 0;
  return (0xffffffff - ascending) * MAX_VOCAB + id;
}

export function idOfKey(key: number): number {
  return key % MAX_VOCAB;
}

/** `a` ranks after `b` in x: a lower logit, or the same logit and a higher id. */
function ranksAfter(x: Float32Array, a: number, b: number): boolean {
  const xa = x[a]!;
  const xb = x[b]!;
  return xa < xb || (xa === xb && a > b);
}

/** Restore the heap below i: heap[0] is the id ranking last among the kept ones. */
function siftDown(x: Float32Array, heap: Int32Array, n: number, i: number): void {
  const id = heap[i]!;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && ranksAfter(x, heap[r]!, heap[l]!) ? r : l;
    if (!ranksAfter(x, heap[c]!, id)) break;
    heap[i] = heap[c]!;
    i = c;
  }
  heap[i] = id;
}

/** The first i in [from, V) with x[i] > t, else V: the scan is a loop of its own (2x faster in V8). */
function firstAbove(x: Float32Array, from: number, V: number, t: number): number {
  for (let i = from; i < V; i++) if (x[i]! > t) return i;
  return V;
}

/**
 * The n best ids of x[0, V) in rank order, written to out[0, n). A bounded heap of the n best so
 * far: one comparison per id against the worst kept (O(V) for random orders, O(V log n) at worst),
 * then a native sort of the n keys. `heap` and `keys` are scratch of at least n entries.
 */
export function selectTop(x: Float32Array, V: number, n: number, out: Int32Array, heap: Int32Array, keys: Float64Array): void {
  for (let i = 0; i < n; i++) heap[i] = i;
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(x, heap, n, i);
  // Ids come in ascending order, so one tying with the worst kept ranks after it: only a strictly
  // higher logit enters.
  for (let i = firstAbove(x, n, V, x[heap[0]!]!); i < V; i = firstAbove(x, i + 1, V, x[heap[0]!]!)) {
    heap[0] = i;
    siftDown(x, heap, n, 0);
  }
  for (let j = 0; j < n; j++) keys[j] = rankKey(x[heap[j]!]!, heap[j]!);
  keys.subarray(0, n).sort();
  for (let j = 0; j < n; j++) out[j] = idOfKey(keys[j]!);
}

/** The first id of the highest logit in x[0, V) (greedy decoding's choice). */
export function argmax(x: Float32Array, V: number): number {
  let best = 0;
  let bestLogit = x[0]!;
  for (let i = 1; i < V; i++) {
    if (x[i]! > bestLogit) {
      bestLogit = x[i]!;
      best = i;
    }
  }
  return best;
}
