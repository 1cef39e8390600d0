/**
 * Where one dtype's ZeRO stage 3 parameter partition lives (offload_param): whole in memory (the
 * shared arena for device none, the CPU offload pool for cpu) or in a file (nvme, param_nvme.ts).
 * Gathers borrow a shard's memory through `acquire`; the optimizer step updates the partition
 * range by range through `stepSource`; checkpoints read and write it through `view`.
 */
import type { FlatRef } from '../../optim/fused.ts';
import type { DType } from '../../tensor/dtype.ts';
import type { Tensor } from '../../tensor/tensor.ts';
import { flatView } from '../comms.ts';

/** A shard's memory lent for reading (an all-gather's input); give it back with `release()`. */
export interface ShardLease {
  readonly tensor: Tensor;
  release(): void;
}

/**
 * Parameter memory handed out piece by piece: `each(lo, len, fn)` calls `fn(at, n, ref)` over
 * consecutive pieces covering [lo, lo + len), `ref` pointing at element `at`; what `fn` writes
 * there is kept (written back to the file).
 */
export interface ParamSource {
  each(lo: number, len: number, fn: (at: number, n: number, ref: FlatRef) => void): void;
}

export interface ParamStore {
  readonly device: 'none' | 'cpu' | 'nvme';
  readonly dtype: DType;
  /** Elements of the partition. */
  readonly n: number;
  /** Whether reads cost IO, so gathers should read ahead (`prefetch`). */
  readonly streams: boolean;
  /** The partition file (nvme), else null. */
  readonly file: string | null;
  /** Elements [at, at + len) in memory for reading (an nvme read if not prefetched). */
  acquire(at: number, len: number): ShardLease;
  /** Whether `acquire` can find memory now without a lease being released first. */
  hasRoom(): boolean;
  /** Whether [at, at + len) is in memory or being read ahead (`acquire` does not start a read). */
  ready(at: number, len: number): boolean;
  /** Starts reading [at, at + len) ahead (nvme); false when no swap buffer is free for it. */
  prefetch(at: number, len: number): boolean;
  /** The partition's memory for an optimizer step: one ref to all of it, or a source streaming it. */
  stepSource(): FlatRef | ParamSource;
  /**
   * A writable 1-D view of [at, at + len), inside one of `regions()`; dispose it when done.
   * nvme: the file's elements are read into memory until `flush()`.
   */
  view(at: number, len: number): Tensor;
  /** The ranges [lo, len] that `view` serves whole. */
  regions(): [number, number][];
  /** nvme: writes back what `view` read (and may have changed) and frees that memory. */
  flush(): void;
  /** Frees the memory and deletes the file. */
  destroy(): void;
}

/** The partition whole in one tensor (device none: the shared arena; cpu: the offload pool). */
export class MemoryParamStore implements ParamStore {
  readonly streams = false;
  readonly file = null;
  readonly dtype: DType;
  readonly n: number;

  /** Takes `whole` (1-D, the partition) and disposes it in `destroy()`. */
  constructor(
    readonly device: 'none' | 'cpu',
    private readonly whole: Tensor,
  ) {
    this.dtype = whole.dtype;
    this.n = whole.numel;
  }

  acquire(at: number, len: number): ShardLease {
    const tensor = flatView(this.whole, at, len);
    return { tensor, release: () => tensor.dispose() };
  }

  hasRoom(): boolean {
    return true;
  }

  ready(): boolean {
    return true;
  }

  prefetch(): boolean {
    return true;
  }

  stepSource(): FlatRef {
    return { dtype: this.dtype, id: this.whole.id, off: this.whole.offset };
  }

  view(at: number, len: number): Tensor {
    return flatView(this.whole, at, len);
  }

  regions(): [number, number][] {
    return [[0, this.n]];
  }

  flush(): void {}

  destroy(): void {
    this.whole.dispose();
  }
}
