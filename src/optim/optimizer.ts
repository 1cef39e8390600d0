/**
 * The optimizer base: parameter groups, lazily allocated flat state, the step loop that finds
 * runs of adjacent parameters (one fused native call per run), zeroGrad and state save/load.
 * SGD, Adam and AdamW supply their hyperparameters, their state names and one `update` per run.
 */

import { noGrad } from '../autograd/grad_mode.ts';
import { markGradZero } from '../autograd/grad_zero.ts';
import { native } from '../native.ts';
import * as k from '../ops/kernels.ts';
import { graphCaptureDevice, onEachReplay } from '../tensor/capture_state.ts';
import { isFloat } from '../tensor/dtype.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { checkKeys } from './checks.ts';
import { type FlatRef, NONE, type StateRef } from './fused.ts';
import { CapturedStep, checkGraphStepAddon, decisionRef, type FlatF64, graphStepTesting, launchDecided, ScalarSlots } from './graph_step.ts';
import { copyFlat, GroupState, type Slot, type StateDType } from './group_state.ts';
import { PreparedRun } from './prepared_run.ts';
import { cloneHyper, loadState, type OptimizerStateDict, saveState } from './state_dict.ts';

/** One group: its parameters and its hyperparameters (which schedules may change between steps). */
export type ParamGroup<H> = H & { readonly params: readonly Tensor[] };

/** A parameter list, or a list of groups each with `params` and hyperparameters overriding the defaults. */
export type ParamsInput<H> = Iterable<Tensor> | readonly ({ params: Iterable<Tensor> } & Partial<H>)[];

/** A run of adjacent parameters updated by one native call. */
export interface Run {
  param: FlatRef;
  grad: FlatRef;
  /** Element offset of the run in the group's state buffers. */
  stateOffset: number;
  master: StateRef;
  n: number;
  /** The step number of this update (from 1). */
  step: number;
  /** True when the run's parameters have no values yet in state `name`. */
  fresh(name: string): boolean;
}

/** A writable handle to one of the run's state buffers, for the fused kernels. */
export interface RunState {
  ref(name: string): StateRef;
  readonly dtype: StateDType;
}

/** Options of one `Optimizer.step`. */
export interface OptimizerStepOptions {
  /**
   * Multiplies every gradient as the fused kernel reads it, in the state dtype (f32), before the
   * update (default 1). The engines pass 1/lossScale × the clip factor under fp16, so the 16-bit
   * gradients stay scaled and are never unscaled in their own dtype.
   */
  gradScale?: number;
}

interface Pending {
  slots: Slot[];
  grads: Tensor[];
}

/** Base class of the fused optimizers; see SGD, Adam, AdamW. */
export abstract class Optimizer<H extends object> {
  /** The hyperparameters that groups inherit when they do not set their own. */
  readonly defaults: Readonly<H>;
  /** The groups; `lr` and other hyperparameters may be changed between steps (schedules do). */
  readonly paramGroups: ParamGroup<H>[] = [];
  private readonly states: GroupState[] = [];
  private readonly seen = new Set<Tensor>();
  /** The gradient multiplier of the step in progress (see OptimizerStepOptions); 1 between steps. */
  protected gradScale = 1;

  protected constructor(
    protected readonly name: string,
    params: ParamsInput<H>,
    builtin: H,
    opts: Partial<H>,
    private readonly stateNames: readonly string[],
  ) {
    if (opts === null || typeof opts !== 'object') throw new Error(`${name}: options must be an object`);
    checkKeys(opts, Object.keys(builtin), name);
    this.defaults = cloneHyper({ ...builtin, ...opts });
    this.checkHyper(this.defaults, name);
    const list = [...(params as Iterable<unknown>)];
    const grouped = list.length > 0 && list.every((g) => g !== null && typeof g === 'object' && 'params' in g && !(g instanceof Tensor));
    const groups = grouped ? (list as ({ params: Iterable<Tensor> } & Partial<H>)[]) : [{ params: list as Tensor[] }];
    for (const g of groups) this.addParamGroup(g as { params: Iterable<Tensor> } & Partial<H>);
    if (this.paramGroups.every((g) => g.params.length === 0)) throw new Error(`${name}: got an empty parameter list`);
  }

  /** Throws when a hyperparameter is missing, non-finite or out of range. */
  protected abstract checkHyper(h: H, where: string): void;
  /** The state names this group's next update writes (e.g. none for SGD without momentum). */
  protected abstract activeState(group: ParamGroup<H>): readonly string[];
  /** Applies one update to a run with one fused native call. */
  protected abstract update(group: ParamGroup<H>, run: Run, state: RunState): void;

  /** Adds a group (`params` plus hyperparameters overriding the defaults). */
  addParamGroup(group: { params: Iterable<Tensor> } & Partial<H>): void {
    const where = `${this.name}: param group ${this.paramGroups.length}`;
    if (group === null || typeof group !== 'object') throw new Error(`${where} must be an object with params`);
    checkKeys(group, ['params', ...Object.keys(this.defaults)], where);
    const params = [...(group.params ?? [])];
    params.forEach((p, i) => {
      if (!(p instanceof Tensor)) throw new Error(`${where}: params[${i}] is not a Tensor`);
      if (p.disposed) throw new Error(`${where}: params[${i}] was disposed`);
      if (!isFloat(p.dtype)) throw new Error(`${where}: params[${i}] has dtype ${p.dtype}; only floating-point tensors can be optimized`);
      if (!p.isLeaf) throw new Error(`${where}: params[${i}] ${p} is not a leaf (the result of an op); optimize leaves`);
      if (!p.isContiguous) throw new Error(`${where}: params[${i}] ${fmt(p.shape)} is not contiguous (strides ${fmt(p.strides)})`);
      if (this.seen.has(p)) throw new Error(`${where}: params[${i}] ${p} appears more than once`);
      this.seen.add(p);
    });
    const { params: _, ...hyper } = group;
    const merged = { ...cloneHyper(this.defaults), ...cloneHyper(hyper), params: Object.freeze(params) } as ParamGroup<H>;
    this.checkHyper(merged, where);
    this.paramGroups.push(merged);
    this.states.push(new GroupState(params));
  }

  /**
   * Applies one update to every parameter that has a gradient (parameters whose `grad` is null
   * are skipped and keep their state). Runs of parameters adjacent in one storage, with grads
   * adjacent in one storage, are updated by one native call each.
   *
   * Inside captureCudaGraph (SGD, Adam, AdamW on the captured device) the update is captured and
   * runs at each replay, with the hyperparameters and step counts the optimizer has then (each
   * replay advances them as an eager step; the capture advances nothing): lr schedules apply.
   * `opts` are the capture's at every replay. Refused, naming the parameter: a parameter without
   * state yet (run one step eagerly before capturing), parameters on another device, a
   * non-contiguous gradient. A replay after a captured parameter's `.grad` was set to null or
   * replaced, or another parameter got one, throws before writing anything.
   * @example
   * opt.step();                                   // plain
   * opt.step({ gradScale: 1 / lossScale });       // fp16 gradients unscaled in f32 by the kernel
   */
  step(opts: OptimizerStepOptions = {}): void {
    checkKeys(opts, ['gradScale'], `${this.name}.step`);
    const gradScale = opts.gradScale ?? 1;
    if (typeof gradScale !== 'number' || !Number.isFinite(gradScale)) {
      throw new Error(`${this.name}.step: gradScale must be a finite number, got ${String(opts.gradScale)}`);
    }
    this.gradScale = gradScale;
    try {
      this.stepRuns();
    } finally {
      this.gradScale = 1;
    }
  }

  private stepRuns(): void {
    noGrad(() => {
      const device = graphCaptureDevice();
      if (device !== null) {
        this.captureStep(device);
        return;
      }
      // Every group is checked and its runs found before any parameter changes.
      const temps: Tensor[] = [];
      try {
        const plans = this.paramGroups.map((group, gi) => {
          this.checkHyper(group, `${this.name}.step: param group ${gi}`);
          return this.collectRuns(this.states[gi], gi, temps);
        });
        plans.forEach((runs, gi) => {
          const group = this.paramGroups[gi];
          const active = this.activeState(group);
          const gs = this.states[gi];
          if (runs.length > 0) gs.scalarSlots(true); // for a later capture of the step: made outside it
          this.updateRuns(group, runs.map((run) => this.prepareRun(gs, run)), null);
          advance(runs, active);
        });
      } finally {
        for (const t of temps) t.dispose();
      }
    });
  }

  /**
   * One step whose skip and gradient multiplier the device decides: `decision` is an f64 tensor
   * on a CUDA device whose first two elements are {skip, gradScale} when the step's launches run
   * (cuda.stepDecision writes them: the overflow check and the clip factor, decided_step.ts). A
   * skip leaves every parameter and state value untouched; otherwise the update is `step({ gradScale })`'s,
   * bit for bit. Nothing is read back, so the host does not wait. The host state (step counts)
   * advances as if the step ran; call the returned function to take that back if the decision
   * turned out to be a skip. Every parameter with a gradient must be on the decision's device and
   * have its state already (one plain step first: `canStepDecided` says whether it may). Inside
   * captureCudaGraph the launches are captured reading the decision, and each replay advances the
   * step counts (as a captured `step()`); the returned function takes back one replay's advance.
   * @example
   * const undo = opt.stepDecided(decision);                                  // queued; the host goes on
   * const token = native.cuda.readLater(decision.id, decision.offset * 8, 16); // the decision, copied back later
   * if (new Float64Array(native.cuda.readLaterTake(token))[0] !== 0) undo();    // once needed: the step was skipped
   */
  stepDecided(decision: Tensor): () => void {
    const op = `${this.name}.stepDecided`;
    const dec = decisionRef(decision, op);
    const refusal = this.decidedRefusal(decision.device);
    if (refusal !== null) throw new Error(`${op}: ${refusal}`);
    const moved = noGrad(() => {
      // Inside a capture: the launches read the decision at each replay, whose prologue advances the step counts.
      if (graphCaptureDevice() !== null) return this.captureStep(decision.device, dec);
      const plans = this.paramGroups.map((group, gi) => {
        this.checkHyper(group, `${op}: param group ${gi}`);
        return this.collectRuns(this.states[gi], gi, null);
      });
      const buffers = this.states.map((gs) => gs.scalarSlots(false));
      launchDecided(buffers, dec, (slots) => this.updateAll(plans, slots));
      plans.forEach((runs, gi) => advance(runs, this.activeState(this.paramGroups[gi])));
      return plans.flat().flatMap((run) => run.slots);
    });
    return () => {
      for (const s of moved) s.step--;
    };
  }

  /** Whether stepDecided would take a step on `device` now. */
  canStepDecided(device: Device): boolean {
    return native.cuda?.optimDecision === true && this.decidedRefusal(device) === null;
  }

  /** Why a decided step on `device` is refused (a parameter elsewhere, or without state or a contiguous gradient yet), or null. */
  private decidedRefusal(device: Device): string | null {
    for (let gi = 0; gi < this.paramGroups.length; gi++) {
      const gs = this.states[gi];
      const active = this.activeState(this.paramGroups[gi]);
      if (gs.scalarSlots(false) === null && gs.slots.some((s) => s.param.grad)) return `param group ${gi} has no optimizer state yet: run one plain step first`;
      for (let i = 0; i < gs.slots.length; i++) {
        const s = gs.slots[i];
        const g = s.param.grad;
        if (g === null || g.disposed) continue;
        const at = () => `param group ${gi}, params[${i}] ${s.param}`;
        if (s.param.device !== device) return `${at()} is on ${s.param.device}, the decision on ${device}`;
        if (s.step === 0 || active.some((name) => !s.has.has(name))) return `${at()} has no optimizer state yet: run one plain step first`;
        if (!g.isContiguous) return `${at()}: its grad is not contiguous`;
      }
    }
    return null;
  }

  /**
   * step() during captureCudaGraph (graph_step.ts): every group's runs are checked and captured
   * reading their scalars from device slots; each replay's prologue checks that the runs are still
   * those captured, writes the slots from the current host state and advances it.
   */
  private captureStep(device: Device, decision: FlatF64 | null = null): Slot[] {
    const op = `${this.name}.step inside captureCudaGraph (capturing ${device})`;
    checkGraphStepAddon(op);
    const actives = this.paramGroups.map((group) => [...this.activeState(group)]);
    const plans = this.paramGroups.map((group, gi) => {
      this.checkHyper(group, `${op}: param group ${gi}`);
      const gs = this.states[gi];
      const runs = this.collectRuns(gs, gi, null);
      if (runs.length > 0 && gs.device !== device) {
        throw new Error(`${op}: param group ${gi}'s parameters are on ${gs.device}; the graph updates only ${device}'s`);
      }
      for (const run of runs) {
        for (const s of run.slots) {
          if (s.step === 0 || actives[gi].some((name) => !s.has.has(name)) || gs.scalarSlots(false) === null) {
            throw new Error(
              `${this.where(gi, gs.slots.indexOf(s), s.param, op)} has no optimizer state yet (its first step creates it, which a replay would not redo): run one step eagerly before capturing`,
            );
          }
        }
      }
      return runs;
    });
    const buffers = this.states.map((gs) => gs.scalarSlots(false));
    // Each group's native calls take its slots in order: the capture's read them, a replay's write them.
    this.updateAll(plans, new ScalarSlots(buffers, 1, decision));
    const updated = plans.map((runs) => runs.flatMap((r) => r.slots));
    const captured = new CapturedStep(this.states, updated, actives);
    const gradScale = this.gradScale;
    onEachReplay(() => {
      const replayOp = `CudaGraph.replay: ${this.name}.step`;
      this.paramGroups.forEach((group, gi) => this.checkHyper(group, `${replayOp}: param group ${gi}`));
      captured.check(
        this.paramGroups.map((group) => this.activeState(group)),
        (gi, i, p) => this.where(gi, i, p, replayOp),
        replayOp,
      );
      return () => {
        this.gradScale = gradScale;
        try {
          if (!graphStepTesting.skipWrite) this.updateAll(plans, new ScalarSlots(buffers, 2));
        } finally {
          this.gradScale = 1;
        }
        if (!graphStepTesting.skipAdvance) plans.forEach((runs, gi) => advance(runs, this.activeState(this.paramGroups[gi])));
      };
    });
    return updated.flat();
  }

  /** Every group's runs updated, each native call taking the next of `slots`. */
  private updateAll(plans: readonly Pending[][], slots: ScalarSlots): void {
    plans.forEach((runs, gi) => {
      slots.group(gi);
      this.updateRuns(this.paramGroups[gi], runs.map((run) => this.prepareRun(this.states[gi], run)), slots);
    });
  }

  /**
   * Updates a group's runs: one `update` each. A subclass may update several runs per native
   * call instead (AdamW on a device: one launch for many parameters), and must when `slots` is
   * given (a step inside a CUDA graph: each native call reads or writes its scalars in the next slot).
   */
  protected updateRuns(group: ParamGroup<H>, runs: { run: Run; state: RunState }[], slots: ScalarSlots | null): void {
    if (slots !== null) throw new Error(`${this.name}.step: this optimizer cannot step inside a CUDA graph`);
    for (const { run, state } of runs) this.update(group, run, state);
  }

  /** A run's ranges (the fp32 masters initialized on its first step). */
  private prepareRun(gs: GroupState, pending: Pending): { run: Run; state: RunState } {
    const [s0] = pending.slots;
    const g0 = pending.grads[0];
    const n = pending.slots.reduce((a, s) => a + s.numel, 0);
    let master = NONE;
    if (s0.masterOffset >= 0) {
      const m = gs.masterBuffer();
      master = { id: m.id, off: s0.masterOffset };
      if (s0.step === 0) for (const s of pending.slots) copyFlat(s.param, m, s.masterOffset);
    }
    const run = new PreparedRun(
      { dtype: s0.param.dtype, id: s0.param.id, off: s0.param.offset },
      { dtype: g0.dtype, id: g0.id, off: g0.offset },
      master,
      n,
      s0,
      gs,
    );
    return { run, state: run };
  }

  private where(gi: number, i: number, p: Tensor, op = `${this.name}.step`): string {
    return `${op}: param group ${gi}, params[${i}] ${p}`;
  }

  /**
   * Groups the parameters with gradients into runs that one kernel call can update. A
   * non-contiguous gradient is copied into a temporary added to `temps`; refused when `temps` is
   * null (a CUDA graph's step: its runs must be the same tensors at every replay).
   */
  private collectRuns(gs: GroupState, gi: number, temps: Tensor[] | null): Pending[] {
    const runs: Pending[] = [];
    let cur: Pending | null = null;
    let prev: { slot: Slot; grad: Tensor; temp: boolean } | null = null;
    gs.slots.forEach((slot, i) => {
      const p = slot.param;
      let g = p.grad;
      if (g === null || g.disposed) {
        prev = null;
        return;
      }
      // The message names the tensor (a string per parameter): built only when one is thrown.
      if (p.disposed) throw new Error(`${this.where(gi, i, p)} was disposed`);
      if (!p.isContiguous) throw new Error(`${this.where(gi, i, p)} is not contiguous (strides ${fmt(p.strides)})`);
      if (!sameShape(g.shape, p.shape)) throw new Error(`${this.where(gi, i, p)}: its grad has shape ${fmt(g.shape)}`);
      if (!isFloat(g.dtype)) throw new Error(`${this.where(gi, i, p)}: its grad has dtype ${g.dtype}`);
      const temp = !g.isContiguous;
      if (temp) {
        if (temps === null) throw new Error(`${this.where(gi, i, p)} inside captureCudaGraph: its grad is not contiguous (strides ${fmt(g.strides)}); a captured step updates from gradients in place`);
        g = k.copy(g);
        temps.push(g);
      }
      const joins =
        cur !== null && prev !== null && !temp && !prev.temp &&
        adjacent(prev.slot.param, p) && adjacent(prev.grad, g) &&
        prev.slot.step === slot.step && sameSet(prev.slot.has, slot.has) &&
        (slot.masterOffset < 0) === (prev.slot.masterOffset < 0);
      if (joins && cur) {
        cur.slots.push(slot);
        cur.grads.push(g);
      } else {
        cur = { slots: [slot], grads: [g] };
        runs.push(cur);
      }
      prev = { slot, grad: g, temp };
    });
    return runs;
  }

  /**
   * Clears gradients: disposes them and sets `grad` to null (the default, as PyTorch), or with
   * `setToNone: false` fills them with zeros in place (keeping views into flat gradient buffers).
   */
  zeroGrad(opts: { setToNone?: boolean } = {}): void {
    checkKeys(opts, ['setToNone'], `${this.name}.zeroGrad`);
    const setToNone = opts.setToNone ?? true;
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        const g = p.grad;
        if (g === null) continue;
        if (setToNone || g.disposed) {
          if (!g.disposed) g.dispose();
          p.grad = null;
        } else if (g.isContiguous) {
          k.fill(g, 0);
          markGradZero(g);
        } else {
          const z = k.fill(k.empty(g.shape, g.dtype, undefined, false, g.device), 0);
          k.copyInto(z, g);
          z.dispose();
        }
      }
    }
  }

  /** A copy of the state as plain data; see OptimizerStateDict. */
  stateDict(): OptimizerStateDict {
    return saveState(this.paramGroups, this.states);
  }

  /**
   * Restores a state saved by `stateDict()` into an optimizer over parameters of the same shapes,
   * in the same groups (hyperparameters included). Everything is checked before anything changes.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    loadState(sd, {
      where: `${this.name}.loadStateDict`,
      groups: this.paramGroups,
      states: this.states,
      hyperKeys: Object.keys(this.defaults),
      stateNames: this.stateNames,
      checkHyper: (h, where) => this.checkHyper(h, where),
    });
  }

  /** Frees the optimizer state (tag `optim`); a later step starts fresh. */
  dispose(): void {
    for (const gs of this.states) gs.dispose();
  }
}

/** After a group's runs were updated: one more step each, and `active` states hold values. */
function advance(runs: readonly Pending[], active: readonly string[]): void {
  for (const run of runs) {
    for (const s of run.slots) {
      s.step++;
      for (const name of active) s.has.add(name);
    }
  }
}

function adjacent(a: Tensor, b: Tensor): boolean {
  return a.id === b.id && a.dtype === b.dtype && b.offset === a.offset + a.numel;
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}
