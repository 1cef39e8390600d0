/**
 * What the Engine drives: ZeRO stage 0 (DataParallel + a plain optimizer) or a partitioned ZeRO
 * optimizer for stages 1-3 (ZeroStage12, ZeroStage3), which the engine treats alike through the
 * surface below.
 */
import type { DataParallel } from '../dist/data_parallel.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ResolvedSpec } from '../zero/optimizer.ts';
import type { PartitionShard } from '../zero/shards.ts';
import type { MemoryBuffer } from './memory_report.ts';

/** The partitioned optimizer of ZeRO stages 1-3, as the engine uses it. */
export interface EngineZero {
  readonly stage: 1 | 2 | 3;
  readonly group: ProcessGroup;
  /** The optimizer's hyperparameters; the LR schedule writes `lr`. */
  readonly hyper: ResolvedSpec;
  /** Optimizer steps taken (restored from checkpoints). */
  steps: number;
  /** The global gradient norm of the last step before clipping (NaN when clipping is off). */
  readonly lastGradNorm: number;
  backward(loss: Tensor, grad?: Tensor): void;
  /** Reduce, clip and update; `beforeUpdate` (mixed precision) sees the gradient partitions and may veto the step. */
  step(beforeUpdate?: (partitionGrads: Tensor[]) => boolean): boolean;
  zeroGrad(): void;
  /** This rank's parameter (and optionally optimizer-state) slices as checkpoint shard entries. */
  partitionShards(opts?: { optimizer?: boolean }): PartitionShard[];
  clearOptimizerState(): void;
  /** 16-bit parameters loaded without optimizer state: the fp32 masters from the parameter partition. */
  syncMasters(): void;
  /** After the parameter partitions were written (checkpoint load): make the model's parameters current. */
  allGatherParameters(): void;
  destroy(): void;
  /** Buffers beyond ZeRO's formula for the memory report (stage 3: persistent and gathered parameters, buckets). */
  memoryBuffers?(): MemoryBuffer[];
}

export type EngineBackend =
  | { stage: 0; dp: DataParallel; optimizer: Optimizer<{ lr: number }> }
  | { stage: 1 | 2 | 3; zero: EngineZero };
