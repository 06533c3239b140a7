/** The model: config, presets, parameter counts, the Skywork-MoE network, MoE routing, KV cache. */
export * from './config.js';
export * from './presets.js';
export * from './params.js';
export * from './skywork-moe.js';
export * from './moe.js';
export * from './kv-cache.js';
