/**
 * The `nccl` backend: CUDA tensors, one GPU per rank, NCCL loaded at run time (libnccl.so.2).
 * Every collective runs on the device's communication stream after the compute stream's queued
 * work (its inputs), and later compute-stream work runs after it: a synchronous call returns as
 * soon as that order is set up, without blocking the host; Work.wait() of an asynchronous one does
 * the same (reads such as toArray() then synchronize as usual). A watchdog thread in the addon
 * aborts a communicator whose operation outlives the timeout or whose peer failed; the error
 * (naming the operation, the group and the rank) is printed at once and thrown by the next call
 * on that group. MESHTRAIN_NCCL_BLOCKING_WAIT=1 makes wait() and synchronous calls block the host
 * until the operation completes, so a failure is thrown right there.
 *
 * Creation cannot hang: communicators are built non-blocking (ncclCommInitRankConfig and
 * ncclCommSplit with blocking = 0, NCCL >= 2.14) and awaited by nccl_init.ts, which aborts them
 * at the group's timeout, when a peer on this host dies, or when a peer reports a failure.
 * MESHTRAIN_NCCL_NONBLOCKING=0 (or an older NCCL) restores the blocking ncclCommInitRank behind a
 * store barrier, which cannot be aborted.
 *
 * Sub-groups: when every rank of the parent joins some group (DeviceMesh axes, split with a color
 * on every rank) they come from ncclCommSplit of the parent (NCCL >= 2.18); otherwise (newGroup of
 * a subset, an older NCCL) rank 0 of the new group publishes a fresh ncclUniqueId in the store.
 */
import os from 'node:os';
import { native } from '../native.ts';
import { tensor } from '../ops/create.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { Backend, CommSetup, Communicator, PendingOp, ReduceOp } from './communicator.ts';
import type { BackendInit } from './distributed.ts';
import { arrive, awaitNcclComm, type CreateWatch, type NcclPeer } from './nccl_init.ts';

/** Operation codes of native/cuda/nccl_comm.h (the shm backend's numbers). */
const Kind = { allReduce: 1, reduce: 2, reduceScatter: 3, allGather: 4, broadcast: 5, barrier: 6, send: 8, recv: 9 } as const;
const RED: Record<ReduceOp, number> = { sum: 0, avg: 1, max: 2, min: 3 };
/** Bytes of the text each rank contributes to the collective checker. */
const CHECK_BYTES = 1024;

/** native.nccl (native/cuda/bindings_nccl.cc); only `status` exists in builds without CUDA. */
interface NcclNative {
  status(): string;
  uniqueId(): Uint8Array;
  hasInitConfig(): boolean;
  open(dev: number, id: Uint8Array, size: number, rank: number, name: string, timeoutMs: number, blockingWait: boolean, nonBlocking: boolean): number;
  split(parent: number, color: number, key: number, size: number, rank: number, name: string, timeoutMs: number): number;
  poll(h: number): boolean;
  abandon(h: number, reason: string): string;
  op(h: number, kind: number, red: number, dtype: number, root: number, count: number,
    inId: number, inOff: number, outId: number, outOff: number, async: boolean, what: string): number;
  test(h: number, op: number): boolean;
  wait(h: number, op: number): void;
  setTimeout(h: number, ms: number): void;
  close(h: number): void;
  device(h: number): number;
  spin(dev: number, microseconds: number): void;
  busId(dev: number): string;
}

function nccl(): NcclNative {
  return native.nccl as NcclNative;
}

/** Why this process cannot use NCCL, or '' when it can (CUDA build, a device, libnccl found). */
export function ncclUnavailableReason(): string {
  const n = native.nccl as NcclNative | undefined;
  return n ? n.status() : 'the native addon predates the nccl backend (rebuild it: npm run build)';
}

/** Whether libnccl has ncclCommSplit (2.18 and later). */
function hasCommSplit(): boolean {
  const lib = native.cudaLibraries().nccl as { found: boolean; version?: string };
  if (!lib.found || !lib.version) return false;
  const [major, minor] = lib.version.split('.').map(Number);
  return major > 2 || (major === 2 && minor >= 18);
}

/** Test hook: keeps `device`'s compute stream busy for `microseconds` (ordering and timeout tests). */
export function cudaSpinForTest(device: Device, microseconds: number): void {
  nccl().spin(Number(device.slice(5)), microseconds);
}

class NcclPending implements PendingOp {
  constructor(
    private readonly handle: number,
    private readonly id: number,
  ) {}
  wait(): void {
    nccl().wait(this.handle, this.id);
  }
  test(): boolean {
    return nccl().test(this.handle, this.id);
  }
}

/** Where a communicator's group lives, for the creation watch of splits of it. */
export interface NcclOrigin {
  /** The group's store prefix. */
  prefix: string;
  rank: number;
  globalRanks: number[];
}

export class NcclCommunicator implements Communicator {
  readonly backend = 'nccl';
  readonly devices = ['cuda'] as const;
  /** Splits of this communicator so far (every rank splits in the same order, as NCCL requires). */
  private splits = 0;

  constructor(
    private handle: number,
    /** This rank's GPU: every tensor given to the group must live there. */
    readonly device: Device,
    private readonly label: string,
    private readonly size: number,
    readonly origin?: NcclOrigin,
  ) {}

  /** The store prefix of this communicator's next split (the same on every rank). */
  nextSplitPrefix(): string {
    return `${this.origin?.prefix ?? 'mt/nccl-anon'}/nccl/split${this.splits++}`;
  }

  /** The native handle (for ncclCommSplit of this communicator). */
  get nativeHandle(): number {
    return this.live('split');
  }

  private live(what: string): number {
    if (this.handle < 0) throw new Error(`nccl: ${what} on ${this.label}: the communicator was destroyed`);
    return this.handle;
  }

  private checkDevice(what: string, role: string, t: Tensor): void {
    if (t.device === this.device) return;
    throw new Error(`nccl: ${what} on ${this.label}: the ${role} ${t.dtype}[${t.shape.join(', ')}] is on ${t.device}; ` +
      `the nccl backend works on tensors on ${this.device} (this rank's GPU; use .to('${this.device}'))`);
  }

  private op(kind: number, what: string, red: ReduceOp, inp: Tensor | null, out: Tensor | null, root: number, count: number, async: boolean): PendingOp | null {
    const h = this.live(what);
    if (inp) this.checkDevice(what, 'input', inp);
    if (out && out !== inp) this.checkDevice(what, 'output', out);
    const dt = dtypeCode((inp ?? out)?.dtype ?? 'f32');
    const id = nccl().op(h, kind, RED[red], dt, root, count, inp ? inp.id : 0, inp ? inp.offset : 0, out ? out.id : 0, out ? out.offset : 0, async, what);
    return async ? new NcclPending(h, id) : null;
  }

  allReduce(t: Tensor, op: ReduceOp, async: boolean) {
    return this.op(Kind.allReduce, `allReduce(${op})`, op, t, t, 0, t.numel, async);
  }
  reduce(t: Tensor, dst: number, op: ReduceOp, async: boolean) {
    return this.op(Kind.reduce, `reduce(${op}) to rank ${dst}`, op, t, t, dst, t.numel, async);
  }
  reduceScatter(out: Tensor, inp: Tensor, op: ReduceOp, async: boolean) {
    return this.op(Kind.reduceScatter, `reduceScatter(${op})`, op, inp, out, 0, out.numel, async);
  }
  allGather(out: Tensor, inp: Tensor, async: boolean) {
    return this.op(Kind.allGather, 'allGather', 'sum', inp, out, 0, inp.numel, async);
  }
  broadcast(t: Tensor, src: number, async: boolean) {
    return this.op(Kind.broadcast, `broadcast from rank ${src}`, 'sum', t, t, src, t.numel, async);
  }
  send(t: Tensor, dst: number, async: boolean) {
    return this.op(Kind.send, `send to rank ${dst}`, 'sum', t, null, dst, t.numel, async);
  }
  recv(t: Tensor, src: number, async: boolean) {
    return this.op(Kind.recv, `recv from rank ${src}`, 'sum', null, t, src, t.numel, async);
  }
  /** A one-element all-reduce that the host waits for (sync), or whose wait() blocks the host (async). */
  barrier(async: boolean) {
    return this.op(Kind.barrier, 'barrier', 'sum', null, null, 0, 1, async);
  }

  /** The checker's text from every rank, gathered through the GPU (1 KiB each, truncated). */
  check(text: string): void {
    const mine = new Int32Array(CHECK_BYTES / 4);
    const bytes = Buffer.from(text, 'utf8');
    Buffer.from(mine.buffer).set(bytes.subarray(0, CHECK_BYTES));
    const size = this.size;
    const inp = tensor(mine, { dtype: 'i32', device: this.device, tag: 'comm' });
    const out = tensor(new Int32Array(mine.length * size), { dtype: 'i32', device: this.device, tag: 'comm' });
    try {
      this.allGather(out, inp, false);
      const all = Buffer.from((out.toArray() as Int32Array).buffer);
      const textOf = (r: number) => all.subarray(r * CHECK_BYTES, (r + 1) * CHECK_BYTES).toString('utf8').replace(/\0+$/, '');
      const first = textOf(0);
      for (let r = 1; r < size; r++) {
        const other = textOf(r);
        if (other !== first) {
          throw new Error(`collective mismatch on ${this.label}: rank 0 calls\n  ${first.replace(/\n/g, '\n  ')}\nbut rank ${r} calls\n  ${other.replace(/\n/g, '\n  ')}`);
        }
      }
    } finally {
      inp.dispose();
      out.dispose();
    }
  }

  sharedEmpty(): Tensor | null {
    return null;
  }

  setTimeout(ms: number): void {
    nccl().setTimeout(this.live('setTimeout'), ms);
  }

  destroy(): void {
    if (this.handle < 0) return;
    const h = this.handle;
    this.handle = -1;
    nccl().close(h);
  }
}

/** What each rank publishes at set-up: where it runs and what it can use. */
export interface RankReport {
  host: string;
  /** Why NCCL cannot run there ('' when it can). */
  why: string;
  /** LOCAL_RANK, or -1 when unset (then: the rank's position among its host's ranks). */
  localRank: number;
  /** PCI bus id of each CUDA device the rank sees, in CUDA's order (CUDA_VISIBLE_DEVICES applied). */
  busIds: string[];
  /** The rank's process id: peers on its host notice when it dies while NCCL builds a communicator. */
  pid?: number;
}

/** Whether the whole world can run NCCL (`problem` null) and, if so, this rank's GPU. */
export interface NcclSurvey {
  problem: string | null;
  device: Device;
  /** Every rank's report (absent when the survey was made up, as in single-process tests). */
  reports?: RankReport[];
}

/**
 * The decision of surveyNccl, from every rank's report: a rank without NCCL is everyone's
 * problem (named by rank and reason); each rank takes cuda:(localRank % devices); two ranks of a
 * host on the same physical GPU (by PCI bus id) are a problem, since NCCL cannot run two ranks on
 * one GPU.
 */
export function planNcclDevices(reports: RankReport[], rank: number): NcclSurvey {
  const failing = reports.map((rep, r) => ({ r, rep })).filter((e) => e.rep.why);
  if (failing.length) {
    const byReason = new Map<string, number[]>();
    for (const { r, rep } of failing) byReason.set(rep.why, [...(byReason.get(rep.why) ?? []), r]);
    const parts = [...byReason].map(([w, rs]) => `rank${rs.length > 1 ? 's' : ''} ${rs.join(',')}: ${w}`);
    return { problem: `NCCL cannot be used (${parts.join('; ')})`, device: 'cpu' };
  }
  const ordinal = reports.map((rep, r) => {
    const local = rep.localRank >= 0 ? rep.localRank : reports.slice(0, r).filter((o) => o.host === rep.host).length;
    return local % rep.busIds.length;
  });
  const owner = new Map<string, number>();
  for (const [r, rep] of reports.entries()) {
    const gpu = `${rep.host} ${rep.busIds[ordinal[r]]}`;
    const first = owner.get(gpu);
    if (first !== undefined) {
      const onHost = reports.filter((o) => o.host === rep.host).length;
      return {
        problem: `ranks ${first} and ${r} would share the GPU ${rep.busIds[ordinal[r]]} of host ${rep.host}; NCCL cannot run two ranks ` +
          `on one GPU (the host runs ${onHost} ranks and rank ${r} sees ${rep.busIds.length} device(s): start at most one rank per GPU, or use the shm backend)`,
        device: 'cpu',
      };
    }
    owner.set(gpu, r);
  }
  return { problem: null, device: `cuda:${ordinal[rank]}` };
}

/**
 * Every rank reports whether it can use NCCL, its host and its GPUs (all world ranks call it
 * together), then each decides the same way (planNcclDevices). A problem anywhere is everyone's
 * problem, so no rank waits for a peer that already gave up.
 */
export async function surveyNccl(i: BackendInit): Promise<NcclSurvey> {
  const { store, rank, size, timeoutMs } = i;
  const why = ncclUnavailableReason();
  const count = why ? 0 : native.deviceInfo().cudaDevices;
  const env = process.env.LOCAL_RANK;
  const mine: RankReport = {
    host: os.hostname(), why, localRank: env !== undefined && env !== '' ? Number(env) : -1,
    busIds: Array.from({ length: count }, (_, d) => nccl().busId(d)),
    pid: process.pid,
  };
  await store.set(`mt/nccl/rank/${rank}`, JSON.stringify(mine));
  const all = await Promise.all(Array.from({ length: size }, async (_, r) => JSON.parse(await store.getString(`mt/nccl/rank/${r}`, timeoutMs)) as RankReport));
  return { ...planNcclDevices(all, rank), reports: all };
}

export class NcclBackend implements Backend {
  readonly name = 'nccl';

  private constructor(
    /** This rank's GPU, 'cuda:N'. */
    readonly device: Device,
    private readonly blockingWait: boolean,
    /** Every world rank's host and pid (from the survey), to notice a dead peer during creation. */
    private readonly peers: NcclPeer[] | undefined,
    /** Build communicators non-blocking where libnccl can (MESHTRAIN_NCCL_NONBLOCKING is not '0'). */
    private readonly nonBlocking: boolean,
  ) {}

  /** Checks that every rank can use NCCL on a GPU of its own (surveyNccl); throws naming what is missing. */
  static async init(i: BackendInit): Promise<NcclBackend> {
    const survey = await surveyNccl(i);
    if (survey.problem) throw new Error(`initDistributed({ backend: 'nccl' }): ${survey.problem}`);
    return NcclBackend.fromSurvey(survey);
  }

  /** The backend on the device a successful survey picked. */
  static fromSurvey(survey: NcclSurvey): NcclBackend {
    if (survey.problem) throw new Error(`nccl: ${survey.problem}`);
    return new NcclBackend(survey.device, process.env.MESHTRAIN_NCCL_BLOCKING_WAIT === '1', survey.reports, process.env.MESHTRAIN_NCCL_NONBLOCKING !== '0');
  }

  async create(s: CommSetup): Promise<Communicator> {
    const label = `group '${s.name}' (rank ${s.rank} of ${s.size}, ${this.device})`;
    const dev = Number(this.device.slice(5));
    const parent = s.split?.parent;
    const origin: NcclOrigin = { prefix: s.prefix, rank: s.rank, globalRanks: s.globalRanks };
    const watch = (prefix: string, call: string, rank: number, globalRanks: number[]): CreateWatch =>
      ({ store: s.store, prefix, rank, globalRanks, peers: this.peers, timeoutMs: s.timeoutMs, call });
    let h: number;
    if (s.split?.everyRank && parent instanceof NcclCommunicator && hasCommSplit()) {
      // Every parent rank is here (each for its own color): a collective split of the parent.
      // The key is the new group rank, so NCCL orders ranks as ProcessGroup.split did.
      const from = parent.origin ?? origin;
      const w = watch(parent.nextSplitPrefix(), 'ncclCommSplit', from.rank, from.globalRanks);
      await arrive(w);
      h = nccl().split(parent.nativeHandle, s.split.color, s.rank, s.size, s.rank, s.name, s.timeoutMs);
      await awaitNcclComm(nccl(), h, w);
    } else {
      if (s.rank === 0) await s.store.set(`${s.prefix}/nccl/id`, Buffer.from(nccl().uniqueId()).toString('base64'));
      const id = new Uint8Array(Buffer.from(await s.store.getString(`${s.prefix}/nccl/id`, s.timeoutMs), 'base64'));
      // Without ncclCommInitRankConfig (NCCL < 2.14) open() falls back to the blocking ncclCommInitRank.
      const nonBlocking = this.nonBlocking && nccl().hasInitConfig();
      const w = watch(`${s.prefix}/nccl/init`, nonBlocking ? 'ncclCommInitRankConfig' : 'ncclCommInitRank', s.rank, s.globalRanks);
      // The blocking ncclCommInitRank cannot be aborted: start it only once every rank has arrived.
      if (!nonBlocking) await s.store.barrier(`${s.prefix}/nccl/arrived`, s.size, s.timeoutMs);
      await arrive(w);
      h = nccl().open(dev, id, s.size, s.rank, s.name, s.timeoutMs, this.blockingWait, this.nonBlocking);
      await awaitNcclComm(nccl(), h, w);
    }
    return new NcclCommunicator(h, this.device, label, s.size, origin);
  }

  destroy(): void {}
}
