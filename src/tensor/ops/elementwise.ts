/** Elementwise ops: broadcasting binary ops, unary functions, scaling, fused SwiGLU. */
import { BinaryOp, UnaryOp } from '../../backend/backend.js';
import { record } from '../autograd.js';
import { empty, ShapeError, type Tensor } from '../tensor.js';
import { checkF32, sameBackend } from './check.js';

/** Numpy broadcasting of two shapes (at most 4 dims), or a ShapeError naming the op and both shapes. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  if (n > 4) throw new ShapeError(`${op}: broadcasting supports at most 4 dims, got [${a}] and [${b}]`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new ShapeError(`${op}: shapes [${a}] and [${b}] are not broadcastable`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

function pad4(s: readonly number[]): number[] {
  return [...Array(4 - s.length).fill(1), ...s];
}

/** Strides (elements) of a contiguous tensor of shape s viewed in the 4-D space out4 (0 = broadcast). */
function strides4(s: readonly number[], out4: readonly number[]): number[] {
  const s4 = pad4(s);
  const st = [0, 0, 0, 0];
  let acc = 1;
  for (let i = 3; i >= 0; i--) {
    st[i] = s4[i] === 1 && out4[i] !== 1 ? 0 : acc;
    acc *= s4[i]!;
  }
  return st;
}

function rawBinary(op: BinaryOp, a: Tensor, b: Tensor, name: string): Tensor {
  checkF32(name, a, b);
  const be = sameBackend(name, a, b);
  const shape = broadcastShapes(name, a.shape, b.shape);
  const out4 = pad4(shape);
  const out = empty(shape, 'f32', be);
  be.kernels.binary(op, a.ptr, b.ptr, out.ptr, out4, strides4(a.shape, out4), strides4(b.shape, out4));
  return out;
}

/** Sum a gradient of the broadcast shape back to `shape` (no copy when equal). */
export function reduceToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g.retainRef();
  const out = empty(shape, 'f32', g.backend);
  const g4 = pad4(g.shape);
  const o4 = pad4(shape);
  g.backend.kernels.reduceTo(g.ptr, out.ptr, g4, o4);
  return out;
}

export function add(a: Tensor, b: Tensor): Tensor {
  const out = rawBinary(BinaryOp.Add, a, b, 'add');
  return record('add', [a, b], out, [], (g) => [reduceToShape(g, a.shape), reduceToShape(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  const out = rawBinary(BinaryOp.Sub, a, b, 'sub');
  return record('sub', [a, b], out, [], (g) => {
    const gb = reduceToShape(g, b.shape);
    const neg = scaleRaw(gb, -1);
    gb.dispose();
    return [reduceToShape(g, a.shape), neg];
  });
}

export function mul(a: Tensor, b: Tensor): Tensor {
  const out = rawBinary(BinaryOp.Mul, a, b, 'mul');
  return record('mul', [a, b], out, [a, b], (g, [sa, sb]) => {
    const ga = rawBinary(BinaryOp.Mul, g, sb!, 'mul.backward');
    const gb = rawBinary(BinaryOp.Mul, g, sa!, 'mul.backward');
    const ra = reduceToShape(ga, a.shape), rb = reduceToShape(gb, b.shape);
    ga.dispose();
    gb.dispose();
    return [ra, rb];
  });
}

export function div(a: Tensor, b: Tensor): Tensor {
  const out = rawBinary(BinaryOp.Div, a, b, 'div');
  return record('div', [a, b], out, [b, out], (g, [sb, so]) => {
    const ga = rawBinary(BinaryOp.Div, g, sb!, 'div.backward');
    // d(a/b)/db = -(a/b)/b = -out/b
    const t = rawBinary(BinaryOp.Mul, g, so!, 'div.backward');
    const t2 = rawBinary(BinaryOp.Div, t, sb!, 'div.backward');
    const ra = reduceToShape(ga, a.shape);
    const rb0 = reduceToShape(t2, b.shape);
    const rb = scaleRaw(rb0, -1);
    for (const x of [ga, t, t2, rb0]) x.dispose();
    return [ra, rb];
  });
}

/** alpha * x without recording (used inside backward functions). */
export function scaleRaw(x: Tensor, alpha: number): Tensor {
  const out = empty(x.shape, 'f32', x.backend);
  x.backend.kernels.axpby(x.ptr, out.ptr, x.size, alpha, 0);
  return out;
}

/** alpha * x. */
export function scale(x: Tensor, alpha: number): Tensor {
  checkF32('scale', x);
  const out = scaleRaw(x, alpha);
  return record('scale', [x], out, [], (g) => [scaleRaw(g, alpha)]);
}

function unaryOp(op: UnaryOp, name: string) {
  return (x: Tensor): Tensor => {
    checkF32(name, x);
    const out = empty(x.shape, 'f32', x.backend);
    x.backend.kernels.unary(op, x.ptr, out.ptr, x.size);
    return record(name, [x], out, [x, out], (g, [sx, so]) => {
      const dx = empty(x.shape, 'f32', g.backend);
      g.backend.kernels.unaryBackward(op, sx!.ptr, so!.ptr, g.ptr, dx.ptr, x.size);
      return [dx];
    });
  };
}

export const exp = unaryOp(UnaryOp.Exp, 'exp');
export const log = unaryOp(UnaryOp.Log, 'log');
export const tanh = unaryOp(UnaryOp.Tanh, 'tanh');
export const sqrt = unaryOp(UnaryOp.Sqrt, 'sqrt');
export const square = unaryOp(UnaryOp.Square, 'square');
export const silu = unaryOp(UnaryOp.Silu, 'silu');
export const sigmoid = unaryOp(UnaryOp.Sigmoid, 'sigmoid');
export const neg = unaryOp(UnaryOp.Neg, 'neg');
export const rsqrt = unaryOp(UnaryOp.Rsqrt, 'rsqrt');
export const relu = unaryOp(UnaryOp.Relu, 'relu');

/** Fused SwiGLU: silu(gate) * up (the expert FFN's activation). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  checkF32('swiglu', gate, up);
  const be = sameBackend('swiglu', gate, up);
  if (gate.size !== up.size || gate.shape.some((d, i) => d !== up.shape[i]) || gate.rank !== up.rank)
    throw new ShapeError(`swiglu: gate [${gate.shape}] and up [${up.shape}] must have the same shape`);
  const out = empty(gate.shape, 'f32', be);
  be.kernels.swiglu(gate.ptr, up.ptr, out.ptr, out.size);
  return record('swiglu', [gate, up], out, [gate, up], (g, [sg, su]) => {
    const dg = empty(gate.shape, 'f32', be);
    const du = empty(up.shape, 'f32', be);
    be.kernels.swigluBackward(sg!.ptr, su!.ptr, g.ptr, dg.ptr, du.ptr, out.size);
    return [dg, du];
  });
}
