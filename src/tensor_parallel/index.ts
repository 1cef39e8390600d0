/** Tensor parallelism: the conjugate collective pairs, the sharded layers, plans and parallelize. */

export {
  formatPlan, gptTensorParallelPlan, matchesPattern, matchPlan, type PlanAssignment, type PlanEntry, planEntry, type Redistribute,
  TENSOR_PARALLEL_STYLES, type TensorParallelPlan, type TensorParallelStyle,
} from '../../partitioners/tensor.ts';
export { type ParallelAttentionLinears, ParallelCausalSelfAttention, type ParallelGPTLayerOptions, ParallelMLP } from './attention.ts';
export { clipGradNormTensorParallel } from './clip_grad.ts';
export { resetTensorParallelCommStats, type TensorParallelCommStats, tensorParallelCommStats } from './comms.ts';
export { VocabParallelEmbedding, type VocabParallelEmbeddingOptions } from './embedding.ts';
export { ColumnParallelLinear, type ColumnParallelOptions, type ParallelLinearOptions, RowParallelLinear, type RowParallelOptions } from './layers.ts';
export { vocabParallelCrossEntropy } from './loss.ts';
export {
  allGatherFromSequence, copyToRegion, gatherFromRegion, gatherFromSequence, reduceFromRegion, reduceScatterToSequence, SEQUENCE_DIM,
  scatterToRegion, scatterToSequence,
} from './mappings.ts';
export { parallelize } from './parallelize.ts';
export { TENSOR_PARALLEL_SEED_OFFSET, tensorParallelSeed, withTensorParallelRng } from './random.ts';
export { SequenceParallelDropout, SequenceParallelLayerNorm } from './sequence_modules.ts';
export {
  allReduceSequenceParallelGrads, isSequenceParallel, markSequenceParallel, reduceSequenceParallelGradsInBackward,
  sequenceParallelParameters,
} from './sequence_parallel.ts';
export { colRuns, fillShard, type Run as ShardRun, rowRuns, type ShardInit } from './shard_init.ts';
export { fullShape, gatherShard, parameterLayout, type ShardLayout, shardLayouts, sliceShard } from './shard_layout.ts';
export { consolidatedStateDict, loadFullStateDict } from './state_dict.ts';
