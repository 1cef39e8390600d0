/**
 * meshtrain: distributed training for TypeScript.
 * @example
 * import { tensor, tidy } from 'meshtrain';
 * const x = tensor([[1, 2], [3, 4]], { requiresGrad: true });
 * tidy(() => x.mul(x).sum().backward());
 */

export { checkpoint } from './autograd/checkpoint.ts';
export { gradsAdopted, setGradAdopt } from './autograd/grad_adopt.ts';
export { GRAD_WRITTEN, type GradInto, gradsWrittenInto, heldSumsReturned, setGradInto } from './autograd/grad_into.ts';
export { enableGrad, isGradEnabled, noGrad } from './autograd/grad_mode.ts';
export { activationGradsApplied, setActivationGradOffers } from './autograd/grad_through.ts';
export { markGradZero } from './autograd/grad_zero.ts';
export * from './data/index.ts';
export * from './dist/index.ts';
export * from './engine/checkpoint/index.ts';
export * from './engine/index.ts';
export { native } from './native.ts';
export * as nn from './nn/index.ts';
export { flattenParameters, Module, type RemovableHandle } from './nn/index.ts';
export * from './ops/index.ts';
export { narrowGradsInPlace } from './ops/narrow_grad.ts';
export { type RowPitchMode, rowPitchMode, setRowPitchMode, withRowPitchMode } from './ops/row_pitch.ts';
export * from './optim/index.ts';
export * from './pipeline/index.ts';
export { type CensusEntry, type CensusKind, type CensusTotals, censusTotals, cudaCensus, formatCensus } from './tensor/census.ts';
export { censusDeviceTotals, formatCensusTime } from './tensor/census_time.ts';
export { CudaGraph, type CudaGraphOptions, captureCudaGraph } from './tensor/cuda_graph.ts';
export { type CudaAllocatorStats, type CudaDeviceProperties, type CudaLibraries, cudaAllocatorStats, cudaDeviceCount, cudaDeviceProperties, cudaEmptyCache, cudaIsAvailable, cudaLibraries, cudaSyncCount, cudaSynchronize, type LibraryStatus } from './tensor/device.ts';
export { DTYPES, type DType } from './tensor/dtype.ts';
export { isPinned, type PinnedOptions, pinnedEmpty, pinnedEmptyCache, pinnedPoolStats } from './tensor/pinned.ts';
export { getRngState, manualSeed, type RngState, setRngState } from './tensor/random.ts';
export { keep, tidy } from './tensor/scope.ts';
export { type AllocatorStats, allocatorStats, CPU_OFFLOAD_POOL, type Device, emptyCache, liveStorages, type MemoryStats, type MemoryTag, memoryStats, resetPeakMemoryStats, setCacheLimit } from './tensor/storage.ts';
export { withTag } from './tensor/tag_context.ts';
export { Tensor, type TensorOptions } from './tensor/tensor.ts';
export * from './tensor_parallel/index.ts';
export * from './zero/index.ts';
