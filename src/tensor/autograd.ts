/**
 * Reverse-mode autograd: each differentiable op records a GradNode (its inputs, the tensors it
 * saved, and a backward function that maps the output gradient to input gradients using ops in
 * no-grad mode). `backward(loss)` walks the nodes in reverse topological order.
 */
import { isGradEnabled, noGrad, trackNode, withGrad } from './engine.js';
import { empty, ShapeError, type Tensor } from './tensor.js';

export type BackwardFn = (gradOut: Tensor, saved: readonly Tensor[]) => readonly (Tensor | null)[];

export class GradNode {
  /** References to saved tensors, owned by the node until release(). */
  private saved: Tensor[];
  private released = false;
  constructor(
    readonly op: string,
    readonly inputs: readonly Tensor[],
    readonly output: Tensor,
    saved: readonly Tensor[],
    private readonly fn: BackwardFn,
  ) {
    this.saved = saved.map((t) => t.retainRef());
  }

  run(gradOut: Tensor): readonly (Tensor | null)[] {
    if (this.released) throw new Error(`autograd: the graph of '${this.op}' was already released (backward called twice?)`);
    return this.fn(gradOut, this.saved);
  }

  /** Free the saved tensors and unlink the output (it becomes a leaf without history). */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const t of this.saved) t.dispose();
    this.saved = [];
    if (this.output.node === this) this.output.node = null;
  }
}

/** True when a tensor takes part in differentiation (a parameter or the result of one). */
export function needsGrad(t: Tensor): boolean {
  return t.requiresGrad || t.node !== null;
}

/**
 * Record the op that produced `out` when grad mode is on and some input needs a gradient.
 * `saved` are the tensors backward reads (retained here). Returns out.
 */
export function record(op: string, inputs: readonly Tensor[], out: Tensor, saved: readonly Tensor[], fn: BackwardFn): Tensor {
  if (!isGradEnabled() || !inputs.some(needsGrad)) return out;
  const node = new GradNode(op, inputs, out, saved, fn);
  out.node = node;
  trackNode(node);
  return out;
}

/**
 * Backpropagate from `root` (a scalar unless `gradOut` is given). Gradients of leaves with
 * requiresGrad accumulate into `leaf.grad` (so micro-batches add up until zeroGrad); the graph is
 * released afterwards.
 */
export function backward(root: Tensor, gradOut?: Tensor): void {
  if (root.node === null) {
    if (root.requiresGrad) throw new Error('backward: root is a leaf; nothing to differentiate');
    throw new Error('backward: root has no graph (created in noGrad, or its graph was released)');
  }
  if (!gradOut && root.size !== 1) throw new ShapeError(`backward: root has shape [${root.shape}]; pass gradOut for a non-scalar root`);
  // Topological order by iterative DFS.
  const order: GradNode[] = [];
  const seen = new Set<GradNode>();
  const stack: [GradNode, number][] = [[root.node, 0]];
  seen.add(root.node);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [n, i] = top;
    if (i < n.inputs.length) {
      top[1]++;
      const c = n.inputs[i]!.node;
      if (c && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(n);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  try {
    noGrad(() => {
      const seed = gradOut ?? fillLike(root, 1);
      grads.set(root, seed);
      for (let o = order.length - 1; o >= 0; o--) {
        const n = order[o]!;
        const g = grads.get(n.output);
        if (!g) continue;
        grads.delete(n.output);
        const gin = n.run(g);
        if (g !== gradOut) g.dispose();
        for (let i = 0; i < n.inputs.length; i++) {
          const x = n.inputs[i]!;
          const gx = gin[i];
          if (!gx) continue;
          if (!needsGrad(x)) {
            gx.dispose();
            continue;
          }
          if (gx.size !== x.size) throw new ShapeError(`autograd: '${n.op}' produced a gradient of shape [${gx.shape}] for an input of shape [${x.shape}]`);
          if (x.node === null) accumulateLeaf(x, gx);
          else {
            const prev = grads.get(x);
            if (prev) {
              // Out of place: a gradient may share storage with another input's gradient or with
              // the caller's gradOut (reduceToShape returns a reference when shapes match).
              const sum = empty(x.shape, 'f32', x.backend, false);
              x.backend.kernels.axpby(prev.ptr, sum.ptr, sum.size, 1, 0);
              addInto(sum, gx);
              prev.dispose();
              gx.dispose();
              grads.set(x, sum);
            } else grads.set(x, gx);
          }
        }
      }
    });
  } finally {
    for (const g of grads.values()) if (g !== gradOut) g.dispose();
    for (const n of order) n.release();
  }
}

function accumulateLeaf(x: Tensor, gx: Tensor): void {
  if (x.grad === null) {
    const g = empty(x.shape, 'f32', x.backend, false);
    x.backend.kernels.axpby(gx.ptr, g.ptr, g.size, 1, 0);
    x.grad = g;
  } else addInto(x.grad, gx);
  gx.dispose();
}

/** dst += src, elementwise, same size. */
export function addInto(dst: Tensor, src: Tensor): void {
  dst.backend.kernels.axpby(src.ptr, dst.ptr, dst.size, 1, 1);
}

function fillLike(t: Tensor, v: number): Tensor {
  const out = empty(t.shape, 'f32', t.backend, false);
  out.backend.kernels.fill(out.ptr, out.size, v, false);
  return out;
}

let recomputations = 0;
/** How many checkpointed functions have run again in backwards on this thread (a figure for schedules and tests). */
export function checkpointRecomputations(): number {
  return recomputations;
}

/**
 * Activation recomputation (Megatron's selective recompute, Chen et al. 2016): y = fn(inputs)
 * without keeping fn's intermediate tensors; the backward runs fn again with autograd on the saved
 * inputs and backpropagates through it. Costs one more forward of fn; saves what fn keeps for its
 * backward. fn must be deterministic (the kernels are). Parameters fn reads directly receive their
 * gradients during the recomputation.
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[]): Tensor {
  if (!isGradEnabled() || !inputs.some(needsGrad)) return fn(...inputs);
  const out = noGrad(() => fn(...inputs));
  return record('checkpoint', inputs, out, inputs, (gy, saved) => {
    recomputations++;
    // fresh leaves over the saved inputs' storage: the recomputed graph ends at them
    const leaves = saved.map((t, i) => {
      const v = t.view(t.shape);
      v.requiresGrad = needsGrad(inputs[i]!);
      return v;
    });
    try {
      withGrad(() => backward(fn(...leaves), gy));
      return leaves.map((l) => {
        const g = l.grad;
        l.grad = null;
        return g;
      });
    } finally {
      for (const l of leaves) l.dispose();
    }
  });
}
