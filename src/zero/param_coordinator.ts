/**
 * ZeRO stage 3's parameter coordinator: gathers a module's parameters (all-gather of every
 * rank's shard into a full buffer the parameter is re-pointed at) before its forward, releases
 * them after, gathers them again before its backward (an identity op on the module's outputs
 * whose backward gathers) and releases each once its gradient is ready.
 *
 * Prefetch follows DeepSpeed: the first forward records the order modules run in (the trace);
 * later forwards check each module against it and, in a module's pre-hook, launch asynchronous
 * all-gathers for the modules that come next, up to `prefetchBucketSize` elements, while the
 * gathered non-persistent elements stay within `maxLiveParameters`. After a module's forward a
 * parameter that the trace uses again within `maxReuseDistance` elements stays gathered. A
 * forward that departs from the trace (eval vs train, other control flow) stops prefetching
 * there and is traced afresh next time; results never depend on prefetching, only overlap does.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import type { Module, RemovableHandle } from '../nn/module.ts';
import { record } from '../ops/autograd_support.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { flatView } from './comms.ts';
import { ReleasedStorage, releasedMessage } from './released.ts';
import type { ParamShard } from './stage3_partition.ts';

/** One partitioned parameter and its gather state. */
export interface Stage3Param {
  name: string;
  param: Tensor;
  shard: ParamShard;
  /** This rank's partition buffer of the parameter's dtype (its shard at `shard.offset`). */
  part: Tensor;
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
  prefetchBucketSize: number;
  maxLiveParameters: number;
  maxReuseDistance: number;
}

/** Gathers and releases the parameters of a model around its modules' forward and backward. */
export class ParamCoordinator {
  /** Set by the optimizer while its backward runs (recomputation's forwards are not traced). */
  inBackward = false;
  /** Modules in the order their forward ran in the recorded forward (null: none yet or invalid). */
  private trace: Module[] | null = null;
  private recording: Module[] | null = null;
  private cursor = 0;
  /** Elements of non-persistent parameters of trace[0..i) (for reuse distances). */
  private prefix: number[] = [];
  private forwardDepth = 0;
  private readonly byModule = new Map<Module, Stage3Param[]>();
  private readonly handles: RemovableHandle[] = [];
  /** Prefetch launches in the current forward (for tests and reports). */
  prefetched = 0;
  /** Largest number of gathered non-persistent elements seen (padded). */
  peakLive = 0;

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
    this.trace = null;
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

  /** End of a backward pass: everything not persistent or held is released. */
  endBackward(): void {
    for (const p of this.params) {
      p.backwardHold = false;
      this.release(p);
    }
  }

  /** The gathered parameters' (persistent ones, those held) full values refreshed from the partitions (after a step). */
  refreshGathered(): void {
    const works: Work[] = [];
    for (const p of this.params) {
      this.complete(p);
      if (p.state !== 'gathered') continue;
      const full = p.param.alias([p.shard.padded], [1], p.param.offset);
      const mine = flatView(p.part, p.shard.offset, p.shard.size);
      works.push(this.pg.allGather(full, mine, { async: true }));
      full.dispose();
      mine.dispose();
    }
    for (const w of works) w.wait();
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
    const traced = !this.inBackward;
    if (traced && m === this.root && this.forwardDepth === 0) this.beginForward();
    if (traced) this.forwardDepth++;
    const list = this.byModule.get(m) as Stage3Param[];
    for (const p of list) p.holders.add(m);
    if (traced && this.forwardDepth > 0) this.step(m);
    this.fetch(list);
    if (traced && this.trace) this.prefetch();
    return undefined;
  }

  private postForward(m: Module, out: unknown): unknown {
    const list = this.byModule.get(m) as Stage3Param[];
    const traced = !this.inBackward;
    for (const p of list) {
      p.holders.delete(m);
      if (!(traced && this.reusedSoon(p))) this.release(p);
    }
    if (traced) {
      this.forwardDepth = Math.max(0, this.forwardDepth - 1);
      if (m === this.root && this.forwardDepth === 0) this.endForward();
    }
    return this.wrap(list, out);
  }

  /** The module's outputs pass through an identity whose backward gathers its parameters again. */
  private wrap(list: Stage3Param[], out: unknown): unknown {
    if (list.length === 0 || list.every((p) => p.persistent)) return undefined;
    const one = (t: Tensor): Tensor => {
      if (!t?.requiresGrad || typeof t.alias !== 'function') return t;
      return record('zero3.gatherForBackward', [t], t.alias(), () => (g) => {
        for (const p of list) p.backwardHold = true;
        this.fetch(list);
        return [g];
      });
    };
    if (Array.isArray(out)) return out.map((t) => (isTensor(t) ? one(t) : t));
    if (isTensor(out)) {
      const w = one(out);
      return w === out ? undefined : w;
    }
    return undefined;
  }

  // ---- trace and prefetch ------------------------------------------------------------------

  private beginForward(): void {
    this.cursor = 0;
    this.prefetched = 0;
    if (!this.trace) this.recording = [];
  }

  /** Notes the module in the trace being recorded, or checks it against the recorded one. */
  private step(m: Module): void {
    if (this.recording) {
      this.recording.push(m);
      return;
    }
    if (!this.trace) return;
    if (this.trace[this.cursor] === m) {
      this.cursor++;
      return;
    }
    this.trace = null;           // another order: no prefetch for the rest of this forward, re-trace next time
  }

  private endForward(): void {
    if (this.recording) {
      this.trace = this.recording;
      this.recording = null;
      this.prefix = [0];
      for (const m of this.trace) {
        const n = (this.byModule.get(m) as Stage3Param[]).reduce((s, p) => s + (p.persistent ? 0 : p.shard.numel), 0);
        this.prefix.push(this.prefix[this.prefix.length - 1] + n);
      }
    } else if (this.trace && this.cursor !== this.trace.length) {
      this.trace = null;
    }
    for (const p of this.params) this.release(p);
  }

  /** Launches all-gathers for the modules after the cursor, within the prefetch and live budgets. */
  private prefetch(): void {
    const trace = this.trace as Module[];
    let budget = 0;
    let live = this.liveElements;
    for (let j = this.cursor; j < trace.length && budget < this.opts.prefetchBucketSize; j++) {
      for (const p of this.byModule.get(trace[j]) as Stage3Param[]) {
        if (p.persistent) continue;
        budget += p.shard.numel;
        if (p.state !== 'released') continue;
        if (live + p.shard.padded > this.opts.maxLiveParameters) return;
        this.launch(p);
        live += p.shard.padded;
        this.prefetched++;
      }
    }
    this.notePeak();
  }

  /** Whether the trace uses `p` again within maxReuseDistance elements after the current module. */
  private reusedSoon(p: Stage3Param): boolean {
    const trace = this.trace;
    if (!trace || this.recording || p.persistent) return false;
    const here = this.cursor - 1;
    for (let j = this.cursor; j < trace.length; j++) {
      if (this.prefix[j] - this.prefix[here + 1] > this.opts.maxReuseDistance) return false;
      if ((this.byModule.get(trace[j]) as Stage3Param[]).includes(p)) return true;
    }
    return false;
  }

  // ---- gathering ---------------------------------------------------------------------------

  private launch(p: Stage3Param): void {
    const buffer = this.pg.sharedEmpty([p.shard.padded], { dtype: p.param.dtype, tag: 'param' });
    buffer.kept = true;
    const mine = flatView(p.part, p.shard.offset, p.shard.size);
    try {
      p.work = this.pg.allGather(buffer, mine, { async: true });
    } finally {
      mine.dispose();
    }
    p.buffer = buffer;
    p.state = 'inflight';
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
    p.state = 'gathered';
  }

  private placeholderOf(p: Stage3Param): ReleasedStorage {
    p.placeholder ??= new ReleasedStorage(releasedMessage(p.name, p.param.shape, p.modules));
    return p.placeholder;
  }

  private notePeak(): void {
    this.peakLive = Math.max(this.peakLive, this.liveElements);
  }
}

function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'requiresGrad' in v && 'alias' in v;
}
