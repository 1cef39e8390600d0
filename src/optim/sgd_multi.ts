/**
 * SGD over many runs per native call on a CUDA device (native/cuda/sgd_multi.cu): the optimizer's
 * runs are one per parameter unless parameters share a flat buffer, so per-run calls cost a launch
 * per parameter each step (314 for ResNet-101). Runs are grouped by what one launch must share
 * (dtypes and whether the momentum buffer starts this step); values equal the per-run kernel's
 * bit for bit (both update an element with native/cuda/sgd_element.cuh).
 */
import { native } from '../native.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { gradScaleOf, NONE, type SgdScalars } from './fused.ts';
import { EAGER_SLOT, type ScalarSlots, slotArgs } from './graph_step.ts';
import type { Run, RunState } from './optimizer.ts';

const REF = 9; // numbers per run in the native call's refs

/**
 * Whether `runs` can go through sgdMulti: on a CUDA device, with an addon that has it, more than
 * one, and no two runs writing overlapping parameter ranges (one launch updates them all at once,
 * where per-run calls would apply them in turn).
 */
export function sgdMultiApplies(runs: readonly { run: Run }[]): boolean {
  // A group's parameters share one device (GroupState checks), so the first run's tells.
  return runs.length > 1 && typeof native.cuda?.sgdMulti === 'function' && native.storageIsCuda(runs[0].run.param.id) && disjoint(runs);
}

/**
 * Updates every run, one native call per group of runs sharing dtypes and first step (each up to 96
 * tensors per launch). With `slots` (a step in a CUDA graph, graph_step.ts), each call takes the next slot.
 */
export function sgdMulti(runs: readonly { run: Run; state: RunState }[], h: SgdScalars, slots: ScalarSlots | null = null): void {
  if (slots !== null && !disjoint(runs)) {
    throw new Error('SGD.step inside captureCudaGraph: two parameters share elements; one launch would update them at once, where eager steps apply them in turn');
  }
  const useBuf = h.momentum !== 0;
  const groups = new Map<string, { run: Run; state: RunState }[]>();
  for (const r of runs) {
    const key = `${r.run.param.dtype} ${r.run.grad.dtype} ${useBuf && r.run.fresh('momentumBuffer')}`;
    const list = groups.get(key);
    if (list) list.push(r);
    else groups.set(key, [r]);
  }
  const gradScale = gradScaleOf(h);
  for (const list of groups.values()) {
    const { run: r0, state: s0 } = list[0];
    // A Float64Array crosses N-API in one read; a plain array costs one per number.
    const refs = new Float64Array(list.length * REF);
    let at = 0;
    for (const { run, state } of list) {
      const buf = useBuf ? state.ref('momentumBuffer') : NONE;
      refs[at++] = run.param.id;
      refs[at++] = run.param.off;
      refs[at++] = run.grad.id;
      refs[at++] = run.grad.off;
      refs[at++] = buf.id;
      refs[at++] = buf.off;
      refs[at++] = run.master.id;
      refs[at++] = run.master.off;
      refs[at++] = run.n;
    }
    const slot = slots === null ? EAGER_SLOT : slots.next();
    native.cuda.sgdMulti(
      dtypeCode(r0.param.dtype), dtypeCode(r0.grad.dtype), dtypeCode(s0.dtype), refs,
      h.lr, h.momentum, h.dampening, h.weightDecay, h.nesterov, h.maximize, useBuf && r0.fresh('momentumBuffer'), gradScale, ...slotArgs(slot),
    );
  }
}

/** No two runs' parameter ranges overlap (usually each run has a storage of its own: one Set pass). */
function disjoint(runs: readonly { run: Run }[]): boolean {
  const ids = new Set<number>();
  for (const { run } of runs) ids.add(run.param.id);
  if (ids.size === runs.length) return true;
  const ranges = runs.map(({ run }) => run).sort((a, b) => a.param.id - b.param.id || a.param.off - b.param.off);
  for (let i = 1; i < ranges.length; i++) {
    const a = ranges[i - 1];
    const b = ranges[i];
    if (a.param.id === b.param.id && b.param.off < a.param.off + a.n) return false;
  }
  return true;
}
