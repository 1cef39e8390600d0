/**
 * The tensor-parallel collectives as conjugate autograd pairs (Megatron's mappings): each op's
 * backward is the collective its forward is the transpose of, so a layer states where its
 * region starts and ends and the gradients follow. `group` is the tp group of the mesh.
 *
 * | op                      | forward                  | backward                 |
 * |-------------------------|--------------------------|--------------------------|
 * | copyToRegion (f)        | identity                 | all-reduce               |
 * | reduceFromRegion (g)    | all-reduce               | identity                 |
 * | scatterToRegion         | split last dim           | all-gather last dim      |
 * | gatherFromRegion        | all-gather last dim      | split last dim           |
 * | scatterToSequence       | split sequence dim       | all-gather sequence dim  |
 * | gatherFromSequence      | all-gather sequence dim  | split sequence dim       |
 * | allGatherFromSequence   | all-gather sequence dim  | reduce-scatter           |
 * | reduceScatterToSequence | reduce-scatter seq. dim  | all-gather sequence dim  |
 *
 * The sequence dim defaults to 1, for activations laid out [batch, seq, hidden].
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { record } from '../ops/autograd_support.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { allReduceCopy, allReduceInPlace, allReduceOwned, gatherAlong, reduceScatterAlong, splitAlong } from './comms.ts';

/** The sequence dim of [batch, seq, hidden] activations. */
export const SEQUENCE_DIM = 1;

/**
 * Identity forward, all-reduce backward: enters a region where each rank computes a partial
 * result from the same input. The backward sums the gradient in place when nothing else holds it
 * (the usual case: the region's first layer made it), else into a copy.
 */
export function copyToRegion(x: Tensor, group: ProcessGroup): Tensor {
  return record('copyToRegion', [x], x.alias(), () => (g) => [allReduceOwned(g, group)]);
}

/**
 * All-reduce forward, identity backward: sums the ranks' partial results on leaving a region.
 * `inPlace`: the caller reads `x` no more (a layer's own partial product), so it is summed in
 * place instead of into a copy.
 * @example
 * const y = reduceFromRegion(linear(x, w), group, { inPlace: true });
 */
export function reduceFromRegion(x: Tensor, group: ProcessGroup, opts: { inPlace?: boolean } = {}): Tensor {
  const sum = opts.inPlace ? allReduceInPlace(x, group) : allReduceCopy(x, group);
  // Summed in place: a new handle on it carries this node (x keeps its own).
  return record('reduceFromRegion', [x], sum === x ? x.alias() : sum, () => (g) => [g]);
}

/** This rank's slice of the last dim; backward all-gathers the slices. */
export function scatterToRegion(x: Tensor, group: ProcessGroup): Tensor {
  const out = splitAlong(x, -1, group, 'scatterToRegion');
  return record('scatterToRegion', [x], out, () => (g) => [gatherAlong(g, -1, group, 'scatterToRegion backward')]);
}

/** The ranks' slices concatenated along the last dim; backward keeps this rank's slice. */
export function gatherFromRegion(x: Tensor, group: ProcessGroup): Tensor {
  const out = gatherAlong(x, -1, group, 'gatherFromRegion');
  return record('gatherFromRegion', [x], out, () => (g) => [splitAlong(g, -1, group, 'gatherFromRegion backward')]);
}

/** This rank's slice of the sequence dim; backward all-gathers the slices. */
export function scatterToSequence(x: Tensor, group: ProcessGroup, dim = SEQUENCE_DIM): Tensor {
  const out = splitAlong(x, dim, group, 'scatterToSequence');
  return record('scatterToSequence', [x], out, () => (g) => [gatherAlong(g, dim, group, 'scatterToSequence backward')]);
}

/** The sequence slices concatenated; backward keeps this rank's slice (the consumer is replicated). */
export function gatherFromSequence(x: Tensor, group: ProcessGroup, dim = SEQUENCE_DIM): Tensor {
  const out = gatherAlong(x, dim, group, 'gatherFromSequence');
  return record('gatherFromSequence', [x], out, () => (g) => [splitAlong(g, dim, group, 'gatherFromSequence backward')]);
}

/**
 * The sequence slices concatenated, entering a tensor-parallel region (a column-parallel
 * linear): each rank's gradient is partial, so backward reduce-scatters it.
 */
export function allGatherFromSequence(x: Tensor, group: ProcessGroup, dim = SEQUENCE_DIM): Tensor {
  const out = gatherAlong(x, dim, group, 'allGatherFromSequence');
  return record('allGatherFromSequence', [x], out, () => (g) => [reduceScatterAlong(g, dim, group, 'allGatherFromSequence backward')]);
}

/**
 * Partial results summed over the group, each rank keeping its sequence slice (leaving a
 * row-parallel linear under sequence parallelism); backward all-gathers.
 */
export function reduceScatterToSequence(x: Tensor, group: ProcessGroup, dim = SEQUENCE_DIM): Tensor {
  const out = reduceScatterAlong(x, dim, group, 'reduceScatterToSequence');
  return record('reduceScatterToSequence', [x], out, () => (g) => [gatherAlong(g, dim, group, 'reduceScatterToSequence backward')]);
}
