/**
 * skymoe: Skywork-MoE-style Mixture-of-Experts models in TypeScript.
 *
 * @example
 * ```ts
 * import { createBackend, setBackend, tensor, matmul } from 'skymoe';
 * setBackend(await createBackend({ name: 'wasm', threads: 2 }));
 * const y = matmul(tensor([1, 2, 3, 4], [2, 2]), tensor([1, 0, 0, 1], [2, 2]));
 * console.log(y.toArray()); // Float32Array [1, 2, 3, 4]
 * ```
 */
export { createBackend, defaultThreads, type BackendOptions } from './backend/index.js';
export type { Backend, BackendName, Kernels, MappedFile, Ptr, WeightRef } from './backend/backend.js';
export { BackendError, BinaryOp, UnaryOp, GroupedMode } from './backend/backend.js';
export { Heap, HeapError, type HeapStats } from './backend/heap.js';
export { selfcheck } from './backend/selfcheck.js';
export * from './tensor/index.js';
export * as model from './model/index.js';
export * as io from './io/index.js';
export * as train from './train/index.js';
export * as upcycling from './upcycle/index.js';
export * as planner from './parallel/planner/index.js';
export * as report from './report/index.js';
export * as quant from './quant/index.js';
export * as serve from './serve/index.js';
export { generateTokens, type GenerateOptions } from './infer/generate.js';
export { sampleToken, logSoftmax, type SamplingOptions } from './infer/sample.js';
