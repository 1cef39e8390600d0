/**
 * DataParallel: the data-parallel baseline (ZeRO stage 0). Every rank holds the whole model and
 * optimizer, runs its share of the batch, and gradients are averaged across the group in buckets
 * while backward is still running, as PyTorch's DistributedDataParallel does:
 *
 * - Parameters are assigned to buckets in reverse registration order (roughly the order their
 *   gradients become ready in backward), up to `bucketBytes` per bucket (a larger parameter gets
 *   a bucket of its own). Each bucket is one flat buffer from `group.sharedEmpty` (the shared
 *   arena, tag 'grad'), so the all-reduce reads peers' buckets in place, without staging copies.
 * - With `gradientAsBucketView` (default) every `p.grad` is a view into its bucket, so backward
 *   accumulates straight into the buffer that is communicated, and optimizers read it unchanged.
 * - A gradient-ready hook counts the parameters of each bucket; when the last one is ready the
 *   bucket's all-reduce('avg') is launched asynchronously and overlaps the rest of backward.
 *   Buckets are launched strictly in order (bucket i+1 waits for bucket i to be ready), so all
 *   ranks issue the same sequence of collectives.
 * - A parameter that got no gradient in a pass (unused) never reports ready: its bucket is
 *   launched after backward with the slot as it is (zero, or what noSync passes accumulated), like
 *   DDP with find_unused_parameters. One unused everywhere ends with a zero gradient, not none.
 */
import { markGradZero } from '../autograd/grad_zero.ts';
import type { Module, RemovableHandle } from '../nn/module.ts';
import * as k from '../ops/kernels.ts';
import { isFloat, itemSize } from '../tensor/dtype.ts';
import { contiguousStrides } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { type BucketLaunch, BucketReducer, broadcastState } from './data_parallel_comms.ts';
import { getWorld } from './distributed.ts';
import { paramDevice } from './param_device.ts';
import type { ProcessGroup } from './process_group.ts';

/** PyTorch DDP's default bucket_cap_mb (DeepSpeed's reduce_bucket_size is 5e8 elements, far larger than a CPU arena). */
export const DEFAULT_BUCKET_BYTES = 25 << 20;

export interface DataParallelOptions {
  /** The data-parallel group (default: the world). */
  group?: ProcessGroup;
  /** Bytes per gradient bucket (default 25 MiB, as DDP); smaller buckets start communicating earlier. */
  bucketBytes?: number;
  /** Make each `p.grad` a view into its bucket (default true): no copies in or out of the buckets. */
  gradientAsBucketView?: boolean;
  /** Also broadcast the module's buffers from rank 0 at construction (default true). */
  broadcastBuffers?: boolean;
}

/** One bucket: its parameters (dotted names, in slot order) and size. */
export interface BucketInfo {
  index: number;
  dtype: string;
  numel: number;
  params: string[];
}

/** What the last synchronizing pass did, in ms since its backward began. */
export interface PassStats {
  /** When loss.backward() returned. */
  backwardMs: number;
  /** When every bucket had been reduced. */
  doneMs: number;
  launches: BucketLaunch[];
}

interface Slot {
  name: string;
  param: Tensor;
  bucket: number;
  offset: number;
  /** The current view of the slot handed out as `param.grad` (view mode), or a private one (copy mode). */
  view: Tensor | null;
}

interface Bucket {
  flat: Tensor;
  slots: Slot[];
  /** Parameters not yet ready in the current pass. */
  pending: number;
}

/**
 * Wraps a module for data-parallel training; construct it on every rank of the group.
 * @example
 * const world = await initDistributed();
 * const dp = new DataParallel(model);                    // rank 0's weights are broadcast
 * const opt = new AdamW(model.parameters(), { lr: 1e-3 });
 * for (const [x, y] of loader) {                         // each rank its own shard of the batch
 *   opt.zeroGrad();
 *   dp.backward(crossEntropy(dp.forward(x), y));         // returns with averaged gradients
 *   opt.step();
 * }
 * // gradient accumulation: communicate only on the last micro-batch
 * dp.noSync(() => dp.backward(div(loss0, 2)));  dp.backward(div(loss1, 2));
 */
export class DataParallel<M extends Module = Module> {
  readonly module: M;
  readonly group: ProcessGroup;
  readonly bucketBytes: number;
  readonly gradientAsBucketView: boolean;
  /** Statistics of the last pass that communicated (null before the first). */
  lastPass: PassStats | null = null;
  private readonly buckets: Bucket[] = [];
  private readonly slotOf = new Map<Tensor, Slot>();
  private readonly hook: RemovableHandle;
  private noSyncDepth = 0;
  private reducer: BucketReducer | null = null;
  private destroyed = false;

  constructor(module: M, opts: DataParallelOptions = {}) {
    const known = ['group', 'bucketBytes', 'gradientAsBucketView', 'broadcastBuffers'];
    for (const key of Object.keys(opts)) if (!known.includes(key)) throw new Error(`DataParallel: unknown option "${key}" (known: ${known.join(', ')})`);
    this.module = module;
    this.group = opts.group ?? getWorld();
    this.bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    if (!(this.bucketBytes > 0)) throw new Error(`DataParallel: bucketBytes must be positive, got ${this.bucketBytes}`);
    this.gradientAsBucketView = opts.gradientAsBucketView ?? true;
    const named = module.namedParameters();
    if (named.length === 0) throw new Error('DataParallel: the module has no parameters');
    paramDevice(named, 'DataParallel');
    for (const [name, p] of named) {
      if (!p.isContiguous) throw new Error(`DataParallel: parameter "${name}" is not contiguous`);
      if (!isFloat(p.dtype)) throw new Error(`DataParallel: parameter "${name}" has dtype ${p.dtype}; gradients need a floating-point dtype`);
    }
    broadcastState(module, this.group, opts.broadcastBuffers ?? true);
    this.assignBuckets(named);
    this.hook = module.registerParamGradHook((_, p) => this.onGradReady(p));
  }

  /** Runs the module's forward. */
  forward(...args: Parameters<M['forward']>): ReturnType<M['forward']> {
    return this.module.forward(...args);
  }

  /** The buckets, in launch order. */
  bucketInfo(): BucketInfo[] {
    return this.buckets.map((b, index) => ({
      index, dtype: b.flat.dtype, numel: b.flat.numel, params: b.slots.map((s) => s.name),
    }));
  }

  /**
   * `loss.backward()` with gradients landing in the buckets; buckets are all-reduced as they
   * fill, and when it returns every `p.grad` holds the group's average (outside `noSync`).
   */
  backward(loss: Tensor, grad?: Tensor): void {
    this.live();
    if (this.reducer) throw new Error('DataParallel.backward: a backward pass of this module is already running');
    this.prepareGradients();
    if (this.noSyncDepth > 0) {
      loss.backward(grad);
      return;
    }
    const t0 = performance.now();
    for (const b of this.buckets) b.pending = b.slots.length;
    const reducer = new BucketReducer(this.group, this.buckets.map((b) => b.flat), t0);
    this.reducer = reducer;
    let backwardMs: number;
    try {
      loss.backward(grad);
      backwardMs = performance.now() - t0;
      this.fillUnready();
      reducer.finish();
    } catch (e) {
      reducer.drain();
      throw e;
    } finally {
      this.reducer = null;
    }
    if (!this.gradientAsBucketView) this.copyOut();
    this.lastPass = { backwardMs, doneMs: performance.now() - t0, launches: reducer.launches };
  }

  /**
   * Runs `fn` (synchronous) with communication off: backward passes inside only accumulate
   * gradients locally, like DDP's no_sync(); the next backward outside reduces the total.
   */
  noSync<T>(fn: () => T): T {
    this.noSyncDepth++;
    try {
      const out = fn();
      if (out instanceof Promise) throw new Error('DataParallel.noSync: fn must be synchronous');
      return out;
    } finally {
      this.noSyncDepth--;
    }
  }

  /**
   * The flat gradient buckets when every parameter's gradient is its bucket view (gradientAsBucketView,
   * after a backward), else null: a reduction over all gradients (overflow check, norm) then reads
   * one value per bucket instead of one per parameter (a host sync each on a GPU).
   */
  gradBuffers(): Tensor[] | null {
    if (!this.gradientAsBucketView) return null;
    for (const s of this.slotOf.values()) if (!s.view || s.view.disposed || s.param.grad !== s.view) return null;
    return this.buckets.map((b) => b.flat);
  }

  /** Zeros every gradient in place (the buckets), keeping the views; an alternative to optimizer.zeroGrad(). */
  zeroGrad(): void {
    this.live();
    for (const b of this.buckets) k.fill(b.flat, 0);
    // Known zeros: backward may write the first gradient over them (autograd/grad_zero.ts).
    for (const s of this.slotOf.values()) if (s.view && s.param.grad === s.view) markGradZero(s.view);
    if (!this.gradientAsBucketView) {
      for (const s of this.slotOf.values()) if (s.param.grad && !s.param.grad.disposed) k.fill(s.param.grad, 0);
    }
  }

  /** Removes the hooks and frees the buckets; the parameters keep copies of their gradients. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.hook.remove();
    for (const s of this.slotOf.values()) {
      if (s.view && s.param.grad === s.view && !s.view.disposed) s.param.grad = k.copy(s.view);
      if (s.view && !s.view.disposed) s.view.dispose();
      s.view = null;
    }
    for (const b of this.buckets) b.flat.dispose();
  }

  // ---- internals ---------------------------------------------------------------------------

  private live(): void {
    if (this.destroyed) throw new Error('DataParallel: this wrapper was destroyed');
  }

  /** Reverse registration order, split by dtype and size; slots inside a bucket in registration order. */
  private assignBuckets(named: [string, Tensor][]): void {
    const open = new Map<string, { members: [string, Tensor][]; bytes: number }>();
    const groups: [string, Tensor][][] = [];
    for (const entry of [...named].reverse()) {
      const p = entry[1];
      const bytes = p.numel * itemSize(p.dtype);
      let cur = open.get(p.dtype);
      if (cur && cur.bytes > 0 && cur.bytes + bytes > this.bucketBytes) {
        groups.push(cur.members);
        cur = undefined;
      }
      if (!cur) {
        cur = { members: [], bytes: 0 };
        open.set(p.dtype, cur);
      }
      cur.members.push(entry);
      cur.bytes += bytes;
    }
    for (const cur of open.values()) groups.push(cur.members);
    for (const members of groups) {
      members.reverse();
      const numel = members.reduce((n, [, p]) => n + p.numel, 0);
      const flat = this.group.sharedEmpty([numel], { dtype: members[0][1].dtype, tag: 'grad', device: members[0][1].device });
      k.fill(flat, 0);     // pre-fault the arena pages now rather than during the first backward
      flat.kept = true;
      const bucket: Bucket = { flat, slots: [], pending: 0 };
      let offset = 0;
      for (const [name, param] of members) {
        const slot: Slot = { name, param, bucket: this.buckets.length, offset, view: null };
        bucket.slots.push(slot);
        this.slotOf.set(param, slot);
        offset += param.numel;
      }
      this.buckets.push(bucket);
    }
  }

  private slotView(s: Slot): Tensor {
    if (!s.view || s.view.disposed) {
      const flat = this.buckets[s.bucket].flat;
      s.view = flat.alias(s.param.shape, contiguousStrides(s.param.shape), flat.offset + s.offset);
      s.view.kept = true;
    }
    return s.view;
  }

  /** View mode: makes every `p.grad` its bucket slot, carrying over a gradient assigned elsewhere (or zero). */
  private prepareGradients(): void {
    if (!this.gradientAsBucketView) return;
    for (const s of this.slotOf.values()) {
      const g = s.param.grad;
      if (g !== null && g === s.view && !g.disposed) continue;
      const v = this.slotView(s);
      if (g !== null && !g.disposed) {
        k.copyInto(g, v);
        g.dispose();
      } else {
        k.fill(v, 0);
        markGradZero(v);
      }
      s.param.grad = v;
    }
  }

  private onGradReady(p: Tensor): void {
    const reducer = this.reducer;
    if (!reducer) return;       // inside noSync, or a backward this wrapper does not run
    const s = this.slotOf.get(p);
    if (!s) return;
    const b = this.buckets[s.bucket];
    if (!this.gradientAsBucketView) this.copyIn(s);
    b.pending--;
    reducer.launchWhile((i) => this.buckets[i].pending === 0, true);
  }

  /** After backward: slots of parameters that never reported ready hold what they hold (copy mode: their grad, or zero). */
  private fillUnready(): void {
    if (this.gradientAsBucketView) return;
    const from = this.reducer?.launched ?? 0;
    for (let i = from; i < this.buckets.length; i++) {
      const b = this.buckets[i];
      if (b.pending === 0) continue;
      for (const s of b.slots) this.copyIn(s);
    }
  }

  /** Copy mode: the parameter's gradient (or zero) into its slot. */
  private copyIn(s: Slot): void {
    const v = this.slotView(s);
    const g = s.param.grad;
    if (g !== null && !g.disposed) k.copyInto(g, v);
    else k.fill(v, 0);
  }

  /** Copy mode: the averaged slots back into the gradients (created where missing). */
  private copyOut(): void {
    for (const s of this.slotOf.values()) {
      const v = this.slotView(s);
      const g = s.param.grad;
      if (g !== null && !g.disposed) {
        k.copyInto(v, g);
      } else {
        const c = k.copy(v);
        c.kept = true;
        s.param.grad = c;
      }
    }
  }
}
