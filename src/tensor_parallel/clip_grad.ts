/**
 * Global-norm gradient clipping of a tensor-parallel model (Megatron's clip_grad_norm over the
 * model-parallel group): the norm of the unsharded model's gradients. A split parameter's squared
 * norm is the sum of its shards' over tp; a parameter every tp rank holds whole (a layer norm, a
 * row-parallel bias, wpe) has the same gradient on each rank (after
 * `allReduceSequenceParallelGrads` under sequence parallelism) and is counted once, on tp rank 0.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Module } from '../nn/module.ts';
import { scaleToMaxNorm } from '../optim/clip_grad.ts';
import { withDeviceSums } from '../optim/device_sums.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { parameterLayout } from './shard_layout.ts';

/**
 * Clips `model`'s gradients in place to a global L2 norm of `maxNorm` (PyTorch's rule: scale by
 * maxNorm / (norm + 1e-6) when below 1), the norm taken over the full (unsharded) gradients.
 * Call on every tp rank after backward (and the dp/sequence-parallel reductions), before the
 * optimizer. Returns the total norm before clipping (NaN/Infinity: gradients left as they are).
 * @example
 * loss.backward();
 * allReduceSequenceParallelGrads(model, tp);
 * clipGradNormTensorParallel(model, 1.0, tp);
 * opt.step();
 */
export function clipGradNormTensorParallel(model: Module, maxNorm: number, group: ProcessGroup): number {
  if (typeof maxNorm !== 'number' || !Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new Error(`clipGradNormTensorParallel: maxNorm must be a finite number >= 0, got ${String(maxNorm)}`);
  }
  const seen = new Set<Tensor>();
  const grads: Tensor[] = [];
  const counted: Tensor[] = [];
  for (const m of model.modules()) {
    for (const [name, p] of m.namedParameters({ recurse: false })) {
      if (seen.has(p)) continue;
      seen.add(p);
      const g = p.grad && !p.grad.disposed ? p.grad : null;
      if (!g) continue;
      grads.push(g);
      if (parameterLayout(m, name) === null && group.rank !== 0) continue;   // replicated: counted on tp rank 0
      counted.push(g);
    }
  }
  // The squares accumulate in one f64 on the gradients' device, all-reduced over tp and read once.
  const device = grads[0]?.device ?? model.parameters()[0]?.device ?? 'cpu';
  const [sq] = withDeviceSums(device, 1, (s) => {
    for (const g of counted) s.add(g, 2);
    s.allReduce([group]);
    return s.read();
  });
  const total = Math.sqrt(sq);
  scaleToMaxNorm(grads, total, maxNorm);
  return total;
}
