/** The Megatron-Core training kit (`skymoe export megatron`) and its way back (`skymoe import megatron`). */
export * from './kit-config.js';
export * from './source.js';
export * from './weights.js';
export * from './scripts.js';
export * from './kit.js';
export * from './import.js';
