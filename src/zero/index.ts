/** ZeRO: optimizer state (stage 1) and gradients (stage 2) partitioned over the data-parallel ranks. */
export { ZeroStage12, DEFAULT_REDUCE_BUCKET_SIZE, type ZeroOptions, type PartitionShard } from './stage12.ts';
export { resolveSpec, type ZeroOptimizerSpec, type ResolvedSpec } from './optimizer.ts';
export { paddedNumel, partition, slotsInRange, owners, type Partition, type FlatSlot, type SlotPiece, type OwnedPiece } from './partition.ts';
export {
  ZeroStage3, DEFAULT_PREFETCH_BUCKET_SIZE, DEFAULT_PARAM_PERSISTENCE_THRESHOLD, DEFAULT_MAX_LIVE_PARAMETERS, DEFAULT_MAX_REUSE_DISTANCE,
  type ZeroStage3Options,
} from './stage3.ts';
export type { ZeroOptimizer } from './zero_optimizer.ts';
export { registerExternalParameter, externalParameters } from './external.ts';
export { paramShard, planPartition, bucketPieces, type ParamShard, type Stage3Partition } from './stage3_partition.ts';
export { PartitionOptimizer, type PartitionOptimizerOptions } from './partition_optimizer.ts';
export { resolveOffload, DEFAULT_SUB_GROUP_SIZE, type OffloadOptions, type ResolvedOffload } from './offload/options.ts';
export { resolveParamOffload, type OffloadParamOptions, type ResolvedParamOffload } from './offload/param_options.ts';
