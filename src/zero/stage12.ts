/**
 * ZeRO stages 1 and 2 (Rajbhandari et al. 2020; DeepSpeed's stage_1_and_2.py): data parallelism
 * where each of the N dp ranks keeps the optimizer state, and the fp32 master weights of 16-bit
 * parameters, only for its 1/N partition of the parameters.
 *
 * - The parameters of each dtype are moved into one flat buffer in the group's shared arena,
 *   padded to a multiple of N (`flattenParameters`); rank r owns elements [r*P, (r+1)*P).
 * - Stage 1: every `p.grad` is a view into a full-size flat gradient buffer; `step()` averages
 *   it onto the owners with one reduce-scatter.
 * - Stage 2: gradients are written (or copied, buckets.ts), as each parameter's becomes ready in
 *   backward, into static buckets (contiguous flat ranges, in reverse registration order, up to `reduceBucketSize`
 *   elements); a full bucket's pieces are averaged onto their owners (asynchronously with
 *   `overlapComm`), and each rank adds its piece into a partition-sized gradient buffer. The
 *   parameter's own gradient is freed, so gradient memory is P plus the bucket buffers in use.
 *   With gradient accumulation every backward reduces its buckets and the owners add them up
 *   (DeepSpeed's choice too): memory stays 1/N at the cost of one reduction per micro-batch.
 * - `step()`: optional global-norm clipping (the squared norms of the partitions all-reduced),
 *   the fused optimizer kernel over this rank's partition, then an all-gather of the updated
 *   partitions restores the full parameters on every rank.
 * - Optimizer offload (`offloadOptimizer`): the partition's master and state live in the CPU
 *   offload pool or in NVMe files streamed in sub-groups (partition_optimizer.ts); same results.
 * - Frozen parameters (`trainable`, or requiresGrad false): in flat buffers of their own, whole on
 *   every rank, with no gradient, no bucket and no optimizer state; checkpoints save them as
 *   weights (each rank its partition's slice).
 */

import { markGradZero } from '../autograd/grad_zero.ts';
import { broadcastState } from '../dist/data_parallel_comms.ts';
import { getWorld } from '../dist/distributed.ts';
import { paramDevice } from '../dist/param_device.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module, RemovableHandle } from '../nn/module.ts';
import * as k from '../ops/kernels.ts';
import { checkBool, checkKeys, checkRange } from '../optim/checks.ts';
import type { FlatRef } from '../optim/fused.ts';
import { GradSquares } from '../optim/grad_squares.ts';
import { isFloat } from '../tensor/dtype.ts';
import { contiguousStrides } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { BucketReducer, DEFAULT_REDUCE_BUCKET_SIZE, dropGrad } from './buckets.ts';
import { allGatherParams, flatView, reduceScatterGrads } from './comms.ts';
import { type DecidedPartition, type DecidedZeroStep, decidedRefusal, stepPartitionsDecided } from './decided_step.ts';
import { buildFlatGroup, type FlatGroup, type Slot } from './flat_group.ts';
import { buildFrozenGroup, type FrozenGroup, gatherFrozen, splitTrainable, type Trainable } from './frozen.ts';
import { type OffloadOptions, type ResolvedOffload, resolveOffload } from './offload/options.ts';
import { type ResolvedSpec, resolveSpec, type ZeroOptimizerSpec } from './optimizer.ts';
import type { Partition } from './partition.ts';
import { type PartitionShard, partitionShards } from './shards.ts';
import { stepScale } from './step_scale.ts';
import type { BeforeUpdate } from './zero_optimizer.ts';

export { DEFAULT_REDUCE_BUCKET_SIZE } from './buckets.ts';
export type { PartitionShard } from './shards.ts';

export interface ZeroOptions {
  stage: 1 | 2;
  /** The data-parallel group (default: the world). */
  group?: ProcessGroup;
  /** Stage 2: elements per gradient bucket (default 500,000; DeepSpeed's 5e8 exceeds a CPU arena). */
  reduceBucketSize?: number;
  /** Stage 2: reduce buckets asynchronously while backward runs (default true); false waits for each at once. */
  overlapComm?: boolean;
  /** Stage 2: gradients are copied into contiguous buckets as they become ready; always on (accepted for DeepSpeed parity). */
  contiguousGradients?: boolean;
  /** Clip the global gradient norm to this value in every step (0: off, the default). */
  gradientClipping?: number;
  /** Where the master and optimizer state of the partition live (default device 'none'): offload_optimizer. */
  offloadOptimizer?: OffloadOptions;
  /** nvme offload: elements per sub-group streamed through memory in a step (default 1e9, DeepSpeed's sub_group_size). */
  subGroupSize?: number;
  /**
   * The parameters to train (DeepSpeed's model_parameters): a set of the model's parameters or a
   * predicate on (name, parameter); default all. Parameters with requiresGrad false never train.
   */
  trainable?: Trainable;
}

const OPTIONS = ['stage', 'group', 'reduceBucketSize', 'overlapComm', 'contiguousGradients', 'gradientClipping', 'offloadOptimizer', 'subGroupSize', 'trainable'];

/**
 * The ZeRO stage 1/2 optimizer; construct it on every rank of the dp group (rank 0's weights
 * are broadcast). Each rank trains on its share of the global batch.
 * @example
 * const zero = new ZeroStage12(model, { type: 'AdamW', lr: 1e-3 }, { stage: 2, gradientClipping: 1 });
 * for (const [x, y] of loader) {
 *   zero.zeroGrad();
 *   zero.backward(crossEntropy(model.forward(x), y));
 *   zero.step();                          // update my partition, then all-gather the parameters
 * }
 */
export class ZeroStage12 {
  readonly stage: 1 | 2;
  readonly group: ProcessGroup;
  /** The optimizer's hyperparameters; `lr` may be changed between steps (schedules). */
  readonly hyper: ResolvedSpec;
  readonly reduceBucketSize: number;
  readonly overlapComm: boolean;
  readonly gradientClipping: number;
  /** Where the optimizer state lives, with defaults filled in. */
  readonly offload: ResolvedOffload;
  /** Optimizer steps taken. */
  steps = 0;
  /** The global gradient norm of the last step (before clipping; NaN when clipping is off). */
  lastGradNorm = Number.NaN;
  private readonly groups: FlatGroup[] = [];
  private readonly frozen: FrozenGroup[] = [];
  /** Whether checkpoint views may have written this rank's slices of the frozen buffers (gather them next). */
  private frozenStale = false;
  private readonly slotOf = new Map<Tensor, { g: FlatGroup; s: Slot }>();
  private readonly hook: RemovableHandle | null = null;
  private readonly buckets: BucketReducer;
  private destroyed = false;

  constructor(model: Module, optimizer: ZeroOptimizerSpec, opts: ZeroOptions) {
    checkKeys(opts, OPTIONS, 'ZeroStage12');
    if (opts.stage !== 1 && opts.stage !== 2) throw new Error(`ZeroStage12: stage must be 1 or 2, got ${String(opts.stage)}`);
    this.stage = opts.stage;
    this.group = opts.group ?? getWorld();
    this.reduceBucketSize = opts.reduceBucketSize ?? DEFAULT_REDUCE_BUCKET_SIZE;
    checkRange(this.reduceBucketSize, 'reduceBucketSize', 'ZeroStage12', 1);
    this.overlapComm = opts.overlapComm ?? true;
    checkBool(this.overlapComm, 'overlapComm', 'ZeroStage12');
    if (opts.contiguousGradients !== undefined) checkBool(opts.contiguousGradients, 'contiguousGradients', 'ZeroStage12');
    this.gradientClipping = opts.gradientClipping ?? 0;
    checkRange(this.gradientClipping, 'gradientClipping', 'ZeroStage12', 0);
    this.hyper = resolveSpec(optimizer);
    this.offload = resolveOffload(opts.offloadOptimizer, opts.subGroupSize, 'ZeroStage12');
    this.buckets = new BucketReducer(this.group, this.groups, this.overlapComm, this.reduceBucketSize);

    const named = model.namedParameters();
    if (named.length === 0) throw new Error('ZeroStage12: the model has no parameters');
    paramDevice(named, 'ZeroStage12');
    for (const [name, p] of named) {
      if (!isFloat(p.dtype) || p.dtype === 'f64') throw new Error(`ZeroStage12: parameter "${name}" has dtype ${p.dtype}; expected f32, bf16 or f16`);
    }
    const { trained, frozen } = splitTrainable(named, opts.trainable, 'ZeroStage12');
    broadcastState(model, this.group, true);
    const dtypes = [...new Set(trained.map(([, p]) => p.dtype))];
    try {
      for (const [i, dtype] of dtypes.entries()) {
        this.groups.push(this.finishGroup(buildFlatGroup(trained.filter(([, p]) => p.dtype === dtype), this.group, this.stage, this.hyper, this.offload, i)));
      }
      for (const dtype of new Set(frozen.map(([, p]) => p.dtype))) this.frozen.push(buildFrozenGroup(frozen.filter(([, p]) => p.dtype === dtype), this.group));
    } catch (e) {
      for (const g of this.groups) g.opt.destroy(); // no nvme file outlives a failed construction
      throw e;
    }
    if (this.stage === 1) this.prepareGradients();
    else this.hook = model.registerParamGradHook((_, p) => this.onGradReady(p));
  }

  /** Elements of one stage-2 bucket buffer (the largest bucket). */
  get bucketBufferNumel(): number {
    return this.buckets.poolSize;
  }

  /** Stage-2 bucket buffers allocated so far (each `bucketBufferNumel` elements, tag 'grad'). */
  get bucketBuffers(): number {
    return this.buckets.buffersAllocated;
  }

  /** Elements of the trained parameters (the memory report's Ψ). */
  get trainedNumel(): number {
    return this.groups.reduce((n, g) => n + g.slots.reduce((m, s) => m + s.end - s.start, 0), 0);
  }

  /** The frozen parameters' names (neither reduced nor stepped). */
  frozenNames(): string[] {
    return this.frozen.flatMap((g) => g.slots.map((s) => s.name));
  }

  /** This rank's partition of each trained dtype's flat buffer (for reports and tests). */
  partitions(): { dtype: string; numel: number; partition: Partition }[] {
    return this.groups.map((g) => ({ dtype: g.dtype, numel: g.slots.reduce((n, s) => n + s.end - s.start, 0), partition: g.part }));
  }

  /**
   * This rank's partition as checkpoint shard entries: for each parameter (or part of one) in
   * [r·P, (r+1)·P) of each flat buffer, its slice and, unless `optimizer` is false, the optimizer
   * state (and the fp32 master of 16-bit parameters) for that slice. Padding is left out. Saving
   * these from every rank, and asking for the same entries in another layout, reshards on load.
   */
  partitionShards(opts: { optimizer?: boolean } = {}): PartitionShard[] {
    this.live();
    if (this.frozen.length > 0) this.frozenStale = true;    // the views are writable: a load fills only this rank's slices
    return [...partitionShards(this.groups, opts), ...partitionShards(this.frozen, opts)];
  }

  /** nvme: the optimizer state `partitionShards()` read into memory goes back to the file and is freed. */
  flushOffload(): void {
    this.live();
    for (const g of this.groups) g.opt.flush();
  }

  /** Zeros the optimizer state (padding included), before a checkpoint's slices are copied in. */
  clearOptimizerState(): void {
    this.live();
    for (const g of this.groups) g.opt.clearState();
  }

  /** Copies this rank's parameter partition into the fp32 masters (16-bit parameters loaded without optimizer state). */
  syncMasters(): void {
    this.live();
    for (const g of this.groups) {
      const mine = flatView(g.flat.buffer, g.part.start, g.part.size);
      try {
        g.opt.syncMaster(mine);
      } finally {
        mine.dispose();
      }
    }
  }

  /** Stage 2's buckets per dtype: their flat ranges and parameter names, in launch order. */
  bucketInfo(): { dtype: string; lo: number; hi: number; params: string[] }[] {
    return this.groups.flatMap((g) => g.buckets.map((b) => ({ dtype: g.dtype, lo: b.lo, hi: b.hi, params: b.slots.map((s) => s.name) })));
  }

  /** `loss.backward()`; in stage 2 the gradients are reduced onto their owners as they become ready. */
  backward(loss: Tensor, grad?: Tensor): void {
    this.live();
    if (this.stage === 1) {
      this.prepareGradients();
      loss.backward(grad);
    } else {
      if (this.buckets.running) throw new Error('ZeroStage12.backward: a backward pass is already running');
      for (const { s } of this.slotOf.values()) dropGrad(s.param);
      this.buckets.run(() => loss.backward(grad));
    }
    this.dropFrozenGrads();
  }

  /** Zeros the gradients (stage 1: the full flat buffer; both: the partition). */
  zeroGrad(): void {
    this.live();
    for (const g of this.groups) {
      k.fill(g.partGrad, 0);
      if (g.fullGrad) k.fill(g.fullGrad, 0);
    }
    // Stage 1's views are known zeros: backward may write the first gradient over them (autograd/grad_zero.ts).
    for (const { g, s } of this.slotOf.values()) {
      const cur = s.param.grad;
      if (g.fullGrad && cur && !cur.disposed && cur.storage === g.fullGrad.storage) markGradZero(cur);
    }
  }

  /**
   * Reduces (stage 1), clips, updates this rank's partition, and all-gathers the parameters.
   * `beforeUpdate` (mixed precision) sees this rank's reduced gradient partitions before clipping;
   * when it returns false nothing is updated and step() returns false.
   */
  step(beforeUpdate?: BeforeUpdate): boolean {
    if (!this.stepPartition(beforeUpdate)) return false;
    this.allGatherParameters();
    return true;
  }

  /**
   * The first half of `step()`: stage 1's reduce-scatter, clipping, and the optimizer's update of
   * this rank's partition only; until `allGatherParameters()` the other partitions are stale.
   */
  stepPartition(beforeUpdate?: BeforeUpdate): boolean {
    this.live();
    this.reduceGradients();
    this.lastGradNorm = Number.NaN;
    const parts = this.groups.map((g) => g.partGrad);
    // One read of the partitions' squares serves both the overflow check and the clip.
    const squares = this.gradientClipping > 0 ? new GradSquares(parts, [this.group]) : undefined;
    const scale = stepScale(beforeUpdate ? beforeUpdate(parts, squares) : true, squares, this.gradientClipping);
    if (!scale) return false;
    if (squares) this.lastGradNorm = scale.norm;
    this.steps++;
    // Unscaling and clipping ride on the kernel's gradient multiplier (f32), not on the 16-bit partitions.
    for (const g of this.groups) this.update(g, scale.gradScale);
    return true;
  }

  /** Whether `stepDecided` can take the next step (every partition's state on the GPU, made by a plain step). */
  canStepDecided(): boolean {
    return !this.destroyed && decidedRefusal(this.decidedParts()) === null;
  }

  /**
   * `step()` decided on the device, nothing read back (src/zero/decided_step.ts): stage 1's
   * reduce-scatter, the decision into `o.decision`, each partition's update obeying it, then the
   * all-gather. `steps` advances as if the step ran; the returned function takes it back (a skip).
   */
  stepDecided(o: DecidedZeroStep): () => void {
    this.live();
    return stepPartitionsDecided(this, 'ZeroStage12.stepDecided', this.decidedParts(), o, () => this.reduceGradients());
  }

  /**
   * Every rank's updated partition gathered into the full flat parameters. Offloaded state that
   * checkpoint views changed (nvme) is written back first.
   */
  allGatherParameters(): void {
    this.live();
    for (const g of this.groups) g.opt.flush();
    if (this.frozenStale) gatherFrozen(this.group, this.frozen);
    this.frozenStale = false;
    const works = this.groups.map((g) => allGatherParams(this.group, g.flat.buffer, g.part.start, g.part.size));
    for (const w of works) w.wait();
  }

  /** Removes the hooks and frees every buffer; the parameters keep their values (copied out of the flat buffers' views). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.hook?.remove();
    for (const { s } of this.slotOf.values()) dropGrad(s.param);
    this.dropFrozenGrads();
    for (const g of this.groups) {
      g.partGrad.dispose();
      g.fullGrad?.dispose();
      g.opt.destroy();
    }
    this.buckets.destroy();
  }

  // ---- internals ---------------------------------------------------------------------------

  /** A frozen parameter that still requires a gradient gets one from autograd: nothing uses it, so it is freed. */
  private dropFrozenGrads(): void {
    for (const g of this.frozen) for (const s of g.slots) dropGrad(s.param);
  }

  private live(): void {
    if (this.destroyed) throw new Error('ZeroStage12: this optimizer was destroyed');
  }

  private finishGroup(g: FlatGroup): FlatGroup {
    for (const s of g.slots) this.slotOf.set(s.param, { g, s });
    if (this.stage === 2) this.buckets.plan(g);
    return g;
  }

  /** Stage 1: every `p.grad` a view of its slot in the full flat gradient, carrying over a gradient assigned elsewhere. */
  private prepareGradients(): void {
    for (const { g, s } of this.slotOf.values()) {
      const full = g.fullGrad as Tensor;
      const cur = s.param.grad;
      if (cur && !cur.disposed && cur.storage === full.storage && cur.offset === full.offset + s.start) continue;
      const view = full.alias(s.param.shape, contiguousStrides(s.param.shape), full.offset + s.start);
      view.kept = true;
      if (cur && !cur.disposed) {
        k.copyInto(cur, view);
        cur.dispose();
      } else {
        k.fill(view, 0);
        markGradZero(view);
      }
      s.param.grad = view;
    }
  }

  /** Stage 2: the parameter's gradient copied into its bucket and freed; full buckets launched in order. */
  private onGradReady(p: Tensor): void {
    const entry = this.slotOf.get(p);
    if (entry) this.buckets.gradReady(entry.g, entry.s);
  }


  /** Stage 1: the full flat gradients averaged onto their owners' partitions (stage 2 reduced them in backward). */
  private reduceGradients(): void {
    if (this.stage !== 1) return;
    const works = this.groups.map((g) => reduceScatterGrads(this.group, g.partGrad, g.fullGrad as Tensor));
    for (const w of works) w.wait();
  }

  /** Where this rank's partition of a group's parameters starts. */
  private paramRef(g: FlatGroup): FlatRef {
    return { dtype: g.dtype, id: g.flat.buffer.id, off: g.flat.buffer.offset + g.part.start };
  }

  private decidedParts(): DecidedPartition[] {
    return this.groups.map((g) => ({ dtype: g.dtype, opt: g.opt, param: () => this.paramRef(g), grad: g.partGrad }));
  }

  /** The fused kernel over this rank's partition (in sub-groups when offloaded to nvme). */
  private update(g: FlatGroup, gradScale: number): void {
    g.opt.step(this.paramRef(g), { dtype: g.partGrad.dtype, id: g.partGrad.id, off: g.partGrad.offset }, this.steps, gradScale);
  }
}
