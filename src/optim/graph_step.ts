/**
 * An optimizer step inside a CUDA graph (Optimizer.step during captureCudaGraph), as PyTorch's
 * `capturable=True`. The update's scalars (Adam's bias corrections from the step count, lr, weight
 * decay, gradScale) are host numbers: passed by value, a captured launch would repeat the capture's
 * at every replay. So the captured launches read them from small device slots, one per native call,
 * in the optimizer's state (not the graph's pool, whose blocks the graph's earlier nodes reuse and
 * would overwrite), and each replay's prologue (capture_state.ts onEachReplay) recomputes them from the optimizer's
 * current host state, queues their writes into the slots, then advances the step counts as an eager
 * step does. The capture itself advances nothing (nothing ran).
 */
import { native } from '../native.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { GroupState, Slot } from './group_state.ts';

/** Test hooks: a replay's prologue that skips writing the scalars, or advancing the host state (either makes replays wrong). */
export const graphStepTesting = { skipWrite: false, skipAdvance: false };

/**
 * The trailing slot arguments of native.cuda.adamMulti / sgdMulti: mode 0 eager, 1 read the slot, 2
 * only write it; with mode 1, `decision` is a device f64 pair {skip, gradScale} (decided_step.ts) the
 * launch obeys instead of the slot's gradScale.
 */
export interface SlotArgs {
  id: number;
  off: number;
  mode: 0 | 1 | 2;
  decision: FlatF64 | null;
}

/** A device f64 range: storage id and element offset. */
export interface FlatF64 {
  id: number;
  off: number;
}

export const EAGER_SLOT: SlotArgs = { id: -1, off: 0, mode: 0, decision: null };

/** The native optimizers' trailing slot arguments (the decision's pair only when there is one). */
export function slotArgs(slot: SlotArgs): number[] {
  const base = [slot.id, slot.off, slot.mode];
  return slot.decision === null ? base : [...base, slot.decision.id, slot.decision.off];
}

/** f64 elements per slot: native/cuda/scalars_slot.h kScalarsSlotBytes / 8. */
export const SLOT_F64 = 16;

/**
 * Hands out the slots of one step's native calls, in call order, group by group: slot k of group
 * gi is the k-th f64[16] of `buffers[gi]` (GroupState.scalarSlots, made outside any capture).
 * The capture's calls read them (mode 1); a replay's, in the same order, write them (mode 2).
 */
export class ScalarSlots {
  private buffer: Tensor | null = null;
  private at = 0;

  constructor(
    private readonly buffers: readonly (Tensor | null)[],
    private readonly mode: 1 | 2,
    /** Read mode only: the device decision every call obeys (Optimizer.stepDecided). */
    private readonly decision: FlatF64 | null = null,
  ) {}

  /** The next calls are group `gi`'s, from its first slot. */
  group(gi: number): void {
    this.buffer = this.buffers[gi];
    this.at = 0;
  }

  next(): SlotArgs {
    const b = this.buffer;
    // A call per run at most, and a slot per parameter: only a bug gets here.
    if (b === null || (this.at + 1) * SLOT_F64 > b.numel) throw new Error('optimizer step in a CUDA graph: out of scalar slots');
    return { id: b.id, off: b.offset + SLOT_F64 * this.at++, mode: this.mode, decision: this.decision };
  }
}

/**
 * `decision` as a decided launch takes it (Optimizer.stepDecided, PartitionOptimizer.stepDecided);
 * throws naming `op` unless the addon has decided launches and it is a live contiguous f64 tensor
 * of at least 2 elements on a CUDA device.
 */
export function decisionRef(decision: Tensor, op: string): FlatF64 {
  if (native.cuda?.optimDecision !== true) throw new Error(`${op}: this addon has no device-decided optimizer steps (no cuda.optimDecision); rebuild it (npm run build)`);
  if (!(decision instanceof Tensor) || decision.disposed || decision.dtype !== 'f64' || decision.numel < 2 || !decision.isContiguous || !native.storageIsCuda(decision.id)) {
    throw new Error(`${op}: the decision must be a live contiguous f64 tensor of at least 2 elements on a CUDA device, got ${decision instanceof Tensor ? decision.toString() : String(decision)}`);
  }
  return { id: decision.id, off: decision.offset };
}

/**
 * A device-decided step's launches: `launch` issues every native call, each taking the next of
 * `slots`; it runs twice, first writing each call's slot from the host state (mode 2, gradScale 1),
 * then launching each call reading its slot and `decision` (mode 1), in the same call order.
 */
export function launchDecided(buffers: readonly (Tensor | null)[], decision: FlatF64, launch: (slots: ScalarSlots) => void): void {
  launch(new ScalarSlots(buffers, 2));
  launch(new ScalarSlots(buffers, 1, decision));
}

/** Whether the addon's many-tensor optimizers take a scalars slot; throws naming `where` if not. */
export function checkGraphStepAddon(where: string): void {
  if (native.cuda?.optimScalarsSlot !== true) {
    throw new Error(`${where}: this addon predates optimizer steps in CUDA graphs (no cuda.optimScalarsSlot); rebuild it (npm run build)`);
  }
}

interface SlotAtCapture {
  gradId: number;
  gradOff: number;
  gradDtype: string;
  step: number;
  has: string;
}

/**
 * What a replay of a captured step relies on: per group, its state tensors (the graph writes
 * them) and each updated parameter's gradient range, step count and state names. A replay may
 * change hyperparameters (they are the slots' scalars) but not this.
 */
export class CapturedStep {
  private readonly slots: Map<Slot, SlotAtCapture>[];
  private readonly stateTensors: Tensor[][];

  constructor(
    private readonly groups: readonly GroupState[],
    updated: readonly (readonly Slot[])[],
    private readonly actives: readonly string[][],
  ) {
    this.slots = updated.map((list) => new Map(list.map((s) => [s, snapshot(s)])));
    this.stateTensors = groups.map((gs) => gs.stateTensors());
  }

  /**
   * Throws, naming the parameter or group (`where(gi, i, p)`), unless a replay would update the
   * same ranges the capture saw: the same gradients, every step count advanced by the same number
   * since the capture, the same state names and buffers.
   */
  check(actives: readonly (readonly string[])[], where: (gi: number, i: number, p: Tensor) => string, op: string): void {
    let delta: number | null = null;
    this.groups.forEach((gs, gi) => {
      const grp = `${op}: param group ${gi}`;
      if (actives[gi].join() !== this.actives[gi].join()) {
        throw new Error(`${grp} updates state [${actives[gi].join(', ')}], the capture [${this.actives[gi].join(', ')}] (momentum set to or from 0?); capture again`);
      }
      const now = gs.stateTensors();
      const was = this.stateTensors[gi];
      if (now.length !== was.length || now.some((t, i) => t !== was[i] || t.disposed)) {
        throw new Error(`${grp}: its state buffers were disposed or replaced since the capture (dispose()?); the graph writes the ones it had then`);
      }
      const seen = this.slots[gi];
      gs.slots.forEach((s, i) => {
        const p = s.param;
        const at = seen.get(s);
        const g = p.grad;
        const live = g !== null && !g.disposed;
        if (at === undefined) {
          if (live) throw new Error(`${where(gi, i, p)} has a .grad but had none at the capture: the graph does not update it; capture again`);
          return;
        }
        if (p.disposed) throw new Error(`${where(gi, i, p)} was disposed`);
        if (!live) throw new Error(`${where(gi, i, p)}: its .grad is ${g === null ? 'null' : 'disposed'} since the capture, but the graph updates the parameter from the gradient it had then; capture again`);
        if (g.id !== at.gradId || g.offset !== at.gradOff || g.dtype !== at.gradDtype) {
          throw new Error(`${where(gi, i, p)}: its .grad is another tensor than at the capture, but the graph reads the one it had then; zero gradients in place or capture again`);
        }
        if (s.step === 0 || [...s.has].sort().join() !== at.has) throw new Error(`${where(gi, i, p)}: its optimizer state changed since the capture (cleared or loaded?); capture again`);
        const d = s.step - at.step;
        delta ??= d;
        if (d !== delta) throw new Error(`${where(gi, i, p)}: its step count moved by ${d} since the capture, other parameters' by ${delta} (loadStateDict?); capture again`);
      });
    });
  }
}

function snapshot(s: Slot): SlotAtCapture {
  const g = s.param.grad as Tensor;
  return { gradId: g.id, gradOff: g.offset, gradDtype: g.dtype, step: s.step, has: [...s.has].sort().join() };
}
