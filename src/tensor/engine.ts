/**
 * Engine state for the current thread: the default backend, grad and row-invariant modes and
 * `tidy` scopes.
 */
import type { Backend } from '../backend/backend.js';
import type { GradNode } from './autograd.js';
import type { Tensor } from './tensor.js';

let backend: Backend | null = null;
/** Modes set for the extent of a call (noGrad, rowInvariant). */
const mode = { grad: true, rowInvariant: false };

function withMode<T>(key: keyof typeof mode, value: boolean, fn: () => T): T {
  const prev = mode[key];
  mode[key] = value;
  try {
    return fn();
  } finally {
    mode[key] = prev;
  }
}

interface Scope {
  tensors: Tensor[];
  nodes: GradNode[];
  kept: Tensor[];
}
const scopes: Scope[] = [];

/** Make `b` the backend new tensors are created on. */
export function setBackend(b: Backend): void {
  backend = b;
}

export function currentBackend(): Backend {
  if (backend === null) throw new Error('no backend selected: call setBackend(await createBackend()) first');
  return backend;
}

export function isGradEnabled(): boolean {
  return mode.grad;
}

/** Run fn recording autograd nodes even inside noGrad (a recomputation during backward). */
export function withGrad<T>(fn: () => T): T {
  return withMode('grad', true, fn);
}

/** Run fn without recording autograd nodes (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  return withMode('grad', false, fn);
}

export function isRowInvariant(): boolean {
  return mode.rowInvariant;
}

/**
 * Run fn with row-invariant products: inside, `linear` and `groupedMatmul` give every row of their
 * input the bits it would get alone, whatever the other rows, their number, the expert group sizes
 * and the thread count (Kernels.linearW's rowInvariant; slower than the GEMM for many rows). A
 * continuous-batching server wraps its forward in it so a request's tokens do not depend on which
 * requests share its batch. f32 tensor weights (the router, f32 checkpoints) take the weight
 * kernels too, when no gradient is needed; a product that needs one keeps the autograd GEMM.
 *
 * @example
 * const logits = T.noGrad(() => T.rowInvariant(() => model.decode(ids, cache)));
 */
export function rowInvariant<T>(fn: () => T): T {
  return withMode('rowInvariant', true, fn);
}

/**
 * A scope that outlives one call: every tensor and graph node created inside its `run` calls lives
 * until `dispose`. A pipeline stage keeps a micro-batch's forward this way until its backward,
 * with other micro-batches' forwards and backwards in between (tidy's scopes nest; these do not
 * have to). Tensors passed to keep() inside are the caller's, as with tidy.
 */
export class Arena {
  private readonly scope: Scope = { tensors: [], nodes: [], kept: [] };
  private disposed = false;

  run<T>(fn: () => T): T {
    if (this.disposed) throw new Error('Arena.run: the arena was disposed');
    scopes.push(this.scope);
    try {
      return fn();
    } finally {
      scopes.pop();
    }
  }

  /** Release the graph and every tensor created inside. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const n of this.scope.nodes) n.release();
    for (const t of this.scope.tensors) t.dispose();
    this.scope.nodes.length = 0;
    this.scope.tensors.length = 0;
  }
}

/** Called by every Tensor constructor: the innermost scope owns it. */
export function track(t: Tensor): void {
  const s = scopes[scopes.length - 1];
  if (s) s.tensors.push(t);
}

/** Called when a node is recorded, so that an abandoned graph is released with its scope. */
export function trackNode(n: GradNode): void {
  const s = scopes[scopes.length - 1];
  if (s) s.nodes.push(n);
}

/**
 * Take t out of every tidy scope: the caller owns it from now on and disposes it (parameters,
 * caches, anything that outlives a step). Its graph, if any, stays alive too.
 */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) {
    const i = s.tensors.lastIndexOf(t);
    if (i >= 0) s.tensors.splice(i, 1);
  }
  const s = scopes[scopes.length - 1];
  if (s) s.kept.push(t);
  return t;
}

/**
 * Run fn; dispose every tensor it created except those in its result (searched through arrays
 * and plain objects; they move to the enclosing scope, if any) and those passed to keep(). Graph nodes created in fn that no surviving
 * tensor can reach are released, so a forward pass without backward leaks nothing.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { tensors: [], nodes: [], kept: [] };
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    const keptNodes = reachableNodes(scope.kept);
    const outer = scopes[scopes.length - 1];
    for (const n of scope.nodes) {
      if (keptNodes.has(n)) outer?.nodes.push(n);
      else n.release();
    }
    outer?.kept.push(...scope.kept);
    for (const t of scope.tensors) t.dispose();
    throw e;
  }
  scopes.pop();
  const survivors = new Set<Tensor>();
  collect(result, survivors, 0);
  const outer = scopes[scopes.length - 1];
  // Nodes reachable from survivors (or from survivors' graphs) stay alive.
  const reachable = reachableNodes([...survivors, ...scope.kept]);
  for (const n of scope.nodes) {
    if (reachable.has(n)) outer?.nodes.push(n);
    else n.release();
  }
  // Kept tensors' graphs must survive the enclosing scopes too.
  outer?.kept.push(...scope.kept);
  for (const t of scope.tensors) {
    if (survivors.has(t)) outer?.tensors.push(t);
    else t.dispose();
  }
  return result;
}

function reachableNodes(from: Iterable<Tensor>): Set<GradNode> {
  const reachable = new Set<GradNode>();
  const stack: GradNode[] = [];
  for (const t of from) if (t.node) stack.push(t.node);
  while (stack.length) {
    const n = stack.pop()!;
    if (reachable.has(n)) continue;
    reachable.add(n);
    for (const i of n.inputs) if (i.node) stack.push(i.node);
  }
  return reachable;
}

function collect(v: unknown, out: Set<Tensor>, depth: number): void {
  if (v === null || typeof v !== 'object' || depth > 8) return;
  if (isTensor(v)) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collect(x, out, depth + 1);
  else if (v instanceof Map) for (const x of v.values()) collect(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, depth + 1);
}

function isTensor(v: object): v is Tensor {
  return 'shape' in v && 'dtype' in v && 'node' in v && typeof (v as Tensor).dispose === 'function';
}
