/**
 * ZeRO under a pipeline: one ZeRO optimizer per stage module over the mesh's dp group.
 * Stages 1 and 2: the micro-batches' gradients accumulate locally in `p.grad`; once per step they
 * are handed to ZeRO — stage 1 reads them in place (its gradients are views of its flat buffer),
 * stage 2 gets them through one backward over a node that returns them, so its buckets reduce
 * each gradient exactly once, after the last micro-batch (DeepSpeed refuses ZeRO-2 with
 * pipelines because it reduces per micro-batch). Stage 3: parameters are gathered per module
 * around each micro-batch's forward and backward, and each backward reduce-scatters its
 * gradients (they never exist whole, which is stage 3's point); under ZB-H1 each W action's
 * deferred weight gradients go through the same node as stage 2's. Clipping uses the norm over all stages.
 * With tensor-parallel stages (tpGroup), the norm and the overflow check span the tp axis too,
 * each parameter that tp ranks hold whole counted once.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { LossScaler } from '../engine/loss_scaler.ts';
import { record } from '../ops/autograd_support.ts';
import { zeros } from '../ops/create.ts';
import * as k from '../ops/kernels.ts';
import { clipFactor } from '../optim/clip_grad.ts';
import { DeviceSums } from '../optim/device_sums.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ZeroOptimizerSpec } from '../zero/optimizer.ts';
import { ZeroStage3 } from '../zero/stage3.ts';
import { planPartition } from '../zero/stage3_partition.ts';
import { ZeroStage12 } from '../zero/stage12.ts';
import type { ZeroOptimizer } from '../zero/zero_optimizer.ts';
import { unscaleOrSkip } from './loss_scale.ts';
import type { PipelineModule, Tie } from './module.ts';
import { tensorParallelDuplicates } from './tensor_parallel_stage.ts';

export interface ZeroPipelineOptions {
  stage: 1 | 2 | 3;
  optimizer: ZeroOptimizerSpec;
  /** Stage 2: elements per gradient bucket. */
  reduceBucketSize?: number;
  overlapComm?: boolean;
  /** Stage 3: parameters of at most this many elements stay gathered (stage3_param_persistence_threshold). */
  paramPersistenceThreshold?: number;
}

/** Stage 3: where a parameter's shard sits in this rank's gradient partition of its dtype. */
interface Slot {
  part: number;
  offset: number;
  valid: number;
}

/** Stage 3: a tied weight's slot (the same slice on every stage holding it). */
interface TiedShard extends Slot {
  tie: Tie;
}

export class ZeroPipe {
  readonly zero: ZeroOptimizer;
  lastGradNorm = Number.NaN;
  private tiedShards: TiedShard[] = [];
  /** Parameters every tp rank holds whole, left out of this rank's norm share (all of them off tp rank 0). */
  private readonly tpDuplicates: Set<Tensor>;
  /** Stage 3: their slots. */
  private tpDuplicateSlots: Slot[] = [];

  constructor(
    private readonly module: PipelineModule,
    opts: ZeroPipelineOptions,
    dpGroup: ProcessGroup | null,
    private readonly clip: number,
    private readonly tpGroup: ProcessGroup | null = null,
  ) {
    const { stage, optimizer, reduceBucketSize, overlapComm, paramPersistenceThreshold } = opts;
    if (!dpGroup) throw new Error('PipelineEngine: zero needs dpGroup (the mesh\'s dp group)');
    if (stage === 3) {
      this.zero = new ZeroStage3(module, optimizer, { group: dpGroup, reduceBucketSize, overlapComm, paramPersistenceThreshold });
      this.tiedShards = tiedShards(module, dpGroup, this.zero as ZeroStage3);
      this.tpDuplicateSlots = partitionSlots(module, dpGroup, this.zero as ZeroStage3, [...tensorParallelDuplicates(module, tpGroup)]);
    } else {
      if (paramPersistenceThreshold !== undefined) throw new Error('PipelineEngine: zero.paramPersistenceThreshold is a stage 3 option');
      this.zero = new ZeroStage12(module, optimizer, { stage, group: dpGroup, reduceBucketSize, overlapComm });
    }
    this.tpDuplicates = tensorParallelDuplicates(module, tpGroup);
  }

  /** Stage 3 reduces in every micro-batch's backward, run through `backward` (the hooks it needs stay on). */
  get perMicroBatch(): boolean {
    return this.zero.stage === 3;
  }

  backward(out: Tensor, grad?: Tensor): void {
    this.zero.backward(out, grad);
  }

  /** Stage 3 under a split schedule: a W action's weight gradients, reduce-scattered like a backward's. */
  reduceWeightGrads(): void {
    this.feed();
  }

  /**
   * Reduces the accumulated gradients over dp, skips on an fp16 overflow anywhere (false), clips
   * over the whole pipeline, updates, gathers. The overflow check and the norm come from one host
   * read: slot 0 of one f64 tensor on the device sums the partitions' squares (non-finite exactly
   * when some rank overflowed), slot 1 those of slices the norm counts on another rank, slot 2 the
   * duplicate tied/tp squares taken before the step (stages 1-2), all summed over dp, pp and tp.
   */
  step(scaler: LossScaler | null = null): boolean {
    const device = this.module.parameters()[0]?.device ?? 'cpu';
    const sums = scaler || this.clip > 0 ? new DeviceSums(device, 3) : null;
    try {
      if (sums && this.clip > 0) this.duplicateTiedSquares(sums, 2);
      if (this.zero.stage === 2) this.feed();
      const ok = this.zero.step((parts) => {
        // Stage 3: the tied copies' reduced shards are summed across the stages holding them.
        const slices = this.tiedShards.filter((t) => t.valid > 0).map((t) => ({ t, v: parts[t.part].narrow(0, t.offset, t.valid) }));
        for (const { t, v } of slices) t.tie.group?.allReduce(v, 'sum');
        try {
          if (!sums) return true;
          for (const g of parts) sums.add(g, 2, 0);
          if (this.clip > 0) {
            // Tied copies count once: stages 1-2 took the squares before the step (slot 2), stage 3 takes them from the slices.
            for (const { t, v } of slices) if (t.tie.owner !== this.module.pipeRank) sums.add(v, 2, 1);
            for (const sl of this.tpDuplicateSlots) {
              if (sl.valid === 0) continue;
              const v = parts[sl.part].narrow(0, sl.offset, sl.valid);
              sums.add(v, 2, 1);
              v.dispose();
            }
          }
          sums.allReduce([this.zero.group, this.module.group, this.tpGroup]);
          const [all, counted, tied] = sums.read();
          // The partitions stay scaled: the optimizer kernel multiplies them by the returned factor in f32.
          const unscale = scaler ? unscaleOrSkip(parts, scaler, [], !Number.isFinite(all)) : 1;
          if (unscale === false) return false;
          if (this.clip <= 0) return unscale;
          // Every slot holds squares of scaled gradients (slot 2: dp-averaged copies, summed over dp ranks).
          const total = Math.sqrt(Math.max(0, all - counted - tied / this.zero.group.size)) * unscale;
          this.lastGradNorm = total;
          return unscale * clipFactor(total, this.clip);
        } finally {
          for (const { v } of slices) v.dispose();
        }
      });
      this.zero.zeroGrad();
      return ok;
    } finally {
      sums?.dispose();
    }
  }

  /** One backward whose only node returns each parameter's gradient held in `p.grad` (stage 2: accumulated; stage 3: a W action's). */
  private feed(): void {
    const params = this.module.parameters().filter((p) => p.grad && !p.grad.disposed);
    if (params.length === 0) return;
    const grads = params.map((p) => {
      const g = p.grad as Tensor;
      p.grad = null;
      return g;
    });
    const root = record('pipelineGradients', params, zeros([], { tag: 'other', device: params[0].device }), () => () => grads);
    this.zero.backward(root);
    root.dispose();
    for (const g of grads) g.dispose();
  }

  /**
   * Adds to `slot` the squares of the dp-averaged gradients this rank holds that the global norm
   * counts elsewhere: tied copies this stage does not own, and (off tp rank 0) parameters every tp
   * rank holds whole. Stages 1-2 only (stage 3 holds no whole gradients; it uses slots).
   */
  private duplicateTiedSquares(sums: DeviceSums, slot: number): void {
    const dup = this.module.ties.filter((t) => t.param && t.owner !== this.module.pipeRank && t.group).map((t) => t.param as Tensor);
    for (const p of [...dup, ...this.tpDuplicates]) {
      if (!p.grad || p.grad.disposed) continue;
      const avg = withTag('grad', () => k.copy(p.grad as Tensor));
      this.zero.group.allReduce(avg, 'avg');
      sums.add(avg, 2, slot);
      avg.dispose();
    }
  }
}

export type { Tensor };

/**
 * Where each tied weight held on several pipeline ranks sits in this rank's stage-3 gradient
 * partition: ZeRO-3 packs every parameter's shard in `namedParameters()` order per dtype
 * (planPartition), so the plan is recomputed here and checked against the optimizer's sizes.
 */
function tiedShards(module: PipelineModule, dp: ProcessGroup, zero: ZeroStage3): TiedShard[] {
  const ties = module.ties.filter((t) => t.param && t.group);
  const slots = partitionSlots(module, dp, zero, ties.map((t) => t.param as Tensor));
  return ties.map((tie, i) => ({ tie, ...slots[i] }));
}

/** Each parameter's slot in this rank's stage-3 gradient partitions (plans recomputed and checked against the optimizer's sizes). */
function partitionSlots(module: PipelineModule, dp: ProcessGroup, zero: ZeroStage3, params: Tensor[]): Slot[] {
  const named = module.namedParameters();
  const dtypes = [...new Set(named.map(([, p]) => p.dtype))];
  const sizes = zero.partitions();
  return params.map((param) => {
    const dtype = param.dtype;
    const list = named.filter(([, p]) => p.dtype === dtype);
    const plan = planPartition(list.map(([name, p]) => ({ name, numel: p.numel })), dp.size, dp.rank);
    const part = dtypes.indexOf(dtype);
    if (sizes[part]?.partitionNumel !== plan.numel) throw new Error(`PipelineEngine: the ZeRO-3 partition of ${dtype} has ${sizes[part]?.partitionNumel} elements, the plan ${plan.numel}`);
    const shard = plan.shards[list.findIndex(([, p]) => p === param)];
    return { part, offset: shard.offset, valid: shard.valid };
  });
}
