/**
 * Adam / AdamW over many runs per native call on a CUDA device (native/cuda/adam_multi.cu): the
 * optimizer's runs are one per parameter unless parameters share a flat buffer, so per-run calls
 * cost a launch per parameter each step (148 for GPT-2 124M). Runs are grouped by what one
 * launch must share (dtypes and step number); values equal the per-run kernel's bit for bit.
 */
import { native } from '../native.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { type AdamScalars, gradScaleOf } from './fused.ts';
import { EAGER_SLOT, type ScalarSlots, slotArgs } from './graph_step.ts';
import type { Run, RunState } from './optimizer.ts';

/** Whether `runs` can go through adamMulti: on a CUDA device, with an addon that has it, more than one. */
export function adamMultiApplies(runs: readonly { run: Run }[]): boolean {
  return runs.length > 1 && typeof native.cuda?.adamMulti === 'function' && runs.every(({ run }) => native.storageIsCuda(run.param.id));
}

/**
 * Updates every run, one call per group of runs sharing dtypes and step (each call up to 24 tensors
 * per launch). With `slots` (a step in a CUDA graph, graph_step.ts), each call takes the next slot.
 */
export function adamMulti(runs: readonly { run: Run; state: RunState }[], h: AdamScalars, slots: ScalarSlots | null = null): void {
  const groups = new Map<string, { run: Run; state: RunState }[]>();
  for (const r of runs) {
    const key = `${r.run.param.dtype} ${r.run.grad.dtype} ${r.state.dtype} ${r.run.step}`;
    const list = groups.get(key);
    if (list) list.push(r);
    else groups.set(key, [r]);
  }
  // A Float64Array crosses N-API in one read; a plain array costs one per number (1628 for GPT-2 124M: ~0.3 ms).
  const typed = native.cuda.adamMultiTypedRefs === true;
  for (const list of groups.values()) {
    const { run: r0, state: s0 } = list[0];
    const refs: Float64Array | number[] = typed ? new Float64Array(list.length * 11) : new Array<number>(list.length * 11);
    let at = 0;
    for (const { run, state } of list) {
      const m = state.ref('expAvg');
      const v = state.ref('expAvgSq');
      refs[at++] = run.param.id;
      refs[at++] = run.param.off;
      refs[at++] = run.grad.id;
      refs[at++] = run.grad.off;
      refs[at++] = m.id;
      refs[at++] = m.off;
      refs[at++] = v.id;
      refs[at++] = v.off;
      refs[at++] = run.master.id;
      refs[at++] = run.master.off;
      refs[at++] = run.n;
    }
    const slot = slots === null ? EAGER_SLOT : slots.next();
    native.cuda.adamMulti(
      dtypeCode(r0.param.dtype), dtypeCode(r0.grad.dtype), dtypeCode(s0.dtype), refs,
      h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, r0.step, h.decoupled, h.maximize, gradScaleOf(h), ...slotArgs(slot),
    );
  }
}
