/**
 * Optimizer slots held whole in memory: ordinary CPU memory (offload device none) or the CPU
 * offload pool (device cpu), which `memoryStats()` reports apart as `'cpu-offload'`.
 */
import * as k from '../../ops/kernels.ts';
import { NONE, type StateRef } from '../../optim/fused.ts';
import { Storage } from '../../tensor/storage.ts';
import { Tensor } from '../../tensor/tensor.ts';
import { flatView } from '../comms.ts';
import type { SlotRefs, StateStore } from './state_store.ts';

/** An f32 [n] tensor tagged 'optim', in the offload pool or not; kept out of tidy scopes. */
export function optimBuffer(n: number, offloadPool: boolean, zero: boolean): Tensor {
  const t = offloadPool ? new Tensor(Storage.inOffloadPool(n * 4, 'optim', zero), [n], [1], 0, 'f32') : k.empty([n], 'f32', 'optim', zero);
  t.kept = true;
  return t;
}

export class MemoryStore implements StateStore {
  private readonly data = new Map<string, Tensor>();

  /** `initial` gives slots their starting values (any float dtype, n elements); the others start at zero. */
  constructor(
    readonly n: number,
    readonly slots: readonly string[],
    initial: ReadonlyMap<string, Tensor>,
    offloadPool: boolean,
  ) {
    for (const s of slots) {
      const src = initial.get(s);
      const t = optimBuffer(n, offloadPool, !src);
      if (src) k.copyInto(src, t);
      this.data.set(s, t);
    }
  }

  run(fn: (lo: number, len: number, refs: SlotRefs) => void): void {
    fn(0, this.n, (slot): StateRef => {
      const t = this.data.get(slot);
      return t ? { id: t.id, off: t.offset } : NONE;
    });
  }

  view(slot: string, at: number, len: number): Tensor {
    const t = this.data.get(slot);
    if (!t) throw new Error(`optimizer state: no slot "${slot}" (have ${this.slots.join(', ') || 'none'})`);
    return flatView(t, at, len);
  }

  flush(): void {}

  destroy(): void {
    for (const t of this.data.values()) t.dispose();
    this.data.clear();
  }
}
