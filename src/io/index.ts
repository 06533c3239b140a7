/** Checkpoint file formats: dtype codecs, safetensors files, sharded Hugging Face checkpoints. */
export * from './dtypes.js';
export * from './dtype-bytes.js';
export * from './atomic.js';
export * from './safetensors.js';
export * from './sharded.js';
export * from './tokenizer/index.js';
export * from './hf.js';
export * from './layout.js';
export * from './weights.js';
