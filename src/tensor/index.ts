/** The tensor engine: Tensor, autograd, ops. */
export { Tensor, Storage, ShapeError, TensorError, empty, numel, type DType } from './tensor.js';
export { Arena, setBackend, currentBackend, noGrad, withGrad, tidy, keep, isGradEnabled, rowInvariant, isRowInvariant } from './engine.js';
export { backward, checkpoint, checkpointRecomputations, GradNode, needsGrad, record } from './autograd.js';
export { Rng } from './random.js';
export * from './ops/create.js';
export * from './ops/elementwise.js';
export * from './ops/linalg.js';
export * from './ops/nn.js';
export * from './ops/indexing.js';
export * from './ops/reduce.js';
export { sliceRows, concatRows, reshape, writeSlice } from './ops/shape.js';
export * from './ops/optim.js';
export { Weight, ExpertWeights, MappedRegion, WeightDType, WEIGHT_DTYPE_NAMES, weightDTypeOf, type WeightDTypeName, type WeightOptions } from './weight.js';
