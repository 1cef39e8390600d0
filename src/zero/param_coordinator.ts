/**
 * ZeRO stage 3's parameter coordinator: gathers a module's parameters (all-gather of every
 * rank's shard into a full buffer the parameter is re-pointed at) before its forward, releases
 * them after, gathers them again before its backward (an identity op on the module's outputs
 * whose backward gathers) and releases each once its gradient is ready.
 *
 * Prefetch follows DeepSpeed: the first forward and backward record the order modules run in
 * (module_trace.ts); later passes check each module against it and, when a module's parameters
 * are gathered, launch asynchronous all-gathers for the modules that come next, up to
 * `prefetchBucketSize` elements, while the gathered non-persistent elements stay within
 * `maxLiveParameters`. After a module's forward a parameter that the forward order uses again
 * within `maxReuseDistance` elements stays gathered. A pass that departs from its order (eval vs
 * train, other control flow) stops prefetching there and is traced afresh next time; results
 * never depend on prefetching, only overlap does. Every rank makes the same decisions, so the
 * collectives stay in step. A shard offloaded to an nvme file is read ahead into a free swap
 * buffer along the same order, and gathered ahead only once its read was started: the read, not
 * the all-gather, is what waits on the file (when every buffer feeds a gather, one completes first).
 * Buffer states follow the calls only (a read counts once started, never by its timing) and every
 * rank's shards have the same sizes, so these decisions agree across ranks too.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import { Module, type RemovableHandle } from '../nn/module.ts';
import { record } from '../ops/autograd_support.ts';
import * as k from '../ops/kernels.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { ModuleTrace } from './module_trace.ts';
import type { ParamStore, ShardLease } from './offload/param_store.ts';
import { ReleasedStorage, releasedMessage } from './released.ts';
import type { ParamShard } from './stage3_partition.ts';

/** One partitioned parameter and its gather state. */
export interface Stage3Param {
  name: string;
  param: Tensor;
  shard: ParamShard;
  /** Where this rank's partition of the parameter's dtype lives (its shard at `shard.offset`): memory or an nvme file. */
  store: ParamStore;
  /** The shard's memory an in-flight all-gather reads (given back when it completes). */
  lease: ShardLease | null;
  /** Small parameters stay gathered between uses (numel ≤ paramPersistenceThreshold). */
  persistent: boolean;
  placeholder: ReleasedStorage | null;
  state: 'released' | 'inflight' | 'gathered';
  /** The all-gather's output while in flight. */
  buffer: Tensor | null;
  work: Work | null;
  /** Modules (or `gathered()` calls) whose forward is running and needs it. */
  holders: Set<object>;
  /** Gathered for backward and its gradient not ready yet. */
  backwardHold: boolean;
  /** Names of the modules that gather it (for the error of a released read). */
  modules: string[];
}

export interface PrefetchOptions {
  /** Where gathered parameters live (default 'cpu'); partitions elsewhere (offloaded) are copied there first. */
  device?: Device;
  prefetchBucketSize: number;
  maxLiveParameters: number;
  maxReuseDistance: number;
}

/** Gathers and releases the parameters of a model around its modules' forward and backward. */
export class ParamCoordinator {
  /** Set by the optimizer while its backward runs (recomputation's forwards are not traced). */
  inBackward = false;
  /** The modules' forward order, and the order their gathers for backward run in. */
  private readonly fwd = new ModuleTrace();
  private readonly bwd = new ModuleTrace();
  /** Elements of non-persistent parameters of fwd.order[0..i) (for reuse distances), for `prefixOf`. */
  private prefix: number[] = [];
  private prefixOf: Module[] | null = null;
  /** Trace positions of the modules whose forward is running (innermost last; -1: untraced). */
  private readonly positions: number[] = [];
  private forwardDepth = 0;
  private readonly byModule = new Map<Module, Stage3Param[]>();
  private readonly handles: RemovableHandle[] = [];
  /** All-gathers launched ahead in the last forward and the last backward (for tests and reports). */
  prefetched = { forward: 0, backward: 0 };
  /** Largest number of gathered non-persistent elements seen (padded). */
  peakLive = 0;
  /** Parameter all-gathers launched so far. */
  allGathers = 0;

  constructor(
    private readonly pg: ProcessGroup,
    private readonly root: Module,
    readonly params: readonly Stage3Param[],
    private readonly opts: PrefetchOptions,
  ) {
    const byTensor = new Map(params.map((p) => [p.param, p]));
    for (const [name, m] of root.namedModules()) {
      const own = m.parameters({ recurse: false }).map((t) => byTensor.get(t)).filter((p): p is Stage3Param => p !== undefined);
      for (const p of own) p.modules.push(name);
      if (own.length > 0 || m === root) this.hook(m, own);
    }
  }

  /** Gathers `param` with `module` too: it is used in `module`'s forward but belongs to another module (GPT's tied head). */
  registerExternal(module: Module, param: Tensor): void {
    const p = this.params.find((q) => q.param === param);
    if (!p) throw new Error(`registerExternalParameter: ${param} is not a parameter of the model this ZeRO stage 3 optimizer partitions`);
    const name = this.root.namedModules().find(([, m]) => m === module)?.[0];
    if (name === undefined) throw new Error(`registerExternalParameter: the ${module.constructor.name} is not a module of the partitioned model`);
    const list = this.byModule.get(module);
    if (list) {
      if (!list.includes(p)) list.push(p);
    } else {
      this.hook(module, [p]);
    }
    if (!p.modules.includes(name)) p.modules.push(name);
    // The error text names the gathering modules: a released parameter gets the new one.
    p.placeholder = null;
    if (p.state === 'released') p.param.rebind(this.placeholderOf(p), 0);
    this.fwd.reset();
    this.bwd.reset();
  }

  /** Gathered non-persistent elements (padded) now. */
  get liveElements(): number {
    let n = 0;
    for (const p of this.params) if (!p.persistent && p.state !== 'released') n += p.shard.padded;
    return n;
  }

  /** Gathers `list` (all of it launched before any is waited for). */
  fetch(list: readonly Stage3Param[]): void {
    for (const p of list) if (p.state === 'released') this.launch(p);
    for (const p of list) this.complete(p);
    this.notePeak();
  }

  /** Releases `p` unless it is persistent or still needed. */
  release(p: Stage3Param): void {
    if (p.persistent || p.holders.size > 0 || p.backwardHold || p.state === 'released') return;
    if (p.state === 'inflight') {
      // Every rank issued this all-gather; it must complete before its buffer goes.
      (p.work as Work).wait();
      (p.buffer as Tensor).dispose();
      p.buffer = null;
      p.work = null;
      this.giveBack(p);
    } else {
      p.param.rebind(this.placeholderOf(p), 0);
    }
    p.state = 'released';
  }

  /** Runs `fn` with `params` (default: all) gathered, then releases them. */
  gathered<T>(fn: () => T, params: readonly Stage3Param[] = this.params): T {
    const token = {};
    for (const p of params) p.holders.add(token);
    try {
      this.fetch(params);
      return fn();
    } finally {
      for (const p of params) {
        p.holders.delete(token);
        this.release(p);
      }
    }
  }

  /** A parameter's gradient is complete: it is no longer needed for backward. */
  gradReady(p: Stage3Param): void {
    p.backwardHold = false;
    this.release(p);
  }

  /** Start of a backward pass run by the optimizer. */
  beginBackward(): void {
    this.inBackward = true;
    this.prefetched.backward = 0;
    this.bwd.begin();
  }

  /** End of a backward pass: everything not persistent or held is released. */
  endBackward(): void {
    this.inBackward = false;
    this.bwd.end();
    for (const p of this.params) {
      p.backwardHold = false;
      this.release(p);
    }
  }

  /** The gathered parameters' (persistent ones, those held) full values refreshed from the partitions (after a step). */
  refreshGathered(): void {
    for (const p of this.params) this.complete(p);
    const todo = this.params.filter((p) => p.state === 'gathered');
    const works: Work[] = [];
    const leases: ShardLease[] = [];
    const settle = () => {
      for (const w of works.splice(0)) w.wait();
      for (const l of leases.splice(0)) l.release();
    };
    // nvme: the shards are read ahead into the free swap buffers while earlier ones are gathered (unless prefetch is off).
    let ahead = 0;
    const readAhead = () => {
      if (this.opts.prefetchBucketSize === 0) return;
      for (; ahead < todo.length; ahead++) {
        const q = todo[ahead];
        if (q.store.streams && !q.store.prefetch(q.shard.offset, q.shard.size)) return;
      }
    };
    try {
      for (const [i, p] of todo.entries()) {
        ahead = Math.max(ahead, i);
        readAhead();
        if (!p.store.ready(p.shard.offset, p.shard.size) && !p.store.hasRoom()) settle();   // every swap buffer feeds a gather
        const full = p.param.alias([p.shard.padded], [1], p.param.offset);
        const mine = p.store.acquire(p.shard.offset, p.shard.size);
        leases.push(mine);
        const shard = this.onDevice(mine.tensor);
        try {
          works.push(this.pg.allGather(full, shard, { async: true }));
        } finally {
          full.dispose();
          if (shard !== mine.tensor) shard.dispose();
        }
      }
    } finally {
      settle();
    }
  }

  /** Removes the hooks. */
  destroy(): void {
    for (const h of this.handles) h.remove();
    this.handles.length = 0;
  }

  // ---- hooks -------------------------------------------------------------------------------

  private hook(m: Module, own: Stage3Param[]): void {
    this.byModule.set(m, own);
    this.handles.push(m.registerForwardPreHook((mod) => this.preForward(mod)));
    this.handles.push(m.registerForwardHook((mod, _args, out) => this.postForward(mod, out)));
  }

  private preForward(m: Module): undefined {
    // Forwards re-run by checkpoint's recomputation in backward are not part of the forward order.
    const traced = !this.inBackward;
    if (traced && m === this.root) {
      if (this.forwardDepth !== 0) this.abandonForward();
      this.fwd.begin();
      this.prefetched.forward = 0;
    }
    const list = this.byModule.get(m) as Stage3Param[];
    for (const p of list) p.holders.add(m);
    const pos = traced ? this.fwd.step(m) : -1;
    if (traced) {
      this.forwardDepth++;
      this.positions.push(pos);
    }
    this.fetch(list);
    if (pos >= 0) this.prefetched.forward += this.prefetch(this.fwd.order as Module[], pos + 1);
    return undefined;
  }

  private postForward(m: Module, out: unknown): unknown {
    const list = this.byModule.get(m) as Stage3Param[];
    const traced = !this.inBackward;
    const pos = traced ? (this.positions.pop() ?? -1) : -1;
    for (const p of list) {
      p.holders.delete(m);
      if (!(pos >= 0 && this.reusedSoon(p, pos))) this.release(p);
    }
    if (traced) {
      this.forwardDepth = Math.max(0, this.forwardDepth - 1);
      if (m === this.root && this.forwardDepth === 0) this.endForward();
    }
    return this.wrap(m, list, out);
  }

  /** The module's outputs pass through an identity whose backward gathers its parameters again. */
  private wrap(m: Module, list: Stage3Param[], out: unknown): unknown {
    if (list.length === 0 || list.every((p) => p.persistent)) return undefined;
    const one = (t: Tensor): Tensor => {
      if (!t?.requiresGrad || typeof t.alias !== 'function') return t;
      return record('zero3.gatherForBackward', [t], t.alias(), (node) => {
        node.handsGradOn = true; // an activation's backward may still be applied past it (grad_through.ts)
        return (g) => {
          this.preBackward(m, list);
          return [g.alias()]; // a handle, not g itself: the engine would copy g
        };
      });
    };
    if (Array.isArray(out)) return out.map((t) => (isTensor(t) ? one(t) : t));
    if (isTensor(out)) {
      const w = one(out);
      return w === out ? undefined : w;
    }
    // A plain object of outputs ({ logits, hidden }): each tensor in it.
    if (typeof out === 'object' && out !== null && Object.getPrototypeOf(out) === Object.prototype) {
      return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, isTensor(v) ? one(v) : v]));
    }
    return undefined;
  }

  /** Gathers a module's parameters for its backward, and prefetches along the backward order. */
  private preBackward(m: Module, list: Stage3Param[]): void {
    for (const p of list) p.backwardHold = true;
    const pos = this.inBackward ? this.bwd.step(m) : -1;
    this.fetch(list);
    if (pos >= 0) this.prefetched.backward += this.prefetch(this.bwd.order as Module[], pos + 1);
  }

  // ---- trace and prefetch ------------------------------------------------------------------

  /** The last forward threw part-way: its modules' holds are dropped and what they gathered released. */
  private abandonForward(): void {
    this.forwardDepth = 0;
    this.positions.length = 0;
    this.fwd.reset();
    for (const p of this.params) {
      for (const h of p.holders) if (h instanceof Module) p.holders.delete(h);
      this.release(p);
    }
  }

  private endForward(): void {
    this.fwd.end();
    for (const p of this.params) this.release(p);
  }

  /**
   * Launches all-gathers for the modules of `order` from `from` on, within the prefetch and live
   * budgets (offloaded shards: those already read ahead); then starts file reads of the shards
   * that come next, into the free swap buffers. Returns how many all-gathers it launched.
   */
  private prefetch(order: Module[], from: number): number {
    let launched = 0;
    let budget = 0;
    let live = this.liveElements;
    let j = from;
    gathers: for (; j < order.length && budget < this.opts.prefetchBucketSize; j++) {
      for (const p of this.byModule.get(order[j]) as Stage3Param[]) {
        if (p.persistent) continue;
        budget += p.shard.numel;
        if (p.state !== 'released') continue;
        if (live + p.shard.padded > this.opts.maxLiveParameters) break gathers;
        // An offloaded shard is gathered ahead only once read ahead: the read, not the gather, waits on the file.
        if (!p.store.ready(p.shard.offset, p.shard.size)) break gathers;
        this.launch(p);
        live += p.shard.padded;
        launched++;
      }
    }
    if (this.opts.prefetchBucketSize > 0) this.readAhead(order, from);
    this.notePeak();
    return launched;
  }

  /** Starts file reads of the released shards that come next in `order`, while swap buffers are free. */
  private readAhead(order: Module[], from: number): void {
    for (let j = from; j < order.length; j++) {
      for (const p of this.byModule.get(order[j]) as Stage3Param[]) {
        if (p.persistent || p.state !== 'released' || !p.store.streams) continue;
        if (!p.store.prefetch(p.shard.offset, p.shard.size)) return;
      }
    }
  }

  /** Whether the forward order uses `p` again, after position `here`, within maxReuseDistance elements. */
  private reusedSoon(p: Stage3Param, here: number): boolean {
    const order = this.fwd.order;
    if (!order || p.persistent) return false;
    if (this.prefixOf !== order) {
      this.prefix = [0];
      for (const m of order) {
        const n = (this.byModule.get(m) as Stage3Param[]).reduce((s, q) => s + (q.persistent ? 0 : q.shard.numel), 0);
        this.prefix.push(this.prefix[this.prefix.length - 1] + n);
      }
      this.prefixOf = order;
    }
    for (let j = here + 1; j < order.length; j++) {
      if (this.prefix[j] - this.prefix[here + 1] > this.opts.maxReuseDistance) return false;
      if ((this.byModule.get(order[j]) as Stage3Param[]).includes(p)) return true;
    }
    return false;
  }

  // ---- gathering ---------------------------------------------------------------------------

  private launch(p: Stage3Param): void {
    // nvme: with every swap buffer feeding an in-flight gather, complete one of those first.
    while (!p.store.ready(p.shard.offset, p.shard.size) && !p.store.hasRoom()) {
      const busy = this.params.find((q) => q.lease && q.store === p.store);
      if (!busy) break;
      this.complete(busy);
    }
    const mine = p.store.acquire(p.shard.offset, p.shard.size);
    const device = this.opts.device ?? 'cpu';
    const buffer = this.pg.sharedEmpty([p.shard.padded], { dtype: p.param.dtype, tag: 'param', device });
    buffer.kept = true;
    const shard = this.onDevice(mine.tensor);
    try {
      p.work = this.pg.allGather(buffer, shard, { async: true });
    } catch (e) {
      buffer.dispose();
      mine.release();
      throw e;
    } finally {
      if (shard !== mine.tensor) shard.dispose();
    }
    p.lease = mine;
    p.buffer = buffer;
    p.state = 'inflight';
    this.allGathers++;
  }

  /** An offloaded shard (host memory) of a GPU's parameter copied there for its gather (which holds the copy), else itself. */
  private onDevice(shard: Tensor): Tensor {
    const device = this.opts.device ?? 'cpu';
    return shard.device === device ? shard : k.toDevice(shard, device);
  }

  private giveBack(p: Stage3Param): void {
    p.lease?.release();
    p.lease = null;
  }

  /** Waits for an in-flight gather and points the parameter at the full buffer. */
  private complete(p: Stage3Param): void {
    if (p.state !== 'inflight') return;
    const buffer = p.buffer as Tensor;
    (p.work as Work).wait();
    buffer.storage.retain();
    p.param.rebind(buffer.storage, 0);
    buffer.dispose();
    p.buffer = null;
    p.work = null;
    this.giveBack(p);
    p.state = 'gathered';
  }

  private placeholderOf(p: Stage3Param): ReleasedStorage {
    p.placeholder ??= new ReleasedStorage(releasedMessage(p.name, p.param.shape, p.modules), this.opts.device ?? 'cpu');
    return p.placeholder;
  }

  private notePeak(): void {
    this.peakLive = Math.max(this.peakLive, this.liveElements);
  }
}

function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'requiresGrad' in v && 'alias' in v;
}
