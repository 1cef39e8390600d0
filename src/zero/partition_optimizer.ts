/**
 * The optimizer of one rank's flat partition, whatever the ZeRO stage: it owns the fp32 master of
 * 16-bit parameters and the optimizer state for the partition's n elements, wherever the
 * offload device puts them (memory, the CPU offload pool, or an NVMe file streamed in
 * sub-groups), and runs the fused kernel of optimizer.ts over them. The same kernel on the same
 * numbers: every device gives bit-identical updates.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import * as k from '../ops/kernels.ts';
import { type FlatRef, NONE, type StateRef } from '../optim/fused.ts';
import { type FlatF64, launchDecided, SLOT_F64 } from '../optim/graph_step.ts';
import type { DType } from '../tensor/dtype.ts';
import { keep } from '../tensor/scope.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { onHost } from './offload/host_step.ts';
import { MemoryStore } from './offload/memory_store.ts';
import { NvmeStore } from './offload/nvme_store.ts';
import type { ResolvedOffload } from './offload/options.ts';
import type { ParamSource } from './offload/param_store.ts';
import type { SlotRefs, StateStore } from './offload/state_store.ts';
import { type PartitionRefs, partitionStep, partitionStepSlotted, type ResolvedSpec, stateNames } from './optimizer.ts';

export interface PartitionOptimizerOptions {
  /** Where the slots live (resolveOffload's result; default: memory, no offload). */
  offload?: ResolvedOffload;
  /** nvme: the file's name: unique per rank and group (e.g. `rank3-bf16`); a process-unique suffix is added. */
  name?: string;
}

let instances = 0;

/**
 * The master and optimizer state of one partition.
 * @example
 * const opt = new PartitionOptimizer(zero.hyper, partitionView, { offload: resolveOffload({ device: 'nvme', nvmePath: '/tmp/x' }, 1e6, 'me') });
 * opt.step({ dtype: 'bf16', id: flat.id, off: flat.offset + start }, { dtype: 'bf16', id: g.id, off: g.offset }, 1);
 * opt.destroy();                         // frees the memory, deletes the file
 */
export class PartitionOptimizer {
  /** Elements in the partition. */
  readonly n: number;
  readonly paramDtype: DType;
  readonly device: 'none' | 'cpu' | 'nvme';
  private readonly store: StateStore;
  private readonly stateSlots: string[];
  /** The state is in host memory (offloaded, or the partition is): device pieces are updated on the host (host_step.ts). */
  private readonly hostState: boolean;
  private readonly paramDevice: Device;
  /** The scalars slot of a device-decided step (f64 [16], tag 'optim'): made at the first plain step on a GPU, outside any capture. */
  private scalars: Tensor | null = null;
  private destroyed = false;

  /**
   * @param hyper the hyperparameters, read at every step (a schedule may change `lr` in place)
   * @param params this rank's partition of the parameters (1-D, n elements): a 16-bit
   *   partition's master starts as a copy of it
   */
  constructor(readonly hyper: ResolvedSpec, params: Tensor, opts: PartitionOptimizerOptions = {}) {
    this.n = params.numel;
    this.paramDtype = params.dtype;
    this.stateSlots = stateNames(hyper);
    const slots = this.paramDtype === 'f32' ? [...this.stateSlots] : [...this.stateSlots, 'master'];
    const initial = new Map(slots.includes('master') ? [['master', params]] : []);
    const off = opts.offload;
    this.device = off?.device ?? 'none';
    this.hostState = this.device !== 'none' || params.device === 'cpu';
    this.paramDevice = params.device;
    if (this.device === 'nvme' && slots.length > 0 && this.n > 0) {
      const o = off as ResolvedOffload;
      const name = `meshtrain-optim-${opts.name ?? 'partition'}-p${process.pid}-${instances++}`;
      this.store = new NvmeStore(this.n, slots, initial, { dir: o.nvmePath as string, name, subGroupSize: o.subGroupSize, bufferCount: o.bufferCount });
    } else {
      this.store = new MemoryStore(this.n, slots, initial, this.device === 'cpu', params.device);
    }
  }

  /** The f32 slots for checkpoints: the optimizer's state names, then `master` for 16-bit parameters. */
  get slots(): readonly string[] {
    return this.store.slots;
  }

  /** The nvme state file (null for the other devices). */
  get file(): string | null {
    return this.store instanceof NvmeStore ? this.store.path : null;
  }

  /**
   * One optimizer step (`stepNo` from 1) of the partition: `param` is where its n (16-bit or
   * f32) parameters start, updated in place (or a source handing them out piece by piece:
   * ZeRO-3's offloaded parameters), `grad` where its n averaged gradients start. The update is
   * elementwise, so any split into pieces gives the same bits. `gradScale` multiplies the
   * gradient in f32 inside the kernel (mixed precision's unscale and clip; default 1).
   */
  step(param: FlatRef | ParamSource, grad: FlatRef, stepNo: number, gradScale = 1): void {
    this.live();
    if (!this.hostState && this.n > 0 && native.cuda?.optimDecision === true) {
      // For the device-decided steps that follow (stepDecided): made once, here, outside any graph's pool.
      this.scalars ??= keep(Tensor.empty([SLOT_F64], { dtype: 'f64', tag: 'optim', device: this.paramDevice }));
    }
    this.store.run((lo, len, refs) => {
      const piece = (at: number, n: number, p: FlatRef) => {
        const update = (param: FlatRef, g: FlatRef) => partitionStep(this.hyper, this.refs(param, g, refs, at - lo, n), stepNo, gradScale);
        const g = { dtype: grad.dtype, id: grad.id, off: grad.off + at };
        if (this.hostState) onHost(p, g, n, update);
        else update(p, g);
      };
      if ('each' in param) param.each(lo, len, piece);
      else piece(lo, len, { dtype: param.dtype, id: param.id, off: param.off + lo });
    });
  }

  /**
   * `step()` with the skip and the gradient multiplier read from `decision` on the device (an f64
   * pair {skip, gradScale}: cuda.stepDecision's, src/optim/step_decision.ts) when the launch runs:
   * a skip writes nothing, otherwise the update is `step(param, grad, stepNo, gradScale)`'s bit for
   * bit. Nothing is read back. Refused (naming why) unless `canStepDecided()`.
   */
  stepDecided(param: FlatRef, grad: FlatRef, stepNo: number, decision: FlatF64): void {
    this.live();
    const refusal = this.decidedRefusal();
    if (refusal !== null) throw new Error(`PartitionOptimizer.stepDecided: ${refusal}`);
    if (this.n === 0) return;
    // A memory store on the device: one range, the whole partition.
    this.store.run((lo, len, refs) => {
      const r = this.refs({ dtype: param.dtype, id: param.id, off: param.off + lo }, { dtype: grad.dtype, id: grad.id, off: grad.off + lo }, refs, 0, len);
      launchDecided([this.scalars], decision, (slots) => {
        slots.group(0);
        partitionStepSlotted(this.hyper, r, stepNo, slots);
      });
    });
  }

  /** Whether `stepDecided` may run now: the state on the GPU (no offload) and its slot made by a plain step. */
  canStepDecided(): boolean {
    return this.decidedRefusal() === null;
  }

  /** Why a decided step is refused, or null. */
  decidedRefusal(): string | null {
    if (native.cuda?.optimDecision !== true) return 'this addon has no device-decided optimizer steps (no cuda.optimDecision)';
    if (this.device !== 'none') return `the optimizer state is offloaded to ${this.device}: the host updates it`;
    if (this.hostState) return 'the partition is in host memory: the host updates it';
    if (this.n > 0 && this.scalars === null) return 'no optimizer state yet: run one plain step first';
    return null;
  }

  /** The partition refs of `n` elements at `shift` into the store's range `refs`. */
  private refs(param: FlatRef, grad: FlatRef, refs: SlotRefs, shift: number, n: number): PartitionRefs {
    const has = (slot: string) => this.store.slots.includes(slot);
    const at = (r: StateRef): StateRef => (r.id < 0 ? r : { id: r.id, off: r.off + shift });
    return { param, grad, state: (name) => (has(name) ? at(refs(name)) : NONE), master: has('master') ? at(refs('master')) : NONE, n };
  }

  /**
   * A writable 1-D view of `slot`'s elements [at, at + len) (checkpoints); dispose it when done.
   * With nvme the slots are read into memory until `flush()` (which `step()` does first).
   */
  stateView(slot: string, at: number, len: number): Tensor {
    this.live();
    return this.store.view(slot, at, len);
  }

  /** Zeros the optimizer state (not the master), before a checkpoint's slices are copied in. */
  clearState(): void {
    this.live();
    for (const s of this.stateSlots) {
      const v = this.store.view(s, 0, this.n);
      k.fill(v, 0);
      v.dispose();
    }
  }

  /** Copies the partition's parameters (1-D, n elements) into the fp32 master; a no-op for f32. */
  syncMaster(params: Tensor): void {
    this.live();
    if (!this.store.slots.includes('master')) return;
    if (params.numel !== this.n) throw new Error(`PartitionOptimizer.syncMaster: ${params.numel} parameters for a partition of ${this.n}`);
    const v = this.store.view('master', 0, this.n);
    k.copyInto(params, v);
    v.dispose();
  }

  /** nvme: writes state changed through `stateView` back to the file and frees its memory. */
  flush(): void {
    this.live();
    this.store.flush();
  }

  /** Frees the memory and deletes the nvme file. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.store.destroy();
    this.scalars?.dispose();
    this.scalars = null;
  }

  private live(): void {
    if (this.destroyed) throw new Error('PartitionOptimizer: used after destroy()');
  }
}

/** The nvme file name stem for `group`'s rank and a flat group of `dtype` (index `i`). */
export function partitionName(group: ProcessGroup, dtype: DType, i: number): string {
  return `rank${group.rank}-g${i}-${dtype}`;
}
