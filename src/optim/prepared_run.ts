/**
 * One run of an optimizer step, ready for the fused kernels: the `Run` and `RunState` the
 * optimizers read, as one object whose methods live on the prototype. A step prepares one per run
 * (148 for GPT-2 124M); object literals with arrow functions cost two closures each, and under tsx
 * (esbuild's keepNames) every such closure is renamed with Object.defineProperty, which was 5% of a
 * GPT-2 124M step's host time on the device (bench/gpu_host_floor.ts).
 */
import type { FlatRef, StateRef } from './fused.ts';
import type { GroupState, Slot, StateDType } from './group_state.ts';
import type { Run, RunState } from './optimizer.ts';

export class PreparedRun implements Run, RunState {
  /** Element offset of the run in the group's state buffers. */
  readonly stateOffset: number;
  /** The step number of this update (from 1). */
  readonly step: number;
  readonly dtype: StateDType;

  constructor(
    readonly param: FlatRef,
    readonly grad: FlatRef,
    readonly master: StateRef,
    readonly n: number,
    private readonly first: Slot,
    private readonly group: GroupState,
  ) {
    this.stateOffset = first.offset;
    this.step = first.step + 1;
    this.dtype = group.dtype;
  }

  /** True when the run's parameters have no values yet in state `name`. */
  fresh(name: string): boolean {
    return !this.first.has.has(name);
  }

  ref(name: string): StateRef {
    return { id: this.group.buffer(name).id, off: this.first.offset };
  }
}
