/** ZeRO: optimizer state (stage 1) and gradients (stage 2) partitioned over the data-parallel ranks. */
export { ZeroStage12, DEFAULT_REDUCE_BUCKET_SIZE, type ZeroOptions, type PartitionShard } from './stage12.ts';
export { resolveSpec, type ZeroOptimizerSpec, type ResolvedSpec } from './optimizer.ts';
export { paddedNumel, partition, slotsInRange, owners, type Partition, type FlatSlot, type SlotPiece, type OwnedPiece } from './partition.ts';
