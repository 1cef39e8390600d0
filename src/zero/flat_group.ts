/**
 * One dtype's parameters under ZeRO stage 1/2: moved into one flat buffer in the group's shared
 * arena, padded to a multiple of the dp size, with this rank's partition of it, the averaged
 * gradient partition (and stage 1's full flat gradient), and the partition's optimizer (the fp32
 * master of a 16-bit partition and the optimizer state, wherever the offload device puts them).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { type FlatParameters, flattenParameters } from '../nn/flat.ts';
import * as k from '../ops/kernels.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { Bucket } from './buckets.ts';
import { flatView } from './comms.ts';
import type { ResolvedOffload } from './offload/options.ts';
import type { ResolvedSpec } from './optimizer.ts';
import { type FlatSlot, type Partition, partition } from './partition.ts';
import { PartitionOptimizer, partitionName } from './partition_optimizer.ts';

export interface Slot extends FlatSlot {
  param: Tensor;
  /** Stage 2: the index of its bucket in the group's `buckets` (-1 before they are planned). */
  bucket: number;
}

/** One dtype's parameters: flat buffer, partition, gradients and optimizer state. */
export interface FlatGroup {
  dtype: Tensor['dtype'];
  flat: FlatParameters;
  part: Partition;
  slots: Slot[];
  /** This rank's averaged gradient partition [P] (tag 'grad'). */
  partGrad: Tensor;
  /** Stage 1: the full flat gradient [padded], `p.grad` views into it (tag 'grad'). */
  fullGrad: Tensor | null;
  /** The fp32 master (16-bit parameters) and optimizer state of this rank's partition (tag 'optim'). */
  opt: PartitionOptimizer;
  /** Stage 2's buckets (empty in stage 1). */
  buckets: Bucket[];
}

/**
 * Flattens `named` (all of one dtype) into `pg`'s arena and allocates the partition's gradients
 * and optimizer (group `index` of the optimizer names the nvme file).
 */
export function buildFlatGroup(
  named: [string, Tensor][], pg: ProcessGroup, stage: 1 | 2, hyper: ResolvedSpec, offload?: ResolvedOffload, index = 0,
): FlatGroup {
  const world = pg.size;
  const { dtype, device } = named[0][1];
  const flat = flattenParameters(named.map(([, p]) => p), {
    padTo: world,
    allocate: (n, dt) => pg.sharedEmpty([n], { dtype: dt, tag: 'param', device }),
  });
  const numel = named.reduce((n, [, p]) => n + p.numel, 0);
  const part = partition(numel, world, pg.rank);
  if (part.padded !== flat.numel) throw new Error(`ZeroStage12: internal: flat buffer of ${flat.numel} elements, partition of ${part.padded}`);
  const slots: Slot[] = named.map(([name, param], i) => ({ name, param, start: flat.offsets[i], end: flat.offsets[i] + param.numel, bucket: -1 }));
  const keepTensor = (t: Tensor) => {
    t.kept = true;
    return t;
  };
  const partGrad = keepTensor(k.fill(pg.sharedEmpty([part.size], { dtype, tag: 'grad', device }), 0));
  const fullGrad = stage === 1 ? keepTensor(k.fill(pg.sharedEmpty([part.padded], { dtype, tag: 'grad', device }), 0)) : null;
  // The fp32 master copy of a 16-bit partition counts as optimizer state (DeepSpeed's 12 bytes per parameter for mixed-precision Adam).
  const mine = flatView(flat.buffer, part.start, part.size);
  let opt: PartitionOptimizer;
  try {
    opt = new PartitionOptimizer(hyper, mine, { offload, name: partitionName(pg, dtype, index) });
  } finally {
    mine.dispose();
  }
  return { dtype, flat, part, slots, partGrad, fullGrad, opt, buckets: [] };
}
