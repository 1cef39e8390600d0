/** Tensor parallelism: the conjugate collective pairs and the sharded layers built on them. */
export {
  copyToRegion, reduceFromRegion, scatterToRegion, gatherFromRegion, scatterToSequence, gatherFromSequence,
  allGatherFromSequence, reduceScatterToSequence, SEQUENCE_DIM,
} from './mappings.ts';
export { ColumnParallelLinear, RowParallelLinear, type ParallelLinearOptions, type ColumnParallelOptions, type RowParallelOptions } from './layers.ts';
export {
  markSequenceParallel, isSequenceParallel, sequenceParallelParameters, allReduceSequenceParallelGrads,
} from './sequence_parallel.ts';
export { fillShard, rowRuns, colRuns, type ShardInit, type Run as ShardRun } from './shard_init.ts';
export { ParallelCausalSelfAttention, ParallelMLP, type ParallelGPTLayerOptions } from './attention.ts';
export { VocabParallelEmbedding, type VocabParallelEmbeddingOptions } from './embedding.ts';
export { vocabParallelCrossEntropy } from './loss.ts';
