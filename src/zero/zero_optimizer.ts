/**
 * The surface the engine drives any ZeRO stage through: `ZeroStage12` (stages 1, 2) and
 * `ZeroStage3` both satisfy it, so initialize()/Engine and the checkpoint code treat them alike.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { GradSquares } from '../optim/grad_squares.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { DecidedZeroStep } from './decided_step.ts';
import type { ResolvedSpec } from './optimizer.ts';
import type { PartitionShard } from './shards.ts';

/**
 * Called with this rank's reduced gradient partitions before clipping and the update (mixed
 * precision's overflow check and unscaling); false skips the step, true updates, and a number
 * updates with the gradients multiplied by it in f32 inside the optimizer kernel (1/lossScale:
 * the partitions stay scaled; `squares` are then those of the scaled partitions). `squares` (present when the
 * stage reads them anyway, e.g. to clip) are those partitions' squares over the dp group: checking
 * them reuses the one host read the step makes for clipping.
 */
export type BeforeUpdate = (partitionGrads: Tensor[], squares?: GradSquares) => boolean | number;

/**
 * A partitioned data-parallel optimizer over a model (ZeRO stage 1, 2 or 3).
 * @example
 * const zero: ZeroOptimizer = stage === 3 ? new ZeroStage3(model, spec, opts3) : new ZeroStage12(model, spec, { stage, ...opts });
 * zero.zeroGrad();
 * zero.backward(loss);
 * zero.step((grads) => !scaler.hasOverflow(grads));
 */
export interface ZeroOptimizer {
  readonly stage: 1 | 2 | 3;
  /** The data-parallel group. */
  readonly group: ProcessGroup;
  /** The optimizer's hyperparameters; `lr` may be changed between steps. */
  readonly hyper: ResolvedSpec;
  readonly gradientClipping: number;
  /** Optimizer steps taken (checkpoints restore it). */
  steps: number;
  /** The global gradient norm of the last step (NaN when clipping is off). */
  lastGradNorm: number;
  /** Elements of the parameters it trains (frozen ones excluded); absent: all of the model's. */
  readonly trainedNumel?: number;
  /** `loss.backward(grad)`, with the stage's gradient reduction. */
  backward(loss: Tensor, grad?: Tensor): void;
  /** Zeros the reduced gradient partitions (call before the first micro-batch of a step). */
  zeroGrad(): void;
  /**
   * Clips, updates this rank's partition and makes the parameters current; `beforeUpdate` sees
   * the reduced gradient partitions first (mixed precision) and returning false skips the step.
   */
  step(beforeUpdate?: BeforeUpdate): boolean;
  /** The first half of `step()`: the update of this rank's partition only. */
  stepPartition(beforeUpdate?: BeforeUpdate): boolean;
  /**
   * Whether `stepDecided` can take the next step: every partition's optimizer state on the CUDA
   * device (no offload: the host updates offloaded state) and made by a plain step. Absent: never.
   */
  canStepDecided?(): boolean;
  /**
   * `step()` with the overflow check and the clip factor decided on the device (decided_step.ts),
   * nothing read back: `steps` advances as if the step ran and the parameters are gathered (a
   * skipped step gathers unchanged partitions); the returned function takes the advance back once
   * the decision turns out a skip. `lastGradNorm` is NaN: the norm is the decision's.
   */
  stepDecided?(o: DecidedZeroStep): () => void;
  /** The second half: every rank's partition made current in the parameters (stage 3: the persistent ones). */
  allGatherParameters(): void;
  /** This rank's checkpoint slices: parameters by full name and shape, and (unless `optimizer: false`) their optimizer state. */
  partitionShards(opts?: { optimizer?: boolean }): PartitionShard[];
  /**
   * Offload to nvme: writes back and frees what `partitionShards()` read into memory (optimizer
   * state; stage 3 also parameter partitions), so a checkpoint save leaves the between-steps
   * residency. A no-op when nothing is resident; absent: the stage keeps nothing resident.
   */
  flushOffload?(): void;
  /** Zeros the optimizer state before a checkpoint's slices are copied in. */
  clearOptimizerState(): void;
  /** Copies the parameter partition into the fp32 masters (16-bit parameters loaded without optimizer state). */
  syncMasters(): void;
  /** Removes the hooks and frees the buffers. */
  destroy(): void;
}
