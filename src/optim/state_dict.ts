/** Saving and restoring an optimizer's state as plain data (no tensors, no native handles). */
import { fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkKeys } from './checks.ts';
import { copyFlat, type GroupState, readFlat, type Slot, type StateDType, writeFlat } from './group_state.ts';

/** One saved state value: a copy of a state tensor, with the parameter's shape. */
export interface StateValue {
  shape: number[];
  dtype: StateDType;
  data: Float32Array | Float64Array;
}

/** A parameter's saved state: its update count and its state tensors by name. */
export interface ParamState {
  step: number;
  buffers: Record<string, StateValue>;
}

/**
 * State by parameter index (counting through the groups in order, as PyTorch does) and each
 * group's hyperparameters with its parameter indices. Parameters never updated have no entry.
 */
export interface OptimizerStateDict {
  state: Record<number, ParamState>;
  paramGroups: (Record<string, unknown> & { params: number[] })[];
}

type Group = { readonly params: readonly Tensor[] };

/** A copy whose arrays (betas) are not shared with the original. */
export function cloneHyper<T extends object>(h: T): T {
  return Object.fromEntries(Object.entries(h).map(([key, v]) => [key, Array.isArray(v) ? [...v] : v])) as T;
}

export function saveState(groups: readonly Group[], states: readonly GroupState[]): OptimizerStateDict {
  const state: Record<number, ParamState> = {};
  const paramGroups: OptimizerStateDict['paramGroups'] = [];
  let index = 0;
  groups.forEach((group, gi) => {
    const gs = states[gi];
    const { params: _, ...hyper } = group;
    const indices: number[] = [];
    for (const slot of gs.slots) {
      indices.push(index);
      if (slot.step > 0 || slot.has.size > 0) {
        const value = (buf: Tensor, off: number): StateValue => ({ shape: [...slot.param.shape], dtype: gs.dtype, data: readFlat(buf, off, slot.numel) });
        const buffers: Record<string, StateValue> = {};
        for (const name of slot.has) buffers[name] = value(gs.buffer(name), slot.offset);
        if (slot.masterOffset >= 0 && slot.step > 0) buffers.master = value(gs.masterBuffer(), slot.masterOffset);
        state[index] = { step: slot.step, buffers };
      }
      index++;
    }
    paramGroups.push({ ...cloneHyper(hyper), params: indices });
  });
  return { state, paramGroups };
}

export interface LoadContext<G extends Group> {
  where: string;
  groups: G[];
  states: readonly GroupState[];
  hyperKeys: readonly string[];
  stateNames: readonly string[];
  checkHyper(h: G, where: string): void;
}

/** Checks everything in `sd` against the optimizer, then replaces its state and hyperparameters. */
export function loadState<G extends Group>(sd: OptimizerStateDict, c: LoadContext<G>): void {
  const { where } = c;
  if (!sd || typeof sd !== 'object' || !Array.isArray(sd.paramGroups) || typeof sd.state !== 'object' || sd.state === null) {
    throw new Error(`${where}: expected { state, paramGroups }`);
  }
  if (sd.paramGroups.length !== c.groups.length) {
    throw new Error(`${where}: the state has ${sd.paramGroups.length} param groups, this optimizer ${c.groups.length}`);
  }
  const slots: { gs: GroupState; slot: Slot }[] = [];
  const hypers = sd.paramGroups.map((saved, gi) => {
    const gs = c.states[gi];
    const gw = `${where}: param group ${gi}`;
    if (!Array.isArray(saved.params) || saved.params.length !== gs.slots.length) {
      throw new Error(`${gw} has ${saved.params?.length} parameters in the state, ${gs.slots.length} here`);
    }
    checkKeys(saved, ['params', ...c.hyperKeys], gw);
    const { params: _, ...hyper } = saved;
    const merged = { ...c.groups[gi], ...cloneHyper(hyper) } as G;
    c.checkHyper(merged, gw);
    for (const slot of gs.slots) slots.push({ gs, slot });
    return merged;
  });
  const entries = Object.entries(sd.state).map(([key, ps]) => {
    const idx = Number(key);
    if (!Number.isInteger(idx) || idx < 0 || idx >= slots.length) {
      throw new Error(`${where}: state for parameter ${key}, but there are ${slots.length} parameters`);
    }
    const { slot } = slots[idx];
    const pw = `${where}: parameter ${idx} ${fmt(slot.param.shape)}`;
    if (!ps || !Number.isInteger(ps.step) || ps.step < 0) throw new Error(`${pw}: step must be a non-negative integer, got ${ps?.step}`);
    const buffers = ps.buffers ?? {};
    checkKeys(buffers, slot.masterOffset >= 0 ? [...c.stateNames, 'master'] : c.stateNames, `${pw} state`);
    for (const [name, v] of Object.entries(buffers)) {
      if (!v || !Array.isArray(v.shape) || !sameShape(v.shape, slot.param.shape)) {
        throw new Error(`${pw}: state "${name}" has shape ${v && Array.isArray(v.shape) ? fmt(v.shape) : String(v?.shape)}`);
      }
      if (!v.data || v.data.length !== slot.numel) throw new Error(`${pw}: state "${name}" has ${v.data?.length} values, not ${slot.numel}`);
    }
    return { idx, step: ps.step, buffers };
  });
  // Everything checked: apply.
  hypers.forEach((h, gi) => Object.assign(c.groups[gi], h));
  for (const gs of c.states) gs.clear();
  for (const { idx, step, buffers } of entries) {
    const { gs, slot } = slots[idx];
    slot.step = step;
    for (const [name, v] of Object.entries(buffers)) {
      if (name === 'master') {
        writeFlat(gs.masterBuffer(), slot.masterOffset, v.data);
      } else {
        writeFlat(gs.buffer(name), slot.offset, v.data);
        slot.has.add(name);
      }
    }
    // A 16-bit parameter saved without its master copy continues from its own value.
    if (slot.masterOffset >= 0 && !('master' in buffers) && step > 0) copyFlat(slot.param, gs.masterBuffer(), slot.masterOffset);
  }
}
