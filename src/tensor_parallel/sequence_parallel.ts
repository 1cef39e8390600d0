/**
 * Gradients of parameters replicated across a sequence-parallel region (Megatron's
 * `sequence_parallel` attribute and its all-reduce of their grads over tp). Under sequence
 * parallelism each tp rank runs a replicated parameter (RowParallelLinear's bias, a LayerNorm's
 * weight and bias) over only its slice of the tokens, so its gradient is that slice's share:
 * the full gradient is the sum over the tp group. Such parameters are marked here, and
 * `allReduceSequenceParallelGrads` sums their gradients after backward, before the optimizer
 * (and before or after a data-parallel average: the two commute).
 *
 * Summing once after backward, rather than inside each backward, keeps one collective per step
 * however many micro-batches accumulate into the gradients, and every rank ends with the same
 * bits (the all-reduce's result), so the replicas stay identical.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module, RemovableHandle } from '../nn/module.ts';
import * as k from '../ops/kernels.ts';
import type { DType } from '../tensor/dtype.ts';
import { contiguousStrides } from '../tensor/shape.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';

const marked = new WeakSet<Tensor>();

/**
 * Marks `params` as replicated across a sequence-parallel region: each tp rank's gradient is a
 * partial sum, completed by `allReduceSequenceParallelGrads`. Returns its argument.
 * @example
 * const ln = new LayerNorm(768);                       // applied to [batch, seq/tp, 768]
 * markSequenceParallel(ln.weight!, ln.bias!);
 */
export function markSequenceParallel<T extends Tensor>(...params: T[]): T[] {
  for (const p of params) marked.add(p);
  return params;
}

/** Whether `p` was marked by `markSequenceParallel` (RowParallelLinear marks its bias under sequenceParallel). */
export function isSequenceParallel(p: Tensor): boolean {
  return marked.has(p);
}

/** The marked parameters of `module` that take gradients, in registration order. */
export function sequenceParallelParameters(module: Module): Tensor[] {
  return [...new Set(module.parameters())].filter((p) => marked.has(p) && p.requiresGrad);
}

/**
 * Sums the gradients of `module`'s marked parameters over `group` (the tp group), in place: one
 * flat all-reduce per dtype. Call on every tp rank after backward, before clipping and the
 * optimizer. A parameter with no gradient contributes zeros; it gets the sum if any rank had a
 * gradient, and stays without one otherwise. When every marked parameter has a gradient on this
 * rank (the usual case) nothing is read back to the host; otherwise one has-gradient flag per
 * parameter is (a device synchronization on a GPU). Returns the parameters reduced.
 * @example
 * loss.backward();
 * allReduceSequenceParallelGrads(model, mesh.group('tp'));
 * optimizer.step();
 */
export function allReduceSequenceParallelGrads(module: Module, group: ProcessGroup): Tensor[] {
  const params = sequenceParallelParameters(module);
  if (group.size === 1 || params.length === 0) return params;
  const byDtype = new Map<DType, Tensor[]>();
  for (const p of params) {
    const list = byDtype.get(p.dtype) ?? [];
    list.push(p);
    byDtype.set(p.dtype, list);
  }
  withTag('grad', () => {
    for (const [dtype, list] of byDtype) {
      // Layout: every parameter's gradient, then one has-gradient flag per parameter.
      const numel = list.reduce((n, p) => n + p.numel, 0);
      const flat = k.empty([numel + list.length], dtype, undefined, true, list[0].device);
      const slot = (p: Tensor, at: number) => flat.alias(p.shape, contiguousStrides(p.shape), flat.offset + at);
      let at = 0;
      list.forEach((p, i) => {
        const g = p.grad && !p.grad.disposed ? p.grad : null;
        if (g) {
          const view = slot(p, at);
          k.copyInto(g, view);
          view.dispose();
          const flag = flat.alias([1], [1], flat.offset + numel + i);
          k.fill(flag, 1);
          flag.dispose();
        }
        at += p.numel;
      });
      group.allReduce(flat, 'sum');
      // A parameter with a gradient here had one somewhere: the sum is copied back without looking.
      // Only a parameter without one here needs the flags (a read, so a device synchronization):
      // whether it gets a gradient depends on the other ranks.
      const has = (p: Tensor) => !!p.grad && !p.grad.disposed;
      let flags: ArrayLike<number | bigint> | null = null;
      if (!list.every(has)) {
        const flagView = flat.alias([list.length], [1], flat.offset + numel);
        flags = flagView.toArray();
        flagView.dispose();
      }
      at = 0;
      list.forEach((p, i) => {
        if (has(p) || (flags !== null && Number(flags[i]) > 0)) {
          const view = slot(p, at);
          if (has(p)) {
            k.copyInto(view, p.grad as Tensor);
          } else {
            const g = k.copyLike(view, p);
            g.kept = true;
            p.grad = g;
          }
          view.dispose();
        }
        at += p.numel;
      });
      flat.dispose();
    }
  });
  return params;
}

/**
 * Sums each marked parameter's gradient over `group` inside backward, as soon as it is complete
 * (a gradient-ready hook): for consumers that take every pass's gradient during backward, such as
 * ZeRO stage 2, where `allReduceSequenceParallelGrads` after backward would find none. Register
 * before building the consumer (hooks run in registration order). Each pass's gradient must start
 * from none: with accumulation into `p.grad` (DataParallel, ZeRO stage 1) use
 * `allReduceSequenceParallelGrads` after the last backward instead. `remove()` unregisters.
 * @example
 * reduceSequenceParallelGradsInBackward(model, mesh.group('tp'));
 * const zero = new ZeroStage12(model, { type: 'AdamW', lr }, { stage: 2, group: mesh.group('dp') });
 */
export function reduceSequenceParallelGradsInBackward(module: Module, group: ProcessGroup): RemovableHandle {
  const hooks = sequenceParallelParameters(module).map((p) => {
    const hook = (t: Tensor) => {
      if (group.size > 1 && t.grad && !t.grad.disposed) withTag('grad', () => group.allReduce(t.grad as Tensor, 'sum'));
    };
    p.gradReadyHooks.push(hook);
    return { p, hook };
  });
  return {
    remove: () => {
      for (const { p, hook } of hooks) {
        const i = p.gradReadyHooks.indexOf(hook);
        if (i >= 0) p.gradReadyHooks.splice(i, 1);
      }
    },
  };
}
