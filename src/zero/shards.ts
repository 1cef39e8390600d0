/**
 * ZeRO stage 1/2 checkpoint shards: this rank's partition of each flat group described as slices
 * of full tensors (parameters and their optimizer state), so that checkpoints reshard on load.
 */

import type { FlatParameters } from '../nn/flat.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { flatView } from './comms.ts';
import { type FlatSlot, type Partition, slotsInRange } from './partition.ts';
import type { PartitionOptimizer } from './partition_optimizer.ts';

/** What partitionShards reads of a flat group: frozen groups have no optimizer. */
export interface ShardSource {
  dtype: DType;
  flat: FlatParameters;
  part: Partition;
  slots: (FlatSlot & { param: Tensor })[];
  opt?: Pick<PartitionOptimizer, 'slots' | 'stateView'>;
}

/**
 * One slice of a full tensor held in this rank's partition, as a checkpoint shard entry: a
 * parameter's elements [start, end) under its full name and shape, or the optimizer state for
 * them under `optimizer.<param>.<state>` (state: expAvg, expAvgSq, momentumBuffer, master).
 */
export interface PartitionShard {
  name: string;
  fullShape: number[];
  dtype: DType;
  /** Flat element range [start, end) of the full tensor (the parameter's flattened values). */
  shardRange: [number, number];
  /** A 1-D view of the slice in this rank's buffers (writable; dispose it when done). */
  data: Tensor;
  group: 'model' | 'optimizer';
}

/**
 * The shard entries of this rank's partition of `groups`: for each parameter (or part of one) in
 * [r·P, (r+1)·P) of each flat buffer, its slice and, unless `optimizer` is false, the optimizer
 * state (and the fp32 master of 16-bit parameters) for that slice (none for a frozen group).
 * Padding is left out.
 */
export function partitionShards(groups: readonly ShardSource[], opts: { optimizer?: boolean } = {}): PartitionShard[] {
  const out: PartitionShard[] = [];
  for (const g of groups) {
    const byName = new Map(g.slots.map((s) => [s.name, s]));
    for (const piece of slotsInRange(g.slots, g.part.start, g.part.end)) {
      const slot = byName.get(piece.name) as ShardSource['slots'][number];
      const n = piece.hi - piece.lo;
      const fullShape = [...slot.param.shape];
      const shardRange: [number, number] = [piece.paramOffset, piece.paramOffset + n];
      out.push({ name: slot.name, fullShape, dtype: g.dtype, shardRange, data: flatView(g.flat.buffer, piece.lo, n), group: 'model' });
      if (opts.optimizer === false || !g.opt) continue;
      const at = piece.lo - g.part.start;
      for (const sname of g.opt.slots) {
        out.push({ name: `optimizer.${slot.name}.${sname}`, fullShape, dtype: 'f32', shardRange, data: g.opt.stateView(sname, at, n), group: 'optimizer' });
      }
    }
  }
  return out;
}
