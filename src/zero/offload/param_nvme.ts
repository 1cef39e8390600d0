/**
 * A ZeRO stage 3 parameter partition in a file (offload_param device "nvme"). Elements
 * [0, cpuNumel) stay in host memory (the offload pool; DeepSpeed's max_in_cpu), the rest lie in
 * the file, element i at byte (i − cpuNumel) · itemsize. Only `bufferCount` swap buffers of
 * `bufferSize` elements (offload pool, tag 'param') hold file data:
 * - gathers `acquire` a shard: a buffer read ahead by `prefetch` (asynchronously, along the
 *   prefetch trace) or kept from an earlier read of the same shard (backward re-gathers it), else
 *   a blocking read; the least recently used unlent buffer is reused, a pending read-ahead last;
 * - the optimizer step streams the file region through the buffers in `bufferSize` pieces
 *   (reading the next pieces while one is updated, writing each back asynchronously), and drops
 *   every cached read first: the file is about to change.
 * Every read checks that the file is still the one written here and whole.
 */
import { closeSync, fstatSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import * as k from '../../ops/kernels.ts';
import type { FlatRef } from '../../optim/fused.ts';
import { type DType, itemSize } from '../../tensor/dtype.ts';
import { pinnedEmpty } from '../../tensor/pinned.ts';
import { Storage } from '../../tensor/storage.ts';
import { Tensor } from '../../tensor/tensor.ts';
import { flatView } from '../comms.ts';
import { readAsync, type Transfer, wait, writeAsync } from './async_io.ts';
import type { ParamSource, ParamStore, ShardLease } from './param_store.ts';

export interface NvmeParamStoreOptions {
  /** Elements [0, cpuNumel) kept in host memory (a prefix ending on a shard boundary). */
  cpuNumel: number;
  /** The directory (created if needed). */
  dir: string;
  /** The file's name without extension: unique per rank, process and dtype group. */
  name: string;
  bufferCount: number;
  bufferSize: number;
  /** The largest shard in the file: buffers need no more (default: bufferSize). */
  largestShard?: number;
  /** Pin the host prefix and the swap buffers (a GPU's parameters: shards are copied to the device from them). */
  pinned?: boolean;
}

/** One swap buffer and what it holds. */
interface Buf {
  t: Tensor;
  /** The partition element its data starts at (-1: nothing valid), and how many. */
  at: number;
  len: number;
  read: Transfer | null;
  write: Transfer | null;
  /** Leases out on it (gathers reading it). */
  lent: number;
  /** Read ahead and not acquired yet. */
  pending: boolean;
  /** Last use, for least-recently-used reuse. */
  used: number;
}

/** A host-memory tensor in the CPU offload pool (pinned on request), kept out of tidy scopes. */
function poolTensor(n: number, dtype: DType, pinned = false): Tensor {
  const t = pinned ? pinnedEmpty([n], { dtype, tag: 'param', offloadPool: true }) : new Tensor(Storage.inOffloadPool(n * itemSize(dtype), 'param', false), [n], [1], 0, dtype);
  t.kept = true;
  return t;
}

export class NvmeParamStore implements ParamStore {
  readonly device = 'nvme' as const;
  readonly streams = true;
  readonly dtype: DType;
  readonly n: number;
  readonly cpuNumel: number;
  /** The parameter file (null when the whole partition fits in max_in_cpu). */
  readonly file: string | null;
  readonly bufferCount: number;
  /** Elements per swap buffer as allocated: bufferSize, or less when the largest shard or the file region is smaller. */
  readonly bufferNumel: number;
  private readonly cpu: Tensor | null;
  private readonly pinned: boolean;
  private readonly bufs: Buf[] = [];
  private fd = -1;
  private ino = 0;
  private clock = 0;
  private resident: Tensor | null = null;
  /** Shard reads: started ahead by `prefetch`, found ahead (or still cached) by `acquire`, and blocking reads in `acquire`. */
  readonly reads = { ahead: 0, hits: 0, blocking: 0 };

  /** Copies `initial` (the partition, 1-D): the prefix into host memory, the rest into a new file. */
  constructor(initial: Tensor, opts: NvmeParamStoreOptions) {
    this.dtype = initial.dtype;
    this.n = initial.numel;
    this.cpuNumel = Math.min(opts.cpuNumel, this.n);
    this.bufferCount = opts.bufferCount;
    this.bufferNumel = Math.min(opts.bufferSize, opts.largestShard ?? opts.bufferSize, this.fileNumel);
    this.pinned = opts.pinned ?? false;
    this.cpu = this.cpuNumel > 0 ? poolTensor(this.cpuNumel, this.dtype, this.pinned) : null;
    if (this.cpu) {
      const src = flatView(initial, 0, this.cpuNumel);
      k.copyInto(src, this.cpu);
      src.dispose();
    }
    if (this.fileNumel === 0) {
      this.file = null;
      return;
    }
    mkdirSync(opts.dir, { recursive: true });
    this.file = path.join(opts.dir, `${opts.name}.swp`);
    try {
      this.fd = openSync(this.file, 'w+');
      this.ino = fstatSync(this.fd).ino;
      const x = writeAsync(this.fd, 0, flatView(initial, this.cpuNumel, this.fileNumel), this.file);
      try {
        wait(x);
      } finally {
        x.tensor.dispose();
      }
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** Elements in the file. */
  get fileNumel(): number {
    return this.n - this.cpuNumel;
  }

  /** The file's expected size in bytes. */
  get fileBytes(): number {
    return this.fileNumel * itemSize(this.dtype);
  }

  acquire(at: number, len: number): ShardLease {
    if (at + len <= this.cpuNumel || this.resident) {
      const tensor = this.view(at, len);
      return { tensor, release: () => tensor.dispose() };
    }
    this.checkRange(at, len);
    let b: Buf | null | undefined = this.bufs.find((x) => x.at === at && x.len === len);
    if (b) {
      this.reads.hits++;
      this.settleRead(b);
    } else {
      this.reads.blocking++;
      b = this.take(false);
      if (!b) throw new Error(`ZeRO nvme param offload: internal: all ${this.bufferCount} swap buffers are lent (a gather of [${at}, ${at + len}) waits on none)`);
      this.startRead(b, at, len);
      this.settleRead(b);
    }
    b.pending = false;
    b.lent++;
    b.used = ++this.clock;
    const buf = b;
    const tensor = flatView(b.t, 0, len);
    let done = false;
    return {
      tensor,
      release: () => {
        if (done) return;
        done = true;
        tensor.dispose();
        buf.lent--;
      },
    };
  }

  hasRoom(): boolean {
    return this.bufs.length < this.bufferCount || this.bufs.some((b) => b.lent === 0);
  }

  ready(at: number, len: number): boolean {
    return at + len <= this.cpuNumel || this.resident !== null || this.bufs.some((x) => x.at === at && x.len === len);
  }

  prefetch(at: number, len: number): boolean {
    if (this.ready(at, len)) return true;
    this.checkRange(at, len);
    const b = this.take(true);
    if (!b) return false;
    this.startRead(b, at, len);
    this.reads.ahead++;
    b.pending = true;
    b.used = ++this.clock;
    return true;
  }

  stepSource(): ParamSource {
    return { each: (lo, len, fn) => this.stream(lo, len, fn) };
  }

  view(at: number, len: number): Tensor {
    if (at < 0 || len < 0 || at + len > this.n) throw new Error(`ZeRO nvme param offload: view [${at}, ${at + len}) is outside a partition of ${this.n}`);
    if (at + len <= this.cpuNumel) return flatView(this.cpu as Tensor, at, len);
    if (at < this.cpuNumel) throw new Error(`ZeRO nvme param offload: internal: view [${at}, ${at + len}) straddles the host/file boundary at ${this.cpuNumel}`);
    this.resident ??= this.readAll();
    return flatView(this.resident, at - this.cpuNumel, len);
  }

  regions(): [number, number][] {
    const out: [number, number][] = [];
    if (this.cpuNumel > 0) out.push([0, this.cpuNumel]);
    if (this.fileNumel > 0) out.push([this.cpuNumel, this.fileNumel]);
    return out;
  }

  flush(): void {
    const res = this.resident;
    if (!res) return;
    this.resident = null;
    try {
      this.invalidate();
      this.checkFile();
      const x = writeAsync(this.fd, 0, flatView(res, 0, this.fileNumel), this.file as string);
      try {
        wait(x);
      } finally {
        x.tensor.dispose();
      }
    } finally {
      res.dispose();
    }
  }

  destroy(): void {
    for (const b of this.bufs) {
      for (const x of [b.read, b.write]) {
        if (!x) continue;
        try {
          wait(x);
        } catch {
          // freeing anyway: the transfer is over either way
        }
        x.tensor.dispose();
      }
      b.t.dispose();
    }
    this.bufs.length = 0;
    this.cpu?.dispose();
    this.resident?.dispose();
    this.resident = null;
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.file as string);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  // ---- internals ---------------------------------------------------------------------------

  private checkRange(at: number, len: number): void {
    if (at < this.cpuNumel || at + len > this.n) throw new Error(`ZeRO nvme param offload: internal: [${at}, ${at + len}) is not in the file region [${this.cpuNumel}, ${this.n})`);
    if (len > this.bufferNumel) {
      throw new Error(`zero_optimization.offload_param.buffer_size: a shard of ${len} elements does not fit a swap buffer of ${this.bufferNumel}`);
    }
  }

  /**
   * A buffer to read into: an empty one, a new one (up to bufferCount), the least recently used
   * cached one, or (not for a read-ahead) the newest pending read-ahead; null when all are lent.
   */
  private take(forPrefetch: boolean): Buf | null {
    const free = this.bufs.filter((b) => b.lent === 0);
    let b: Buf | undefined = free.find((x) => x.at < 0);
    if (!b && this.bufs.length < this.bufferCount) b = this.alloc();
    b ??= free.filter((x) => !x.pending).sort((x, y) => x.used - y.used)[0];
    if (!b && !forPrefetch) b = free.sort((x, y) => y.used - x.used)[0];
    if (!b) return null;
    this.settle(b);
    b.at = -1;
    b.pending = false;
    return b;
  }

  private alloc(): Buf {
    const b: Buf = { t: poolTensor(this.bufferNumel, this.dtype, this.pinned), at: -1, len: 0, read: null, write: null, lent: 0, pending: false, used: 0 };
    this.bufs.push(b);
    return b;
  }

  private startRead(b: Buf, at: number, len: number): void {
    this.checkFile();
    b.read = readAsync(this.fd, (at - this.cpuNumel) * itemSize(this.dtype), flatView(b.t, 0, len), this.file as string);
    b.at = at;
    b.len = len;
  }

  private settleRead(b: Buf): void {
    const x = b.read;
    if (!x) return;
    b.read = null;
    try {
      wait(x);
    } catch (e) {
      b.at = -1;
      throw e;
    } finally {
      x.tensor.dispose();
    }
  }

  private settle(b: Buf): void {
    this.settleRead(b);
    const x = b.write;
    if (!x) return;
    b.write = null;
    try {
      wait(x);
    } finally {
      x.tensor.dispose();
    }
  }

  /** Drops every cached read (the file is about to change); no buffer may be lent. */
  private invalidate(): void {
    for (const b of this.bufs) {
      if (b.lent > 0) throw new Error('ZeRO nvme param offload: internal: the file changes while a gather reads a swap buffer');
      this.settle(b);
      b.at = -1;
      b.pending = false;
    }
  }

  /** The optimizer's pieces of [lo, lo + len): the host prefix in place, the file region through the ring of buffers. */
  private stream(lo: number, len: number, fn: (at: number, n: number, ref: FlatRef) => void): void {
    const end = lo + len;
    if (lo < this.cpuNumel) {
      const cpu = this.cpu as Tensor;
      fn(lo, Math.min(end, this.cpuNumel) - lo, { dtype: this.dtype, id: cpu.id, off: cpu.offset + lo });
    }
    const from = Math.max(lo, this.cpuNumel);
    if (from >= end) return;
    this.flush();
    this.invalidate();
    this.checkFile();
    const S = this.bufferNumel;
    const m = Math.ceil((end - from) / S);
    const R = Math.min(this.bufferCount, m);
    while (this.bufs.length < R) this.alloc();
    const ring = this.bufs.slice(0, R);
    const ahead = R >= 3 ? R - 2 : R - 1;
    const size = itemSize(this.dtype);
    const piece = (i: number) => Math.min(S, end - from - i * S);
    const read = (i: number) => {
      if (i >= m) return;
      const b = ring[i % R];
      this.settle(b);
      b.read = readAsync(this.fd, (from + i * S - this.cpuNumel) * size, flatView(b.t, 0, piece(i)), this.file as string);
    };
    const settleAll = () => {
      let first: unknown = null;
      for (const b of ring) {
        try {
          this.settle(b);
        } catch (e) {
          first ??= e;
        }
        b.at = -1;
      }
      return first;
    };
    try {
      for (let i = 0; i < ahead; i++) read(i);
      for (let i = 0; i < m; i++) {
        read(i + ahead);
        const b = ring[i % R];
        this.settleRead(b);
        fn(from + i * S, piece(i), { dtype: this.dtype, id: b.t.id, off: b.t.offset });
        b.write = writeAsync(this.fd, (from + i * S - this.cpuNumel) * size, flatView(b.t, 0, piece(i)), this.file as string);
      }
    } catch (e) {
      settleAll();            // every transfer finishes before the buffers are reused or freed
      throw e;
    }
    const failed = settleAll();
    if (failed) throw failed;
  }

  private readAll(): Tensor {
    this.checkFile();
    const t = k.empty([this.fileNumel], this.dtype, 'param');
    t.kept = true;
    const x = readAsync(this.fd, 0, flatView(t, 0, this.fileNumel), this.file as string);
    try {
      wait(x);
    } catch (e) {
      t.dispose();
      throw e;
    } finally {
      x.tensor.dispose();
    }
    return t;
  }

  /** The file is still the one this store wrote, whole: else a clear error before any read. */
  private checkFile(): void {
    const f = this.file as string;
    if (this.fd < 0) throw new Error(`ZeRO nvme param offload: the parameter file ${f} was closed (destroyed)`);
    let st: { ino: number };
    try {
      st = statSync(f);
    } catch {
      throw new Error(`ZeRO nvme param offload: the parameter file ${f} is missing (deleted while training?)`);
    }
    if (st.ino !== this.ino) throw new Error(`ZeRO nvme param offload: the parameter file ${f} was replaced by another file`);
    const size = fstatSync(this.fd).size;
    if (size !== this.fileBytes) {
      throw new Error(`ZeRO nvme param offload: the parameter file ${f} has ${size} bytes, expected ${this.fileBytes} (truncated or overwritten)`);
    }
  }
}
