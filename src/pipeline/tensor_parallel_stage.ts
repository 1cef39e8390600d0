/**
 * What a pipeline stage whose layers are tensor-parallel needs from the engine: which of its
 * parameters every tp rank holds whole (their gradients are equal across tp, so a global norm
 * counts them on tp rank 0 only), and the sequence-parallel gradient sums over tp.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { parameterLayout } from '../tensor_parallel/shard_layout.ts';

/** Parameters of `module` not split across tp (layer norms, row-parallel biases, positions). */
export function tensorParallelReplicated(module: Module): Set<Tensor> {
  const out = new Set<Tensor>();
  for (const m of module.modules()) for (const [name, p] of m.namedParameters({ recurse: false })) if (parameterLayout(m, name) === null) out.add(p);
  return out;
}

/** The replicated parameters this rank must leave out of a global norm: all of them off tp rank 0, none on it. */
export function tensorParallelDuplicates(module: Module, tp: ProcessGroup | null): Set<Tensor> {
  return tp && tp.size > 1 && tp.rank !== 0 ? tensorParallelReplicated(module) : new Set();
}
