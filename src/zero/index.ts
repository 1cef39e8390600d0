/** ZeRO: optimizer state (stage 1) and gradients (stage 2) partitioned over the data-parallel ranks. */

export { externalParameters, registerExternalParameter } from './external.ts';
export { DEFAULT_SUB_GROUP_SIZE, type OffloadOptions, type ResolvedOffload, resolveOffload } from './offload/options.ts';
export { type OffloadParamOptions, type ResolvedParamOffload, resolveParamOffload } from './offload/param_options.ts';
export { type ResolvedSpec, resolveSpec, type ZeroOptimizerSpec } from './optimizer.ts';
export { type FlatSlot, type OwnedPiece, owners, type Partition, paddedNumel, partition, type SlotPiece, slotsInRange } from './partition.ts';
export { PartitionOptimizer, type PartitionOptimizerOptions } from './partition_optimizer.ts';
export {DEFAULT_MAX_LIVE_PARAMETERS, DEFAULT_MAX_REUSE_DISTANCE,DEFAULT_PARAM_PERSISTENCE_THRESHOLD, DEFAULT_PREFETCH_BUCKET_SIZE, 
  ZeroStage3, 
  type ZeroStage3Options,
} from './stage3.ts';
export { bucketPieces, type ParamShard, paramShard, planPartition, type Stage3Partition } from './stage3_partition.ts';
export { DEFAULT_REDUCE_BUCKET_SIZE, type PartitionShard, type ZeroOptions, ZeroStage12 } from './stage12.ts';
export type { ZeroOptimizer } from './zero_optimizer.ts';
