/**
 * What happens to a stage's gradients once per step, after its last micro-batch: tied copies
 * summed across the stages that hold them, averaged over data-parallel replicas, and the global
 * norm (over every stage, each tied weight counted once) for clipping.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import { tensor } from '../ops/create.ts';
import * as k from '../ops/kernels.ts';
import { scaleToMaxNorm, sumOfSquares } from '../optim/clip_grad.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { PipelineModule } from './module.ts';
import { tensorParallelDuplicates } from './tensor_parallel_stage.ts';

/** Sums each tied weight's gradient over the pipeline ranks holding it (a missing gradient counts as zero). */
export function sumTiedGrads(module: PipelineModule): void {
  for (const t of module.ties) {
    if (!t.group || !t.param) continue;
    if (!t.param.grad || t.param.grad.disposed) {
      const z = k.fill(k.empty(t.param.shape, t.param.dtype, 'grad', false, t.param.device), 0);
      z.kept = true;
      t.param.grad = z;
    }
    t.group.allReduce(t.param.grad, 'sum');
  }
}

/** Averages every gradient over the data-parallel group (plain data parallelism: once per step). */
export function averageGrads(params: Tensor[], group: ProcessGroup): void {
  if (group.size === 1) return;
  const works: Work[] = [];
  for (const p of params) {
    if (!p.grad || p.grad.disposed) {
      const z = k.fill(k.empty(p.shape, p.dtype, 'grad', false, p.device), 0);
      z.kept = true;
      p.grad = z;
    }
    works.push(group.allReduce(p.grad, 'avg', { async: true }));
  }
  for (const w of works) w.wait();
}

/** A number summed over each group in turn (f64 all-reduces). */
export function allReduceNumber(value: number, groups: (ProcessGroup | null)[], op: 'sum' | 'avg' = 'sum'): number {
  let v = value;
  for (const g of groups) {
    if (!g || g.size === 1) continue;
    const t = tensor([v], { dtype: 'f64', tag: 'comm' });
    g.allReduce(t, op);
    v = t.item();
    t.dispose();
  }
  return v;
}

/**
 * Parameters whose gradients count in this rank's share of the global norm: tied copies only on
 * their owner; with tensor-parallel layers (`tp`), parameters every tp rank holds whole only on tp rank 0.
 */
export function normParams(module: PipelineModule, tp: ProcessGroup | null = null): Tensor[] {
  const skip = tensorParallelDuplicates(module, tp);
  for (const t of module.ties) if (t.param && t.owner !== module.pipeRank) skip.add(t.param);
  return module.parameters().filter((p) => !skip.has(p));
}

/**
 * Global-norm clipping over the whole pipeline (plain optimizer: gradients already averaged
 * over dp, so the norm is summed over the pipeline group, and tp with tensor-parallel layers). Returns the norm before clipping.
 */
export function clipPipelineGrads(module: PipelineModule, maxNorm: number, tp: ProcessGroup | null = null): number {
  let local = 0;
  for (const p of normParams(module, tp)) if (p.grad && !p.grad.disposed) local += sumOfSquares(p.grad);
  const total = Math.sqrt(allReduceNumber(local, [module.group, tp]));
  if (maxNorm > 0) scaleToMaxNorm(module.parameters().flatMap((p) => (p.grad && !p.grad.disposed ? [p.grad] : [])), total, maxNorm);
  return total;
}
