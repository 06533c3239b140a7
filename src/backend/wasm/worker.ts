/**
 * A wasm kernel worker: instantiates the shared module on the shared memory, then loops forever:
 * wait for the control block's generation to change, run its share of the kernel, decrement the
 * pending counter. See pool.ts for the calling side.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  ARGS_OFF, CONTROL_BYTES, ERR_MAX_CHARS, ERR_OFF, EXIT, GEN, KERNEL, MAX_ARGS, NARGS, PENDING, SPIN,
  kernelTable, writeError,
} from './control-block.js';

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: number;
  tid: number;
  nthreads: number;
}

const init = workerData as WorkerInit;
const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
const { fns } = kernelTable(instance);
// The control block lies below the heap, so views on the first buffer stay valid after growth.
const buffer = init.memory.buffer;
const i32 = new Int32Array(buffer, init.control, CONTROL_BYTES >> 2);
const f64 = new Float64Array(buffer, init.control + ARGS_OFF, MAX_ARGS);
const u16 = new Uint16Array(buffer, init.control + ERR_OFF, ERR_MAX_CHARS);
const call: number[] = [init.tid, init.nthreads];

let seen = Atomics.load(i32, GEN);
parentPort!.postMessage('ready');

for (;;) {
  let gen = Atomics.load(i32, GEN);
  for (let spin = 0; gen === seen && spin < SPIN; spin++) gen = Atomics.load(i32, GEN);
  while (gen === seen) {
    Atomics.wait(i32, GEN, seen);
    gen = Atomics.load(i32, GEN);
  }
  seen = gen;
  if (Atomics.load(i32, EXIT) !== 0) break;
  const fn = fns[Atomics.load(i32, KERNEL)]!;
  const nargs = Atomics.load(i32, NARGS);
  call.length = 2 + nargs;
  for (let i = 0; i < nargs; i++) call[2 + i] = f64[i]!;
  try {
    fn(...call);
  } catch (e) {
    writeError(i32, u16, `thread ${init.tid}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  if (Atomics.sub(i32, PENDING, 1) === 1) Atomics.notify(i32, PENDING);
}
