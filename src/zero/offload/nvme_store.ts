/**
 * Optimizer slots in a file (DeepSpeed's offload_optimizer device "nvme"): the partition is cut
 * into sub-groups of `subGroupSize` elements, and sub-group i's slots lie together in the file
 * (slot j of sub-group i at byte 4·(i·S·k + j·len_i), k slots, S the sub-group size), so one read
 * brings in everything an update of that sub-group needs. During `run` a ring of B buffers
 * streams them: sub-groups up to L = max(1, B − 2) ahead are read while the current one is
 * updated, and each updated one is written back while the next are updated. Between steps no
 * slot memory stays resident.
 */
import { closeSync, fstatSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import * as k from '../../ops/kernels.ts';
import type { StateRef } from '../../optim/fused.ts';
import type { Tensor } from '../../tensor/tensor.ts';
import { flatView } from '../comms.ts';
import { readAsync, type Transfer, wait, waitAll, writeAsync } from './async_io.ts';
import { optimBuffer } from './memory_store.ts';
import type { SlotRefs, StateStore } from './state_store.ts';

export interface NvmeStoreOptions {
  /** The directory (created if needed). */
  dir: string;
  /** The file's name without extension: unique per rank, process and group. */
  name: string;
  subGroupSize: number;
  bufferCount: number;
}

export class NvmeStore implements StateStore {
  /** The state file. */
  readonly path: string;
  /** Elements per sub-group (the last may be shorter). */
  readonly subGroupSize: number;
  readonly subGroups: number;
  private readonly bufferCount: number;
  private fd: number;
  private readonly ino: number;
  /** The slots read whole into memory by `view()`, until `flush()`. */
  private resident: Map<string, Tensor> | null = null;

  /** Creates the file and writes the slots' starting values (`initial`, else zeros) into it. */
  constructor(
    readonly n: number,
    readonly slots: readonly string[],
    initial: ReadonlyMap<string, Tensor>,
    opts: NvmeStoreOptions,
  ) {
    this.subGroupSize = Math.max(1, Math.min(opts.subGroupSize, n));
    this.subGroups = Math.ceil(n / this.subGroupSize);
    this.bufferCount = Math.max(1, Math.min(opts.bufferCount, this.subGroups));
    mkdirSync(opts.dir, { recursive: true });
    this.path = path.join(opts.dir, `${opts.name}.swp`);
    this.fd = openSync(this.path, 'w+');
    this.ino = fstatSync(this.fd).ino;
    try {
      this.writeInitial(initial);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** The file's expected size in bytes. */
  get fileBytes(): number {
    return this.n * this.slots.length * 4;
  }

  run(fn: (lo: number, len: number, refs: SlotRefs) => void): void {
    this.flush();
    this.checkFile();
    const B = this.bufferCount;
    const ahead = Math.max(1, B - 2);
    const cap = this.subGroupSize * this.slots.length;
    const bufs = Array.from({ length: B }, () => optimBuffer(cap, false, false));
    // The transfer each buffer is busy with (a read being filled or a write being drained).
    const busy: (Transfer | null)[] = new Array(B).fill(null);
    const settle = (b: number) => {
      const x = busy[b];
      busy[b] = null;
      if (!x) return;
      try {
        wait(x);
      } finally {
        x.tensor.dispose();
      }
    };
    const read = (i: number) => {
      if (i >= this.subGroups) return;
      const b = i % B;
      settle(b);
      busy[b] = readAsync(this.fd, this.blockOffset(i), flatView(bufs[b], 0, this.len(i) * this.slots.length), this.path);
    };
    try {
      for (let i = 0; i < ahead; i++) read(i);
      for (let i = 0; i < this.subGroups; i++) {
        read(i + ahead);
        const b = i % B;
        settle(b);
        const len = this.len(i);
        const buf = bufs[b];
        fn(i * this.subGroupSize, len, (slot): StateRef => ({ id: buf.id, off: buf.offset + this.slotIndex(slot) * len }));
        busy[b] = writeAsync(this.fd, this.blockOffset(i), flatView(buf, 0, len * this.slots.length), this.path);
      }
      for (let b = 0; b < B; b++) settle(b);
    } finally {
      // After a failure: let every transfer finish before its buffer is freed.
      const left = busy.filter((x): x is Transfer => x !== null);
      try {
        waitAll(left);
      } catch {
        // the first failure is already propagating
      } finally {
        for (const x of left) x.tensor.dispose();
        for (const t of bufs) t.dispose();
      }
    }
  }

  view(slot: string, at: number, len: number): Tensor {
    const i = this.slotIndex(slot);
    if (at < 0 || len < 0 || at + len > this.n) throw new Error(`optimizer state view: [${at}, ${at + len}) is outside a partition of ${this.n}`);
    if (!this.resident) this.resident = this.readAll();
    return flatView(this.resident.get(this.slots[i]) as Tensor, at, len);
  }

  flush(): void {
    const res = this.resident;
    if (!res) return;
    this.resident = null;
    try {
      this.checkFile();
      this.transferAll(res, true);
    } finally {
      for (const t of res.values()) t.dispose();
    }
  }

  destroy(): void {
    if (this.resident) for (const t of this.resident.values()) t.dispose();
    this.resident = null;
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  // ---- internals ---------------------------------------------------------------------------

  private len(i: number): number {
    return Math.min(this.subGroupSize, this.n - i * this.subGroupSize);
  }

  private blockOffset(i: number): number {
    return i * this.subGroupSize * this.slots.length * 4;
  }

  private slotIndex(slot: string): number {
    const i = this.slots.indexOf(slot);
    if (i < 0) throw new Error(`optimizer state: no slot "${slot}" (have ${this.slots.join(', ') || 'none'})`);
    return i;
  }

  /** The file is still the one this store wrote, whole: else a clear error before any update. */
  private checkFile(): void {
    if (this.fd < 0) throw new Error(`ZeRO nvme offload: the state file ${this.path} was closed (destroyed)`);
    let st: { size: number; ino: number };
    try {
      st = statSync(this.path);
    } catch {
      throw new Error(`ZeRO nvme offload: the optimizer state file ${this.path} is missing (deleted while training?)`);
    }
    const size = fstatSync(this.fd).size;
    if (st.ino !== this.ino) throw new Error(`ZeRO nvme offload: the optimizer state file ${this.path} was replaced by another file`);
    if (size !== this.fileBytes) {
      throw new Error(`ZeRO nvme offload: the optimizer state file ${this.path} has ${size} bytes, expected ${this.fileBytes} (truncated or overwritten)`);
    }
  }

  /** Reads (or writes) every slot of every sub-group between the file and `whole` (slot → [n]). */
  private transferAll(whole: ReadonlyMap<string, Tensor>, write: boolean): void {
    const xs: Transfer[] = [];
    try {
      for (let i = 0; i < this.subGroups; i++) {
        const len = this.len(i);
        for (const [j, s] of this.slots.entries()) {
          const v = flatView(whole.get(s) as Tensor, i * this.subGroupSize, len);
          const at = this.blockOffset(i) + j * len * 4;
          xs.push(write ? writeAsync(this.fd, at, v, this.path) : readAsync(this.fd, at, v, this.path));
        }
      }
    } finally {
      try {
        waitAll(xs);
      } finally {
        for (const x of xs) x.tensor.dispose();
      }
    }
  }

  private readAll(): Map<string, Tensor> {
    this.checkFile();
    const whole = new Map(this.slots.map((s) => [s, optimBuffer(this.n, false, false)]));
    try {
      this.transferAll(whole, false);
    } catch (e) {
      for (const t of whole.values()) t.dispose();
      throw e;
    }
    return whole;
  }

  /** Sub-group by sub-group through (up to) two buffers: fill one while the other is written. */
  private writeInitial(initial: ReadonlyMap<string, Tensor>): void {
    const cap = this.subGroupSize * this.slots.length;
    const B = Math.min(2, this.subGroups);
    const bufs = Array.from({ length: B }, () => optimBuffer(cap, false, false));
    const busy: (Transfer | null)[] = new Array(B).fill(null);
    try {
      for (let i = 0; i < this.subGroups; i++) {
        const b = i % B;
        const prev = busy[b];
        busy[b] = null;
        if (prev) {
          wait(prev);
          prev.tensor.dispose();
        }
        const len = this.len(i);
        for (const [j, s] of this.slots.entries()) {
          const dst = flatView(bufs[b], j * len, len);
          const src = initial.get(s);
          if (src) {
            const part = flatView(src, i * this.subGroupSize, len);
            k.copyInto(part, dst);
            part.dispose();
          } else {
            k.fill(dst, 0);
          }
          dst.dispose();
        }
        busy[b] = writeAsync(this.fd, this.blockOffset(i), flatView(bufs[b], 0, len * this.slots.length), this.path);
      }
    } finally {
      const left = busy.filter((x): x is Transfer => x !== null);
      try {
        waitAll(left);
      } finally {
        for (const x of left) x.tensor.dispose();
        for (const t of bufs) t.dispose();
      }
    }
  }
}
