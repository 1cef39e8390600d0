/**
 * ProcessGroup: a set of ranks and the collectives among them. Arguments are validated here,
 * with errors naming the collective, the group and the shapes, before any rank commits to the
 * operation; the backend (communicator.ts) then moves the bytes. Ranks given to a group's
 * methods (roots, peers) are ranks within that group; `ranks[i]` is group rank i's world rank.
 */
import { refuseInCapture } from '../tensor/capture_state.ts';
import { type DType, isFloat } from '../tensor/dtype.ts';
import { fmt, isContiguous, isDense } from '../tensor/shape.ts';
import type { Device, MemoryTag, Storage } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { callSite, describeTensor } from './checker.ts';
import { type Backend, type Communicator, type PendingOp, REDUCE_OPS, type ReduceOp } from './communicator.ts';
import { isLocalCollective, runLocalCollective } from './local_collective.ts';
import { needsStaging, runStaged } from './staging.ts';
import type { StoreClient } from './store.ts';
import { Work } from './work.ts';

export interface OpOptions {
  /** Return at once; the returned Work's `wait()` (or `done`) completes it. */
  async?: boolean;
}

/** What the groups of one process share. */
export interface GroupContext {
  store: StoreClient;
  backend: Backend;
  timeoutMs: number;
  checkCollectives: boolean;
  groups: Set<ProcessGroup>;
}

/** A collective's tensors and which of them it reads and writes (by index), for staging. */
interface Operands {
  tensors: Tensor[];
  inputs: number[];
  outputs: number[];
}
const NO_OPERANDS: Operands = { tensors: [], inputs: [], outputs: [] };

function rankList(ranks: readonly number[]): string {
  const contiguous = ranks.every((r, i) => i === 0 || r === ranks[i - 1] + 1);
  if (contiguous && ranks.length > 2) return `${ranks[0]}-${ranks[ranks.length - 1]}`;
  return ranks.join(',');
}

export class ProcessGroup {
  /** This process's rank in the group. */
  readonly rank: number;
  readonly size: number;
  /** World rank of each group rank. */
  readonly ranks: readonly number[];
  readonly name: string;
  private seq = 0;
  private splits = 0;
  private pending: Work[] = [];
  private comm: Communicator | null;

  constructor(
    comm: Communicator,
    private readonly ctx: GroupContext,
    private readonly prefix: string,
    info: { name: string; rank: number; ranks: number[] },
  ) {
    this.comm = comm;
    this.name = info.name;
    this.rank = info.rank;
    this.ranks = info.ranks;
    this.size = info.ranks.length;
    ctx.groups.add(this);
  }

  get backend(): string {
    return this.live().backend;
  }

  /** "group 'world' (ranks 0-3)" */
  toString(): string {
    const identity = this.ranks.every((r, i) => r === i);
    return `group '${this.name}' (${identity ? 'ranks' : 'global ranks'} ${rankList(this.ranks)})`;
  }

  /** The group rank of world rank `g`, or -1 when it is not a member. */
  groupRank(g: number): number {
    return this.ranks.indexOf(g);
  }

  // ---- collectives -------------------------------------------------------------------------

  /** Reduces `t` over the group, in place on every rank. */
  allReduce(t: Tensor, op: ReduceOp = 'sum', opts: OpOptions = {}): Work {
    const what = `allReduce(${op})`;
    this.checkOp(what, op, t);
    this.checkFlat(what, t, 'tensor');
    return this.issue(what, `${what} of ${describeTensor(t)}`, { tensors: [t], inputs: [0], outputs: [0] }, (c, a, [x]) => c.allReduce(x, op, a), opts);
  }

  /** Reduces `t` over the group into `t` of group rank `dst`; the other ranks' tensors are unchanged. */
  reduce(t: Tensor, dst: number, op: ReduceOp = 'sum', opts: OpOptions = {}): Work {
    const what = `reduce(${op})`;
    this.checkOp(what, op, t);
    this.checkRank(what, dst, 'dst');
    this.checkFlat(what, t, 'tensor');
    return this.issue(what, `${what} to rank ${dst} of ${describeTensor(t)}`, { tensors: [t], inputs: [0], outputs: this.rank === dst ? [0] : [] }, (c, a, [x]) => c.reduce(x, dst, op, a), opts);
  }

  /**
   * Reduces `inp` (size x out.numel elements) over the group; group rank r receives elements
   * [r * out.numel, (r + 1) * out.numel) of the result in `out`.
   */
  reduceScatter(out: Tensor, inp: Tensor, op: ReduceOp = 'sum', opts: OpOptions = {}): Work {
    const what = `reduceScatter(${op})`;
    this.checkOp(what, op, inp);
    this.checkPair(what, out, inp, inp, out);
    return this.issue(what, `${what} of ${describeTensor(inp)} into ${describeTensor(out)}`, { tensors: [out, inp], inputs: [1], outputs: [0] }, (c, a, [o, i]) => c.reduceScatter(o, i, op, a), opts);
  }

  /** Concatenates every rank's `inp` in rank order into `out` (size x inp.numel elements). */
  allGather(out: Tensor, inp: Tensor, opts: OpOptions = {}): Work {
    const what = 'allGather';
    this.checkPair(what, out, inp, out, inp);
    return this.issue(what, `${what} of ${describeTensor(inp)} into ${describeTensor(out)}`, { tensors: [out, inp], inputs: [1], outputs: [0] }, (c, a, [o, i]) => c.allGather(o, i, a), opts);
  }

  /** Copies `t` of group rank `src` into `t` on every rank. */
  broadcast(t: Tensor, src: number, opts: OpOptions = {}): Work {
    const what = 'broadcast';
    this.checkRank(what, src, 'src');
    this.checkFlat(what, t, 'tensor');
    return this.issue(what, `${what} from rank ${src} of ${describeTensor(t)}`, { tensors: [t], inputs: this.rank === src ? [0] : [], outputs: this.rank === src ? [] : [0] }, (c, a, [x]) => c.broadcast(x, src, a), opts);
  }

  /** Blocks until every rank of the group has called barrier() (sync), or returns a Work (async). */
  barrier(opts: OpOptions = {}): Work {
    return this.issue('barrier', 'barrier', NO_OPERANDS, (c, a) => c.barrier(a), opts);
  }

  /** Sends `t` to group rank `dst`, which calls recv() with a tensor of the same size and dtype. */
  send(t: Tensor, dst: number, opts: OpOptions = {}): Work {
    this.checkPeer('send', dst, 'dst');
    this.checkFlat('send', t, 'tensor');
    return this.issue('send', '', { tensors: [t], inputs: [0], outputs: [] }, (c, a, [x]) => c.send(x, dst, a), opts, `send to rank ${dst}`);
  }

  /** Receives into `t` what group rank `src` sends. */
  recv(t: Tensor, src: number, opts: OpOptions = {}): Work {
    this.checkPeer('recv', src, 'src');
    this.checkFlat('recv', t, 'tensor');
    return this.issue('recv', '', { tensors: [t], inputs: [], outputs: [0] }, (c, a, [x]) => c.recv(x, src, a), opts, `recv from rank ${src}`);
  }

  // ---- sub-groups --------------------------------------------------------------------------

  /**
   * Every rank of this group calls split; ranks with the same `color` form a new group, ordered
   * by (`key`, rank). A null or negative color joins no group and resolves to null.
   */
  async split(color: number | null, key: number = this.rank, opts: { name?: string } = {}): Promise<ProcessGroup | null> {
    if (color !== null && !Number.isInteger(color)) throw new Error(`split on ${this}: color must be an integer or null, got ${color}`);
    if (!Number.isFinite(key)) throw new Error(`split on ${this}: key must be a number, got ${key}`);
    const k = this.splits++;
    const prefix = `${this.prefix}/split${k}`;
    const store = this.ctx.store;
    const mine = color === null || color < 0 ? -1 : color;
    await store.set(`${prefix}/${this.rank}`, JSON.stringify([mine, key]));
    if (mine < 0) return null;
    const all = await Promise.all(Array.from({ length: this.size }, async (_, r) => {
      const [c, kk] = JSON.parse(await store.getString(`${prefix}/${r}`, this.ctx.timeoutMs)) as [number, number];
      return { r, c, k: kk };
    }));
    const members = all.filter((e) => e.c === mine).sort((a, b) => a.k - b.k || a.r - b.r);
    const ranks = members.map((m) => this.ranks[m.r]);
    const rank = members.findIndex((m) => m.r === this.rank);
    const name = opts.name ?? `${this.name}.split${k}:${mine}`;
    const split = { parent: this.live(), color: mine, everyRank: all.every((e) => e.c >= 0) };
    const comm = await this.ctx.backend.create({
      store, prefix: `${prefix}/c${mine}`, name, rank, size: ranks.length, globalRanks: ranks, timeoutMs: this.ctx.timeoutMs, split,
    });
    return new ProcessGroup(comm, this.ctx, `${prefix}/c${mine}`, { name, rank, ranks });
  }

  /**
   * A group of the given ranks of this group (every rank of this group calls it); resolves to
   * null on ranks that are not members. Members are ordered by rank.
   */
  async newGroup(ranks: number[], opts: { name?: string } = {}): Promise<ProcessGroup | null> {
    for (const r of ranks) if (!Number.isInteger(r) || r < 0 || r >= this.size) throw new Error(`newGroup on ${this}: rank ${r} is not in the group`);
    if (new Set(ranks).size !== ranks.length) throw new Error(`newGroup on ${this}: ranks ${ranks.join(',')} repeat`);
    return this.split(ranks.includes(this.rank) ? 0 : null, this.rank, opts);
  }

  // ---- memory, settings, teardown ----------------------------------------------------------

  /**
   * A tensor that peers read in place (shm: in this rank's shared arena), so collectives on it
   * skip the staging copies; falls back to ordinary memory when the arena is full or absent.
   * Use it for buffers that are communicated every step (gradient buckets, ZeRO partitions).
   * On a CUDA `device` it is device memory: a backend that accepts it communicates it in place,
   * a host backend stages it (staging.ts).
   * @example
   * const bucket = group.sharedEmpty([1 << 20], { dtype: 'bf16', tag: 'grad', device: 'cuda:0' });
   */
  sharedEmpty(shape: number[], opts: { dtype?: DType; tag?: MemoryTag; device?: Device } = {}): Tensor {
    const dtype = opts.dtype ?? 'f32';
    const tag = opts.tag ?? 'comm';
    const device = opts.device ?? 'cpu';
    if (device !== 'cpu') return Tensor.empty(shape, { dtype, tag, device });
    return this.live().sharedEmpty(shape, dtype, tag) ?? Tensor.empty(shape, { dtype, tag });
  }

  /** The collective timeout of this group (ms). */
  setTimeout(ms: number): void {
    if (!(ms > 0)) throw new Error(`setTimeout on ${this}: the timeout must be positive, got ${ms}`);
    this.live().setTimeout(Math.round(ms));
  }

  /** Waits for this group's outstanding work, then frees its communicator. */
  destroy(): void {
    if (!this.comm) return;
    for (const w of this.pending) {
      try {
        w.wait();
      } catch {
        // reported to whoever holds the Work
      }
    }
    this.pending = [];
    this.comm.destroy();
    this.comm = null;
    this.ctx.groups.delete(this);
  }

  get destroyed(): boolean {
    return this.comm === null;
  }

  // ---- internals ---------------------------------------------------------------------------

  private live(): Communicator {
    if (!this.comm) throw new Error(`${this} was destroyed`);
    return this.comm;
  }

  private issue(
    what: string, description: string, operands: Operands, run: (c: Communicator, async: boolean, tensors: Tensor[]) => PendingOp | null,
    opts: OpOptions, label = what,
  ): Work {
    const comm = this.live();
    const { tensors } = operands;
    // A group of one on a GPU runs on the device (captured like any op); real communication is not
    // captured yet: refused here, on every rank alike and before the sequence number moves, so the
    // communicator stays usable (otherwise NCCL would join the capture and its watchdog, querying
    // a captured event, would abort the group; shm would fail on a host wait).
    const local = isLocalCollective(this.size, tensors) && needsStaging(comm, tensors);
    if (!local) refuseInCapture(`${label} on ${this}`, 'collectives between ranks are not captured into CUDA graphs yet; with more than one rank (or the nccl backend), run this step eagerly');
    const seq = ++this.seq;
    if (this.ctx.checkCollectives && description) comm.check(`${description}\n${callSite()} (collective #${seq} of this group)`);
    const async = opts.async === true;
    const storages: Storage[] = [];
    if (async) {
      for (const t of tensors) {
        t.storage.retain();
        storages.push(t.storage);
      }
    }
    let op: PendingOp | null;
    try {
      // A group of one on a GPU: the identity, done on the device (host staging would wait twice).
      op = local
        ? runLocalCollective(tensors, operands.inputs, operands.outputs)
        : needsStaging(comm, tensors)
        ? runStaged(tensors, operands.inputs, operands.outputs, async, (twins) => run(comm, async, twins))
        : run(comm, async, tensors);
    } catch (e) {
      for (const s of storages) s.release();
      throw e;
    }
    const work = new Work(op, storages, `${label} on ${this}`);
    if (async) {
      // Completed work that nobody waited for still holds its tensors: drop it as we go.
      while (this.pending.length && this.pending[0].isCompleted()) this.pending.shift();
      this.pending.push(work);
    }
    return work;
  }

  private fail(what: string, msg: string): never {
    throw new Error(`${what} on ${this}: ${msg}`);
  }

  private checkOp(what: string, op: ReduceOp, t: Tensor): void {
    if (!REDUCE_OPS.includes(op)) this.fail(what, `unknown reduce op ${JSON.stringify(op)} (expected one of ${REDUCE_OPS.join(', ')})`);
    if (op === 'avg' && !isFloat(t.dtype)) this.fail(what, `'avg' needs a floating-point tensor, got ${describeTensor(t)}; use 'sum'`);
  }

  private checkRank(what: string, r: number, name: string): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.size) this.fail(what, `${name} ${r} is not a rank of the group (0..${this.size - 1})`);
  }

  private checkPeer(what: string, r: number, name: string): void {
    this.checkRank(what, r, name);
    if (r === this.rank) this.fail(what, `${name} ${r} is this rank itself`);
  }

  private checkTensor(what: string, t: Tensor, role: string): void {
    if (!(t instanceof Tensor)) this.fail(what, `the ${role} must be a Tensor`);
    if (t.disposed) this.fail(what, `the ${role} was disposed`);
    // Staging moves device tensors through host memory for host backends; a device backend
    // (nccl) cannot take host tensors at all.
    const comm = this.live();
    if (t.device === 'cpu' && !(comm.devices ?? ['cpu']).includes('cpu')) {
      const where = comm.device ? ` on ${comm.device} (this rank's device; use .to('${comm.device}'))` : '';
      this.fail(what, `the ${role} ${describeTensor(t)} is on cpu; the ${comm.backend} backend works on device tensors${where}`);
    }
  }

  /** One block of memory (any dense layout; every rank must use the same). */
  private checkFlat(what: string, t: Tensor, role: string): void {
    this.checkTensor(what, t, role);
    if (!isDense(t.shape, t.strides)) this.fail(what, `the ${role} ${describeTensor(t)} with strides ${fmt(t.strides)} is not dense; pass .contiguous()`);
  }

  /** `big` holds size x small.numel elements, contiguous, rank by rank. */
  private checkPair(what: string, out: Tensor, inp: Tensor, big: Tensor, small: Tensor): void {
    this.checkTensor(what, out, 'output');
    this.checkTensor(what, inp, 'input');
    const shapes = `(input ${describeTensor(inp)}, output ${describeTensor(out)})`;
    if (out.dtype !== inp.dtype) this.fail(what, `the input and output dtypes differ ${shapes}`);
    if (out.device !== inp.device) this.fail(what, `the input is on ${inp.device} and the output on ${out.device} ${shapes}`);
    const bigRole = big === out ? 'output' : 'input';
    const smallRole = big === out ? 'input' : 'output';
    if (!isContiguous(big.shape, big.strides)) this.fail(what, `the ${bigRole} must be contiguous ${shapes}`);
    if (!isDense(small.shape, small.strides)) this.fail(what, `the ${smallRole} is not dense ${shapes}`);
    if (big.numel !== this.size * small.numel) {
      this.fail(what, `the ${bigRole} must have ${this.size} (ranks) x ${small.numel} (${smallRole} elements) = ${this.size * small.numel} elements, got ${big.numel} ${shapes}`);
    }
  }
}
