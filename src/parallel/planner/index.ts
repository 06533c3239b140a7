/** The cluster planner: step model, placements, search, pipeline balance, Megatron-Core export, inference. */
export * from './gpus.js';
export * from './flops.js';
export * from './memory.js';
export * from './comm.js';
export * from './traffic.js';
export * from './placement.js';
export * from './pipeline.js';
export * from './setup.js';
export * from './step.js';
export * from './search.js';
export * from './megatron.js';
export * from './inference.js';
export * from './validation.js';
