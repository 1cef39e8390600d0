/**
 * The `shm` backend: ranks on one host exchange data through POSIX shared memory in the addon
 * (native/comm/). Set-up goes through the store: each rank creates its segment, publishes its
 * name, maps the peers' segments, and unlinks its own once every peer has mapped it, so nothing
 * is left in /dev/shm even if a rank crashes later.
 */
import os from 'node:os';
import { native } from '../native.ts';
import { type DType, dtypeCode, itemSize } from '../tensor/dtype.ts';
import { contiguousStrides, numel } from '../tensor/shape.ts';
import { type MemoryTag, Storage, tagCode } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Backend, CommSetup, Communicator, PendingOp, ReduceOp } from './communicator.ts';
import type { StoreClient } from './store.ts';

/** Operation codes of native/comm/layout.h. */
const Kind = { allReduce: 1, reduce: 2, reduceScatter: 3, allGather: 4, broadcast: 5, barrier: 6, check: 7, send: 8, recv: 9 } as const;
const RED: Record<ReduceOp, number> = { sum: 0, avg: 1, max: 2, min: 3 };

export interface ShmOptions {
  /** Bytes of each of the two staging slots per rank (default 1 MiB). */
  slotBytes?: number;
  /** Bytes of each point-to-point slot per peer (default 256 KiB; 64 KiB above 16 ranks). */
  p2pSlotBytes?: number;
  /** Size of each rank's shared arena for `sharedEmpty` tensors (virtual until used; default 256 MiB). */
  arenaBytes?: number;
}

class ShmOp implements PendingOp {
  constructor(
    private readonly handle: number,
    private readonly id: number,
  ) {}
  wait(): void {
    native.shmCommWait(this.handle, this.id);
  }
  test(): boolean {
    return native.shmCommTest(this.handle, this.id);
  }
}

class ShmCommunicator implements Communicator {
  readonly backend = 'shm';
  constructor(
    private handle: number,
    private readonly arena: number,
  ) {}

  private op(kind: number, red: ReduceOp, t: Tensor | null, out: Tensor | null, root: number, count: number, async: boolean, text?: string): PendingOp | null {
    const dt = dtypeCode((t ?? out)?.dtype ?? 'f32');
    const id = native.shmCommOp(
      this.handle, kind, RED[red], dt, root, count,
      t ? t.id : 0, t ? t.offset : 0, out ? out.id : 0, out ? out.offset : 0, async, text,
    );
    return async ? new ShmOp(this.handle, id) : null;
  }

  allReduce(t: Tensor, op: ReduceOp, async: boolean) {
    return this.op(Kind.allReduce, op, t, t, 0, t.numel, async);
  }
  reduce(t: Tensor, dst: number, op: ReduceOp, async: boolean) {
    return this.op(Kind.reduce, op, t, t, dst, t.numel, async);
  }
  reduceScatter(out: Tensor, inp: Tensor, op: ReduceOp, async: boolean) {
    return this.op(Kind.reduceScatter, op, inp, out, 0, out.numel, async);
  }
  allGather(out: Tensor, inp: Tensor, async: boolean) {
    return this.op(Kind.allGather, 'sum', inp, out, 0, inp.numel, async);
  }
  broadcast(t: Tensor, src: number, async: boolean) {
    return this.op(Kind.broadcast, 'sum', t, t, src, t.numel, async);
  }
  send(t: Tensor, dst: number, async: boolean) {
    return this.op(Kind.send, 'sum', t, null, dst, t.numel, async);
  }
  recv(t: Tensor, src: number, async: boolean) {
    return this.op(Kind.recv, 'sum', null, t, src, t.numel, async);
  }
  barrier(async: boolean) {
    return this.op(Kind.barrier, 'sum', null, null, 0, 0, async);
  }
  check(text: string): void {
    this.op(Kind.check, 'sum', null, null, 0, 0, false, text);
  }
  sharedEmpty(shape: number[], dtype: DType, tag: MemoryTag): Tensor | null {
    if (this.arena < 0) return null;
    const bytes = numel(shape) * itemSize(dtype);
    const id = native.shmArenaAlloc(this.arena, bytes, tagCode(tag));
    if (id < 0) return null;
    return new Tensor(Storage.adopt(id, bytes, tag, 'cpu'), [...shape], contiguousStrides(shape), 0, dtype);
  }
  setTimeout(ms: number): void {
    native.shmCommSetTimeout(this.handle, ms);
  }
  destroy(): void {
    if (this.handle < 0) return;
    native.shmCommDestroy(this.handle);
    this.handle = -1;
  }
}

/** Removes /dev/shm segments left by processes that died (they are normally unlinked right away). */
export function cleanupStaleSegments(): number {
  return native.shmCleanupStale();
}

export class ShmBackend implements Backend {
  readonly name = 'shm';
  private count = 0;
  private arena = -1;

  private constructor(
    private readonly jobId: string,
    private readonly opts: ShmOptions,
    private readonly spinNs: number,
  ) {}

  /** Creates the backend of this process, with the world's shared arenas (all world ranks call it). */
  static async init(store: StoreClient, jobId: string, rank: number, size: number, timeoutMs: number, opts: ShmOptions = {}): Promise<ShmBackend> {
    // Shared memory reaches the ranks of one host only.
    await store.set(`mt/host/${rank}`, os.hostname());
    const hosts = await Promise.all(Array.from({ length: size }, (_, r) => store.getString(`mt/host/${r}`, timeoutMs)));
    const away = hosts.map((h, r) => (h === hosts[rank] ? -1 : r)).filter((r) => r >= 0);
    if (away.length) {
      throw new Error(`initDistributed: the shm backend needs every rank on one host, but ranks ${away.join(',')} run on ` +
        `${[...new Set(away.map((r) => hosts[r]))].join(', ')}, not ${hosts[rank]} (multi-host needs the gloo backend)`);
    }
    cleanupStaleSegments();
    // Ranks that outnumber cores must sleep at once; otherwise a short spin saves a wake-up.
    const localSize = Number(process.env.LOCAL_SIZE ?? size);
    const spinUs = process.env.MESHTRAIN_SHM_SPIN_US !== undefined ? Number(process.env.MESHTRAIN_SHM_SPIN_US)
      : localSize <= os.availableParallelism() ? 20 : 0;
    const b = new ShmBackend(jobId, opts, Math.round(spinUs * 1000));
    const arenaBytes = opts.arenaBytes ?? 256 << 20;
    if (arenaBytes > 0) {
      const name = `mtshm.${jobId}.arena.${rank}.${process.pid}`;
      b.arena = native.shmArenaCreate(name, rank, size, arenaBytes);
      await store.set(`mt/arena/${rank}`, name);
      const names = await Promise.all(Array.from({ length: size }, (_, r) => store.getString(`mt/arena/${r}`, timeoutMs)));
      native.shmArenaConnect(b.arena, names);
      await store.barrier('mt/arena/mapped', size, timeoutMs);
      native.shmArenaUnlink(b.arena);
    }
    return b;
  }

  async create(s: CommSetup): Promise<Communicator> {
    const slot = this.opts.slotBytes ?? (Number(process.env.MESHTRAIN_SHM_SLOT_BYTES) || 1 << 20);
    const p2p = this.opts.p2pSlotBytes ?? (s.size > 16 ? 64 << 10 : 256 << 10);
    const name = `mtshm.${this.jobId}.c${this.count++}.${s.rank}.${process.pid}`;
    const h = native.shmCommCreate(name, s.name, s.rank, s.size, s.globalRanks, slot, p2p, s.timeoutMs, this.spinNs, this.arena);
    try {
      await s.store.set(`${s.prefix}/seg/${s.rank}`, name);
      const names = await Promise.all(Array.from({ length: s.size }, (_, r) => s.store.getString(`${s.prefix}/seg/${r}`, s.timeoutMs)));
      native.shmCommConnect(h, names);
      await s.store.barrier(`${s.prefix}/mapped`, s.size, s.timeoutMs);
    } catch (e) {
      native.shmCommDestroy(h);
      throw new Error(`shm: setting up ${s.name} (rank ${s.rank} of ${s.size}) failed: ${(e as Error).message}`);
    }
    native.shmCommUnlink(h);
    return new ShmCommunicator(h, this.arena);
  }

  destroy(): void {
    if (this.arena >= 0) native.shmArenaDestroy(this.arena);
    this.arena = -1;
  }
}
