/**
 * Where a partition's optimizer slots live: the fp32 master of 16-bit parameters and the
 * optimizer's state buffers, each one f32 value per element of the partition. Memory stores
 * (device none / cpu) hold them whole; the NVMe store keeps them in a file and streams them
 * through sub-group buffers during `run`.
 */
import type { StateRef } from '../../optim/fused.ts';
import type { Tensor } from '../../tensor/tensor.ts';

/** The refs of every slot for the elements [lo, lo + len) being updated. */
export type SlotRefs = (slot: string) => StateRef;

export interface StateStore {
  /** The partition's length in elements. */
  readonly n: number;
  /** The slot names, in checkpoint order. */
  readonly slots: readonly string[];
  /** Calls `fn` over consecutive ranges covering [0, n) with each slot's memory for that range. */
  run(fn: (lo: number, len: number, refs: SlotRefs) => void): void;
  /**
   * A writable 1-D f32 view of `slot`'s elements [at, at + len); dispose it when done. The NVMe
   * store reads the slots into memory for this; writes through the view reach the file at `flush()`.
   */
  view(slot: string, at: number, len: number): Tensor;
  /** Writes back what `view` read into memory and frees it (a no-op for memory stores). */
  flush(): void;
  /** Frees the memory (and deletes the files). */
  destroy(): void;
}
