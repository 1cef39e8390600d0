/** Tensor parallelism: the conjugate collective pairs and the sharded layers built on them. */
export {
  copyToRegion, reduceFromRegion, scatterToRegion, gatherFromRegion, scatterToSequence, gatherFromSequence,
  allGatherFromSequence, reduceScatterToSequence, SEQUENCE_DIM,
} from './mappings.ts';
