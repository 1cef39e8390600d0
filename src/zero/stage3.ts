/**
 * ZeRO stage 3 (Rajbhandari et al. 2020; DeepSpeed's stage3.py): the parameters themselves are
 * partitioned over the N dp ranks, besides the gradients and the optimizer state.
 *
 * - Each parameter of n elements is padded to N·ceil(n/N); rank r keeps only its shard, packed
 *   with its shards of the other parameters of the same dtype in one partition buffer (tag
 *   'param'; in the shared arena, or with `offloadParam` in the CPU offload pool or an nvme file
 *   read through a few swap buffers: offload/param_store.ts, param_nvme.ts), next to the averaged gradient partition ('grad'), the fp32 master of 16-bit
 *   shards and the optimizer state ('optim'). Rank 0's initial values are broadcast first.
 * - Outside use a parameter keeps its full shape and holds no memory (reading it throws, naming
 *   it). Module hooks gather it around its module's forward and backward (param_coordinator.ts),
 *   with prefetching along the traced module order. Parameters of at most
 *   `paramPersistenceThreshold` elements stay gathered.
 * - In backward each parameter's gradient, once ready, is reduce-scattered in buckets onto its
 *   owners (stage3_grads.ts) and freed; gradient accumulation adds into the partition.
 * - `step()`: optional global-norm clipping, the fused optimizer over the partition (its master
 *   and state in memory, the CPU offload pool or NVMe files: partition_optimizer.ts), then the
 *   persistent (and any gathered) parameters are gathered again from the updated partitions.
 * - Frozen parameters (`trainable`, or requiresGrad false) are partitioned and gathered alike, in
 *   partitions of their own with no gradient partition and no optimizer state; a gradient that
 *   autograd still computes for one is dropped, not reduced.
 */
import { saveByReference } from '../autograd/node.ts';
import { broadcastState } from '../dist/data_parallel_comms.ts';
import { getWorld } from '../dist/distributed.ts';
import { paramDevice } from '../dist/param_device.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module, RemovableHandle } from '../nn/module.ts';
import * as k from '../ops/kernels.ts';
import { checkBool, checkKeys, checkRange } from '../optim/checks.ts';
import { GradSquares } from '../optim/grad_squares.ts';
import { type DType, isFloat, itemSize } from '../tensor/dtype.ts';
import { pinnedEmpty } from '../tensor/pinned.ts';
import { type Device, type MemoryTag, Storage } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { DEFAULT_REDUCE_BUCKET_SIZE, dropGrad } from './buckets.ts';
import { flatView } from './comms.ts';
import { type DecidedPartition, type DecidedZeroStep, decidedRefusal, stepPartitionsDecided } from './decided_step.ts';
import { externalParameters } from './external.ts';
import { splitTrainable, type Trainable } from './frozen.ts';
import { type OffloadOptions, type ResolvedOffload, resolveOffload } from './offload/options.ts';
import { NvmeParamStore } from './offload/param_nvme.ts';
import { type OffloadParamOptions, type ResolvedParamOffload, resolveParamOffload } from './offload/param_options.ts';
import { MemoryParamStore, type ParamStore } from './offload/param_store.ts';
import { type ResolvedSpec, resolveSpec, type ZeroOptimizerSpec } from './optimizer.ts';
import { ParamCoordinator, type Stage3Param } from './param_coordinator.ts';
import { PartitionOptimizer, partitionName } from './partition_optimizer.ts';
import type { PartitionShard } from './shards.ts';
import { Stage3GradReducer } from './stage3_grads.ts';
import { type ParamShard, planPartition } from './stage3_partition.ts';
import { stepScale } from './step_scale.ts';
import type { BeforeUpdate, ZeroOptimizer } from './zero_optimizer.ts';

/** DeepSpeed's stage3_prefetch_bucket_size default (elements). */
export const DEFAULT_PREFETCH_BUCKET_SIZE = 50_000_000;
/**
 * stage3_param_persistence_threshold: DeepSpeed's default is 1e5 elements. On CPU ranks over
 * shared memory a gather costs microseconds rather than a GPU kernel launch plus NCCL latency,
 * so we keep fewer parameters resident: 1e4 (biases, norms, small layers).
 */
export const DEFAULT_PARAM_PERSISTENCE_THRESHOLD = 10_000;
/** DeepSpeed's stage3_max_live_parameters default (elements). */
export const DEFAULT_MAX_LIVE_PARAMETERS = 1_000_000_000;
/** DeepSpeed's stage3_max_reuse_distance default (elements). */
export const DEFAULT_MAX_REUSE_DISTANCE = 1_000_000_000;

export interface ZeroStage3Options {
  /** Accepted so one options object serves every stage; must be 3. */
  stage?: 3;
  /** The data-parallel group (default: the world). */
  group?: ProcessGroup;
  /** Elements per gradient bucket (default 500,000, as stage 2; DeepSpeed's 5e8 exceeds a CPU arena). */
  reduceBucketSize?: number;
  /** Reduce buckets asynchronously while backward runs (default true). */
  overlapComm?: boolean;
  /** Accepted for DeepSpeed parity: gradients always go into contiguous buckets. */
  contiguousGradients?: boolean;
  /** Clip the global gradient norm to this value in every step (0: off, the default). */
  gradientClipping?: number;
  /** stage3_prefetch_bucket_size: elements gathered ahead of the running module (default 5e7; 0 turns prefetch off). */
  prefetchBucketSize?: number;
  /** stage3_param_persistence_threshold: parameters of at most this many elements stay gathered (default 1e4, see above). */
  paramPersistenceThreshold?: number;
  /** stage3_max_live_parameters: most gathered non-persistent elements prefetching may reach (default 1e9). */
  maxLiveParameters?: number;
  /** stage3_max_reuse_distance: a parameter used again within this many elements stays gathered (default 1e9). */
  maxReuseDistance?: number;
  /** Where the master and optimizer state of the partition live (default device 'none'): offload_optimizer. */
  offloadOptimizer?: OffloadOptions;
  /** nvme offload: elements per sub-group streamed through memory in a step (default 1e9, DeepSpeed's sub_group_size). */
  subGroupSize?: number;
  /** Where the parameter partition lives (default device 'none': the shared arena): offload_param. */
  offloadParam?: OffloadParamOptions;
  /**
   * The parameters to train (DeepSpeed's model_parameters): a set of the model's parameters or a
   * predicate on (name, parameter); default all. Parameters with requiresGrad false never train.
   */
  trainable?: Trainable;
}

const OPTIONS = [
  'stage', 'group', 'reduceBucketSize', 'overlapComm', 'contiguousGradients', 'gradientClipping',
  'prefetchBucketSize', 'paramPersistenceThreshold', 'maxLiveParameters', 'maxReuseDistance', 'offloadOptimizer', 'subGroupSize',
  'offloadParam', 'trainable',
];

/** One dtype's partition of frozen parameters: shards only. */
interface FrozenGroup {
  dtype: DType;
  /** This rank's shards of the dtype's parameters, packed (tag 'param'): in the shared arena, the CPU offload pool or a file. */
  store: ParamStore;
  params: Stage3Param[];
  /** Elements of the dtype's parameters (unpadded). */
  numel: number;
}

/** One dtype's partition of trained parameters: parameter shards, gradient, master and optimizer state. */
interface DTypeGroup extends FrozenGroup {
  /** The averaged gradient partition (tag 'grad'). */
  partGrad: Tensor;
  /** The fp32 master of a 16-bit partition and the optimizer state (tag 'optim'), wherever offload puts them. */
  opt: PartitionOptimizer;
}

const trains = (g: FrozenGroup): g is DTypeGroup => 'opt' in g;

/** Counts nvme parameter stores made in this process (unique file names). */
let nvmeStores = 0;

const keepTensor = (t: Tensor): Tensor => {
  t.kept = true;
  return t;
};

/**
 * The ZeRO stage 3 optimizer; construct it on every rank of the dp group (rank 0's weights are
 * broadcast, then each rank keeps only its shards). It implements {@link ZeroOptimizer}, the
 * surface the engine drives every stage through. Every method is collective over the group.
 * Run backward through `zero.backward(loss)`, not `loss.backward()`: it reduces the gradients
 * and releases what backward gathered.
 * @example
 * const model = new GPT(gptConfig('tiny'));          // GPT registers its tied head as an external parameter
 * const zero = new ZeroStage3(model, { type: 'AdamW', lr: 1e-3 }, { gradientClipping: 1, paramPersistenceThreshold: 100 });
 * for (const [x, y] of loader) {
 *   zero.zeroGrad();
 *   zero.backward(crossEntropy(model.forward(x), y));   // parameters gathered per module, gradients reduce-scattered
 *   zero.step();
 * }
 * const w = zero.gathered(() => model.wte.weight.toArray());   // full values outside forward
 */
export class ZeroStage3 implements ZeroOptimizer {
  readonly stage = 3 as const;
  readonly group: ProcessGroup;
  /** Where the parameters, gathered buffers, gradients and (without offload) optimizer state live. */
  readonly device: Device;
  readonly hyper: ResolvedSpec;
  readonly reduceBucketSize: number;
  readonly overlapComm: boolean;
  readonly gradientClipping: number;
  readonly prefetchBucketSize: number;
  readonly paramPersistenceThreshold: number;
  readonly maxLiveParameters: number;
  readonly maxReuseDistance: number;
  readonly offload: ResolvedOffload;
  readonly offloadParam: ResolvedParamOffload;
  steps = 0;
  lastGradNorm = Number.NaN;
  private readonly groups: DTypeGroup[] = [];
  private readonly frozen: FrozenGroup[] = [];
  private readonly byTensor = new Map<Tensor, { g: FrozenGroup; p: Stage3Param }>();
  private readonly coordinator: ParamCoordinator;
  private readonly reducer: Stage3GradReducer;
  private readonly hook: RemovableHandle;
  private running = false;
  private destroyed = false;

  constructor(
    model: Module,
    optimizer: ZeroOptimizerSpec,
    opts: ZeroStage3Options = {},
  ) {
    const where = 'ZeroStage3';
    checkKeys(opts, OPTIONS, where);
    if (opts.stage !== undefined && opts.stage !== 3) throw new Error(`ZeroStage3: stage must be 3, got ${String(opts.stage)} (stages 1 and 2 are ZeroStage12)`);
    this.group = opts.group ?? getWorld();
    this.reduceBucketSize = opts.reduceBucketSize ?? DEFAULT_REDUCE_BUCKET_SIZE;
    checkRange(this.reduceBucketSize, 'reduceBucketSize', where, 1);
    this.overlapComm = opts.overlapComm ?? true;
    checkBool(this.overlapComm, 'overlapComm', where);
    if (opts.contiguousGradients !== undefined) checkBool(opts.contiguousGradients, 'contiguousGradients', where);
    this.gradientClipping = opts.gradientClipping ?? 0;
    checkRange(this.gradientClipping, 'gradientClipping', where, 0);
    this.prefetchBucketSize = opts.prefetchBucketSize ?? DEFAULT_PREFETCH_BUCKET_SIZE;
    checkRange(this.prefetchBucketSize, 'prefetchBucketSize', where, 0);
    this.paramPersistenceThreshold = opts.paramPersistenceThreshold ?? DEFAULT_PARAM_PERSISTENCE_THRESHOLD;
    checkRange(this.paramPersistenceThreshold, 'paramPersistenceThreshold', where, 0);
    this.maxLiveParameters = opts.maxLiveParameters ?? DEFAULT_MAX_LIVE_PARAMETERS;
    checkRange(this.maxLiveParameters, 'maxLiveParameters', where, 0);
    this.maxReuseDistance = opts.maxReuseDistance ?? DEFAULT_MAX_REUSE_DISTANCE;
    checkRange(this.maxReuseDistance, 'maxReuseDistance', where, 0);
    this.hyper = resolveSpec(optimizer);
    this.offload = resolveOffload(opts.offloadOptimizer, opts.subGroupSize, where);
    this.offloadParam = resolveParamOffload(opts.offloadParam, where);

    const named = model.namedParameters();
    if (named.length === 0) throw new Error('ZeroStage3: the model has no parameters');
    this.device = paramDevice(named, where);
    for (const [name, p] of named) {
      if (!isFloat(p.dtype) || p.dtype === 'f64') throw new Error(`ZeroStage3: parameter "${name}" has dtype ${p.dtype}; expected f32, bf16 or f16`);
    }
    const { trained, frozen } = splitTrainable(named, opts.trainable, where);
    broadcastState(model, this.group, true);
    const all: Stage3Param[] = [];
    let inCpu = this.offloadParam.maxInCpu;        // nvme: partition elements kept in host memory, over all dtypes
    const dtypes = [...new Set(named.map(([, p]) => p.dtype))];
    try {
      // Trained groups first (partition files numbered by dtype as before), then the frozen ones.
      for (const [list, train] of [[trained, true], [frozen, false]] as const) {
        for (const [i, dtype] of dtypes.entries()) {
          const mine = list.filter(([, p]) => p.dtype === dtype);
          if (mine.length === 0) continue;
          const g = this.buildGroup(mine, train ? i : dtypes.length + i, inCpu, train);
          inCpu -= g.store instanceof NvmeParamStore ? g.store.cpuNumel : 0;
          if (trains(g)) this.groups.push(g);
          else this.frozen.push(g);
          all.push(...g.params);
        }
      }
    } catch (e) {
      for (const g of this.groups) g.opt.destroy();        // no nvme file outlives a failed construction
      for (const g of [...this.groups, ...this.frozen]) g.store.destroy();
      throw e;
    }
    this.coordinator = new ParamCoordinator(this.group, model, all, {
      device: this.device, prefetchBucketSize: this.prefetchBucketSize, maxLiveParameters: this.maxLiveParameters, maxReuseDistance: this.maxReuseDistance,
    });
    for (const [, m] of model.namedModules()) for (const t of externalParameters(m)) if (this.byTensor.has(t)) this.coordinator.registerExternal(m, t);
    // Each parameter's own memory goes: persistent ones are gathered (padded) from the partitions, the rest released.
    for (const p of all) {
      if (p.persistent) continue;
      // Backward reads the parameter as gathered then, so a saved alias does not pin a gathered copy.
      saveByReference(p.param);
      this.coordinator.release(p);
    }
    for (const p of all) {
      if (!p.persistent) continue;
      p.state = 'released';
      this.coordinator.fetch([p]);
    }
    const strides = new Map(this.groups.map((g) => [g.dtype, Math.min(Math.ceil(this.reduceBucketSize / this.group.size), g.store.n)]));
    this.reducer = new Stage3GradReducer(this.group, strides, this.overlapComm, this.device);
    this.hook = model.registerParamGradHook((_, t) => this.onGradReady(t));
  }

  /** Elements of the trained parameters (the memory report's Ψ). */
  get trainedNumel(): number {
    return this.groups.reduce((n, g) => n + g.numel, 0);
  }

  /** The frozen parameters' names (partitioned and gathered, neither reduced nor stepped). */
  frozenNames(): string[] {
    return this.frozen.flatMap((g) => g.params.map((p) => p.name));
  }

  /** This rank's partition of each trained dtype (for reports and tests): parameter elements, shard elements, persistent elements. */
  partitions(): { dtype: DType; numel: number; partitionNumel: number; persistentNumel: number }[] {
    return this.groups.map((g) => ({
      dtype: g.dtype, numel: g.numel, partitionNumel: g.store.n,
      persistentNumel: g.params.reduce((n, p) => n + (p.persistent ? p.shard.padded : 0), 0),
    }));
  }

  /**
   * Where each dtype's parameter partition lives (offload_param): elements in memory (the shared
   * arena for device none, the CPU offload pool otherwise) and in the nvme file, the swap buffers'
   * elements (nvme: bufferCount of them at most, allocated as needed) and the shard reads so far.
   * @example
   * zero.paramOffload()[0]   // { dtype: 'f32', device: 'nvme', inMemory: 0, inFile: 15000, file: '/nvme/meshtrain-param-rank0-g0-f32-p4242-0.swp', swapBufferNumel: 2048, reads: { ahead: 40, hits: 38, blocking: 6 } }
   */
  paramOffload(): { dtype: DType; device: 'none' | 'cpu' | 'nvme'; inMemory: number; inFile: number; file: string | null; swapBufferNumel: number; reads: { ahead: number; hits: number; blocking: number } }[] {
    return this.groups.map(({ dtype, store: s }) => {
      if (!(s instanceof NvmeParamStore)) return { dtype, device: s.device, inMemory: s.n, inFile: 0, file: null, swapBufferNumel: 0, reads: { ahead: 0, hits: 0, blocking: 0 } };
      return { dtype, device: s.device, inMemory: s.cpuNumel, inFile: s.fileNumel, file: s.file, swapBufferNumel: s.bufferNumel, reads: { ...s.reads } };
    });
  }

  /**
   * Memory beyond ZeRO's formula (16Ψ/N for mixed-precision Adam) that this rank holds between
   * steps, for the engine's memory report: the persistent parameters (kept gathered, tag
   * 'param') and the pooled gradient buckets (tag 'grad').
   */
  memoryBuffers(): { name: string; tag: MemoryTag; bytes: number; note: string }[] {
    const out: { name: string; tag: MemoryTag; bytes: number; note: string }[] = [];
    const pooled = this.reducer.pooled();
    for (const p of this.partitions()) {
      const size = itemSize(p.dtype);
      if (p.persistentNumel > 0) {
        out.push({ name: 'stage-3 persistent parameters', tag: 'param', bytes: p.persistentNumel * size, note: `${p.persistentNumel} ${p.dtype} elements (padded) of parameters of at most ${this.paramPersistenceThreshold} elements, kept gathered` });
      }
      const mine = pooled.filter((b) => b.dtype === p.dtype);
      const n = mine.reduce((a, b) => a + b.numel, 0);
      if (n > 0) out.push({ name: 'stage-3 gradient buckets', tag: 'grad', bytes: n * size, note: `${mine.length} pooled buckets of ${p.dtype}, ${n} elements (world x stride inputs and stride outputs; stride = reduce_bucket_size / N, or one shard)` });
    }
    for (const g of this.frozen) {
      const size = itemSize(g.dtype);
      const kept = g.params.reduce((n, p) => n + (p.persistent ? p.shard.padded : 0), 0);
      const note = `${g.numel} ${g.dtype} elements of frozen parameters: this rank's shards${kept > 0 ? `, and ${kept} kept gathered` : ''}`;
      out.push({ name: 'stage-3 frozen parameters', tag: 'param', bytes: (g.store.n + kept) * size, note });
    }
    return out;
  }

  /**
   * Gather statistics: all-gathers launched ahead in the last forward and backward, the peak of
   * gathered non-persistent elements, and the parameter all-gathers launched so far.
   */
  prefetchStats(): { prefetched: number; prefetchedBackward: number; peakLive: number; allGathers: number } {
    const { forward, backward } = this.coordinator.prefetched;
    return { prefetched: forward, prefetchedBackward: backward, peakLive: this.coordinator.peakLive, allGathers: this.coordinator.allGathers };
  }

  /** Gathers `param` around `module`'s forward and backward too (DeepSpeed's register_external_parameter). */
  registerExternalParameter(module: Module, param: Tensor): void {
    this.live();
    this.coordinator.registerExternal(module, param);
  }

  /**
   * Runs `fn` with `params` (default: every parameter) gathered to their full values, then
   * releases them (DeepSpeed's GatheredParameters). Collective: every rank calls it. Without
   * `modifierRank`, values written inside are dropped; with it, that rank's values after `fn`
   * are broadcast and become every rank's shards (and fp32 masters): loading weights into a
   * partitioned model.
   * @example
   * zero.gathered(() => { if (rank === 0) model.loadStateDict(pretrained); }, undefined, { modifierRank: 0 });
   */
  gathered<T>(fn: () => T, params?: Tensor[], opts: { modifierRank?: number } = {}): T {
    this.live();
    const list = params?.map((t) => {
      const e = this.byTensor.get(t);
      if (!e) throw new Error(`ZeroStage3.gathered: ${t} is not a parameter of this optimizer's model`);
      return e.p;
    });
    const src = opts.modifierRank;
    if (src !== undefined && !(Number.isInteger(src) && src >= 0 && src < this.group.size)) {
      throw new Error(`ZeroStage3.gathered: modifierRank must be a rank of the group (0..${this.group.size - 1}), got ${String(src)}`);
    }
    return this.coordinator.gathered(() => {
      const out = fn();
      if (src !== undefined) this.writeBack(list ?? [...this.byTensor.values()].map((e) => e.p), src);
      return out;
    }, list);
  }

  partitionShards(opts: { optimizer?: boolean } = {}): PartitionShard[] {
    this.live();
    const out: PartitionShard[] = [];
    for (const g of [...this.groups, ...this.frozen]) {
      for (const p of g.params) {
        const s = p.shard;
        if (s.valid === 0) continue;
        const fullShape = [...p.param.shape];
        const shardRange: [number, number] = [s.paramStart, s.paramStart + s.valid];
        out.push({ name: p.name, fullShape, dtype: g.dtype, shardRange, data: g.store.view(s.offset, s.valid), group: 'model' });
        if (opts.optimizer === false || !trains(g)) continue;
        for (const sname of g.opt.slots) {
          out.push({ name: `optimizer.${p.name}.${sname}`, fullShape, dtype: 'f32', shardRange, data: g.opt.stateView(sname, s.offset, s.valid), group: 'optimizer' });
        }
      }
    }
    return out;
  }

  /** nvme: the optimizer state and parameter partitions `partitionShards()` read into memory go back to their files and are freed. */
  flushOffload(): void {
    this.live();
    for (const g of this.groups) g.opt.flush();
    for (const g of [...this.groups, ...this.frozen]) g.store.flush();
  }

  clearOptimizerState(): void {
    this.live();
    for (const g of this.groups) g.opt.clearState();
  }

  syncMasters(): void {
    this.live();
    for (const g of this.groups) {
      if (!g.opt.slots.includes('master')) continue;
      for (const [lo, len] of g.store.regions()) {
        const from = g.store.view(lo, len);
        const to = g.opt.stateView('master', lo, len);
        k.copyInto(from, to);
        from.dispose();
        to.dispose();
      }
      g.store.flush();
    }
  }

  /** `loss.backward(grad)`: parameters gathered per module, each gradient reduce-scattered onto its owner when ready. */
  backward(loss: Tensor, grad?: Tensor): void {
    this.live();
    if (this.running) throw new Error('ZeroStage3.backward: a backward pass is already running');
    for (const { p } of this.byTensor.values()) dropGrad(p.param);
    this.running = true;
    this.coordinator.beginBackward();
    try {
      loss.backward(grad);
      this.reducer.finish();
    } catch (e) {
      this.reducer.abort();
      throw e;
    } finally {
      this.running = false;
      this.coordinator.endBackward();
    }
  }

  zeroGrad(): void {
    this.live();
    for (const g of this.groups) k.fill(g.partGrad, 0);
  }

  step(beforeUpdate?: BeforeUpdate): boolean {
    if (!this.stepPartition(beforeUpdate)) return false;
    this.allGatherParameters();
    return true;
  }

  stepPartition(beforeUpdate?: BeforeUpdate): boolean {
    this.live();
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

  /** Whether `stepDecided` can take the next step (every partition's state and parameters on the GPU, the state made by a plain step). */
  canStepDecided(): boolean {
    return !this.destroyed && decidedRefusal(this.decidedParts()) === null;
  }

  /**
   * `step()` decided on the device, nothing read back (src/zero/decided_step.ts): the decision into
   * `o.decision`, each partition's update obeying it, then the gathered parameters refreshed.
   * `steps` advances as if the step ran; the returned function takes it back (a skip).
   */
  stepDecided(o: DecidedZeroStep): () => void {
    this.live();
    return stepPartitionsDecided(this, 'ZeroStage3.stepDecided', this.decidedParts(), o);
  }

  /** Refreshes the gathered parameters (the persistent ones, and any held by `gathered()`) from the partitions. */
  allGatherParameters(): void {
    this.live();
    for (const g of this.groups) g.opt.flush();           // offloaded state that checkpoint views changed (nvme)
    for (const g of [...this.groups, ...this.frozen]) g.store.flush();
    this.coordinator.refreshGathered();
  }

  /**
   * Removes the hooks and gives every parameter its full values back in its own memory (the
   * model trains without ZeRO afterwards); frees the partitions. Collective.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.hook.remove();
    this.coordinator.destroy();
    for (const { p } of this.byTensor.values()) {
      dropGrad(p.param);
      saveByReference(p.param, false);
      this.coordinator.gathered(() => {
        const own = Tensor.empty(p.param.shape, { dtype: p.param.dtype, tag: 'param', device: this.device });
        k.copyInto(p.param, own);
        own.storage.retain();
        p.param.rebind(own.storage, 0);
        own.dispose();
        // Its memory is its own now: never released again (set before gathered() releases it on return).
        p.persistent = true;
      }, [p]);
    }
    this.destroyed = true;
    for (const g of this.groups) {
      g.store.destroy();
      g.partGrad.dispose();
      g.opt.destroy();
    }
    for (const g of this.frozen) g.store.destroy();
    this.reducer.destroy();
  }

  // ---- internals ---------------------------------------------------------------------------

  private live(): void {
    if (this.destroyed) throw new Error('ZeroStage3: this optimizer was destroyed');
  }

  /**
   * Partitions one dtype's parameters: each rank copies its shard of each (rank 0's values,
   * broadcast), into the shared arena, the CPU offload pool, or (nvme) a staging copy written to
   * the file (its first `inCpu` elements, up to a shard boundary, kept in host memory).
   */
  private buildGroup(named: [string, Tensor][], index: number, inCpu: number, train: boolean): DTypeGroup | FrozenGroup {
    const { size, rank } = this.group;
    const dtype = named[0][1].dtype;
    const plan = planPartition(named.map(([name, t]) => ({ name, numel: t.numel })), size, rank);
    const device = this.offloadParam.device;
    let part: Tensor;
    // Offloaded partitions of a GPU's parameters are pinned: they are copied to and from it every step.
    if (device === 'none') part = this.group.sharedEmpty([plan.numel], { dtype, tag: 'param', device: this.device });
    else if (device === 'cpu' && this.device !== 'cpu') part = pinnedEmpty([plan.numel], { dtype, tag: 'param', offloadPool: true });
    else if (device === 'cpu') part = new Tensor(Storage.inOffloadPool(plan.numel * itemSize(dtype), 'param', false), [plan.numel], [1], 0, dtype);
    else part = k.empty([plan.numel], dtype, 'param');
    keepTensor(k.fill(part, 0));
    const params: Stage3Param[] = [];
    named.forEach(([name, param], i) => {
      const shard = plan.shards[i];
      if (shard.valid > 0) {
        const src = param.isContiguous ? param : k.copy(param);
        const from = flatView(src, shard.paramStart, shard.valid);
        const to = flatView(part, shard.offset, shard.valid);
        k.copyInto(from, to);
        from.dispose();
        to.dispose();
        if (src !== param) src.dispose();
      }
      const p: Stage3Param = {
        name, param, shard, store: null as unknown as ParamStore, lease: null, persistent: param.numel <= this.paramPersistenceThreshold, placeholder: null,
        state: 'gathered', buffer: null, work: null, holders: new Set(), backwardHold: false, modules: [],
      };
      params.push(p);
    });
    // The master (a copy of the partition for 16-bit parameters) and the state: DeepSpeed's 12 bytes per parameter for mixed-precision Adam.
    const opt = train ? new PartitionOptimizer(this.hyper, part, { offload: this.offload, name: partitionName(this.group, dtype, index) }) : null;
    let store: ParamStore;
    if (device !== 'nvme') {
      store = new MemoryParamStore(device, part);
    } else {
      try {
        store = this.nvmeStore(part, plan.shards, inCpu, index);
      } catch (e) {
        opt?.destroy();
        throw e;
      } finally {
        part.dispose();
      }
    }
    const numel = named.reduce((n, [, t]) => n + t.numel, 0);
    const g: DTypeGroup | FrozenGroup = opt ? { dtype, store, params, opt, numel, partGrad: keepTensor(k.empty([plan.numel], dtype, 'grad', true, this.device)) } : { dtype, store, params, numel };
    for (const p of params) {
      p.store = store;
      this.byTensor.set(p.param, { g, p });
    }
    return g;
  }

  /** The nvme store of a partition: shards that fit `inCpu` (in order) stay in host memory, the rest go to the file. */
  private nvmeStore(part: Tensor, shards: readonly ParamShard[], inCpu: number, index: number): NvmeParamStore {
    const o = this.offloadParam;
    let cpuNumel = 0;
    for (const s of shards) {
      if (cpuNumel + s.size > inCpu) break;
      cpuNumel += s.size;
    }
    const big = shards.filter((s) => s.offset >= cpuNumel).reduce((a, s) => (s.size > a.size ? s : a), { size: 0, name: '' });
    if (big.size > o.bufferSize) {
      throw new Error(
        `zero_optimization.offload_param.buffer_size: ${o.bufferSize} elements cannot hold the shard of "${big.name}" ` +
        `(${big.size} elements per rank at dp ${this.group.size}); raise buffer_size to at least ${big.size}`,
      );
    }
    const name = `meshtrain-param-${partitionName(this.group, part.dtype, index)}-p${process.pid}-${nvmeStores++}`;
    return new NvmeParamStore(part, { cpuNumel, dir: o.nvmePath as string, name, bufferCount: o.bufferCount, bufferSize: o.bufferSize, largestShard: big.size, pinned: this.device !== 'cpu' });
  }

  /** `src`'s full values of the gathered `list` broadcast, then copied into every rank's shards and masters. */
  private writeBack(list: Stage3Param[], src: number): void {
    for (const p of list) {
      const full = flatView(p.param, 0, p.param.numel);
      try {
        this.group.broadcast(full, src);
        const { g } = this.byTensor.get(p.param) as { g: FrozenGroup };
        const s = p.shard;
        if (s.valid === 0) continue;
        const mine = flatView(full, s.paramStart, s.valid);
        const to = g.store.view(s.offset, s.valid);
        k.copyInto(mine, to);
        if (trains(g) && g.opt.slots.includes('master')) {
          const m = g.opt.stateView('master', s.offset, s.valid);
          k.copyInto(mine, m);
          m.dispose();
        }
        mine.dispose();
        to.dispose();
      } finally {
        full.dispose();
      }
    }
    for (const g of this.groups) g.opt.flush();
    for (const g of [...this.groups, ...this.frozen]) g.store.flush();
  }

  private onGradReady(t: Tensor): void {
    if (!this.running) return;          // a backward this optimizer does not run
    const e = this.byTensor.get(t);
    if (!e) return;
    const grad = t.grad;
    // A frozen parameter that requires a gradient gets one from autograd: dropped, never reduced.
    if (grad && !grad.disposed && trains(e.g)) this.reducer.add({ shard: e.p.shard, partGrad: e.g.partGrad }, grad);
    dropGrad(t);
    this.coordinator.gradReady(e.p);
  }


  /** The trained partitions as a decided step updates them (their parameters in device memory: PartitionOptimizer refuses others). */
  private decidedParts(): DecidedPartition[] {
    return this.groups.map((g) => ({
      dtype: g.dtype,
      opt: g.opt,
      param: () => {
        const src = g.store.stepSource();
        if ('each' in src) throw new Error(`ZeroStage3.stepDecided: the ${g.dtype} parameter partition is offloaded (${this.offloadParam.device}); the host updates it`);
        return src;
      },
      grad: g.partGrad,
    }));
  }

  /** The fused kernel over this rank's partition of a dtype (in sub-groups when offloaded to nvme). */
  private update(g: DTypeGroup, gradScale: number): void {
    g.store.flush();
    g.opt.step(g.store.stepSource(), { dtype: g.partGrad.dtype, id: g.partGrad.id, off: g.partGrad.offset }, this.steps, gradScale);
  }
}
