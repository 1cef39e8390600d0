/**
 * Optimizer slots held whole in memory: the parameters' device (offload device none: CPU memory,
 * or the GPU's for parameters on 'cuda:N') or the CPU offload pool (device cpu), which
 * `memoryStats()` reports apart as `'cpu-offload'` (pinned when the parameters are on a GPU,
 * whose optimizer step then runs on the host: host_step.ts).
 */
import * as k from '../../ops/kernels.ts';
import { NONE, type StateRef } from '../../optim/fused.ts';
import { pinnedEmpty } from '../../tensor/pinned.ts';
import { type Device, Storage } from '../../tensor/storage.ts';
import { Tensor } from '../../tensor/tensor.ts';
import { flatView } from '../comms.ts';
import type { SlotRefs, StateStore } from './state_store.ts';

/**
 * An f32 [n] tensor tagged 'optim', in the offload pool (pinned for a GPU's parameters) or on
 * `device`; kept out of tidy scopes.
 */
export function optimBuffer(n: number, offloadPool: boolean, zero: boolean, device: Device = 'cpu'): Tensor {
  let t: Tensor;
  if (!offloadPool) t = k.empty([n], 'f32', 'optim', zero, device);
  else if (device !== 'cpu') t = pinnedEmpty([n], { dtype: 'f32', tag: 'optim', offloadPool: true, zero });
  else t = new Tensor(Storage.inOffloadPool(n * 4, 'optim', zero), [n], [1], 0, 'f32');
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
    /** The parameters' device. */
    device: Device = 'cpu',
  ) {
    for (const s of slots) {
      const src = initial.get(s);
      const t = optimBuffer(n, offloadPool, !src, device);
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
