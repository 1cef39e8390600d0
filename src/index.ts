/**
 * meshtrain: distributed training for TypeScript.
 * @example
 * import { tensor, tidy } from 'meshtrain';
 * const x = tensor([[1, 2], [3, 4]], { requiresGrad: true });
 * tidy(() => x.mul(x).sum().backward());
 */
export { Tensor, type TensorOptions } from './tensor/tensor.ts';
export { type DType, DTYPES } from './tensor/dtype.ts';
export { memoryStats, resetPeakMemoryStats, liveStorages, allocatorStats, emptyCache, setCacheLimit, CPU_OFFLOAD_POOL, type AllocatorStats, type MemoryTag, type MemoryStats, type Device } from './tensor/storage.ts';
export { tidy, keep } from './tensor/scope.ts';
export { cudaLibraries, cudaDeviceCount, cudaIsAvailable, cudaAllocatorStats, cudaEmptyCache, cudaSynchronize, cudaDeviceProperties, type CudaDeviceProperties, type CudaLibraries, type LibraryStatus, type CudaAllocatorStats } from './tensor/device.ts';
export { withTag } from './tensor/tag_context.ts';
export { manualSeed, getRngState, setRngState, type RngState } from './tensor/random.ts';
export { noGrad, enableGrad, isGradEnabled } from './autograd/grad_mode.ts';
export * from './ops/index.ts';
export { native } from './native.ts';
export { checkpoint } from './autograd/checkpoint.ts';
export * as nn from './nn/index.ts';
export { Module, flattenParameters, type RemovableHandle } from './nn/index.ts';
export * from './data/index.ts';
export * from './optim/index.ts';
export * from './dist/index.ts';
export * from './engine/index.ts';
export * from './engine/checkpoint/index.ts';
export * from './zero/index.ts';
export * from './pipeline/index.ts';
export * from './tensor_parallel/index.ts';
