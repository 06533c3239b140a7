// Non-GEMM kernels (k_* exports); see ../op-kernels.ts for the JS side.
export * from './elementwise';
export * from './rows';
export * from './attention';
export * from './paged-attention';
