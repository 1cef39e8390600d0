/**
 * The raw collectives tensor parallelism uses, along a tensor dim: all-reduce into a copy,
 * split (this rank's slice), all-gather and reduce-scatter. The group's collectives work on
 * flat memory in rank order, so a dim other than the first is moved to the front, exchanged,
 * and moved back. No autograd here: mappings.ts pairs these into differentiable ops.
 */
import { performance } from 'node:perf_hooks';
import type { ProcessGroup } from '../dist/process_group.ts';
import * as k from '../ops/kernels.ts';
import { itemSize } from '../tensor/dtype.ts';
import { contiguousStrides, fmt, normDim } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** Collectives run by the tensor-parallel layers since the last reset (what bench/tp.ts reports). */
export interface TensorParallelCommStats {
  /** Collectives by kind. */
  calls: { allReduce: number; allGather: number; reduceScatter: number };
  /** Bytes of the full-size side of each collective (the all-reduced tensor, the gathered result, the reduce-scattered input). */
  bytes: number;
  /** Wall time inside the collectives. */
  ms: number;
}

const stats: TensorParallelCommStats = { calls: { allReduce: 0, allGather: 0, reduceScatter: 0 }, bytes: 0, ms: 0 };

/** A copy of the counters. */
export function tensorParallelCommStats(): TensorParallelCommStats {
  return { calls: { ...stats.calls }, bytes: stats.bytes, ms: stats.ms };
}

/** Zeroes the counters. */
export function resetTensorParallelCommStats(): void {
  stats.calls = { allReduce: 0, allGather: 0, reduceScatter: 0 };
  stats.bytes = 0;
  stats.ms = 0;
}

function timed(kind: keyof TensorParallelCommStats['calls'], full: Tensor, run: () => void): void {
  const t0 = performance.now();
  run();
  stats.ms += performance.now() - t0;
  stats.calls[kind]++;
  stats.bytes += full.numel * itemSize(full.dtype);
}

/** `dim`'s size divided by the group size, or an error naming both. */
export function sliceSize(x: Tensor, dim: number, group: ProcessGroup, what: string): number {
  const d = normDim(dim, x.ndim, what);
  const n = x.shape[d];
  if (n % group.size !== 0) {
    throw new Error(`${what}: dim ${dim} of ${fmt(x.shape)} has size ${n}, which is not divisible by the ${group.size} ranks of ${group}`);
  }
  return n / group.size;
}

/** A contiguous copy of `x` with `dim` moved to the front. */
function toFront(x: Tensor, d: number): Tensor {
  const order = [d, ...x.shape.map((_, i) => i).filter((i) => i !== d)];
  const view = x.alias(order.map((i) => x.shape[i]), order.map((i) => x.strides[i]), x.offset);
  const out = k.copy(view);
  view.dispose();
  return out;
}

/** Inverse of toFront: `f` [n, ...rest] back to the original dim order, contiguous. */
function fromFront(f: Tensor, d: number): Tensor {
  const strides = contiguousStrides(f.shape);
  const axis = (i: number) => (i === d ? 0 : i < d ? i + 1 : i);
  const shape = f.shape.map((_, i) => f.shape[axis(i)]);
  const view = f.alias(shape, shape.map((_, i) => strides[axis(i)]), f.offset);
  const out = k.copy(view);
  view.dispose();
  return out;
}

/** A contiguous copy of `x` summed over the group. */
export function allReduceCopy(x: Tensor, group: ProcessGroup): Tensor {
  const out = k.copy(x);
  if (group.size > 1) timed('allReduce', out, () => group.allReduce(out, 'sum'));
  return out;
}

/** This rank's slice of `x` along `dim` (a contiguous copy). */
export function splitAlong(x: Tensor, dim: number, group: ProcessGroup, what = 'split'): Tensor {
  const d = normDim(dim, x.ndim, what);
  const len = sliceSize(x, d, group, what);
  const shape = [...x.shape];
  shape[d] = len;
  const view = x.alias(shape, x.strides, x.offset + group.rank * len * x.strides[d]);
  const out = k.copy(view);
  view.dispose();
  return out;
}

/** Every rank's `x` concatenated along `dim` in rank order. */
export function gatherAlong(x: Tensor, dim: number, group: ProcessGroup, what = 'gather'): Tensor {
  const d = normDim(dim, x.ndim, what);
  if (group.size === 1) return k.copy(x);
  const front = toFront(x, d);
  const all = k.empty([group.size * front.shape[0], ...front.shape.slice(1)], x.dtype, undefined, false, x.device);
  timed('allGather', all, () => group.allGather(all, front));
  front.dispose();
  const out = fromFront(all, d);
  all.dispose();
  return out;
}

/** `x` summed over the group, of which this rank keeps its slice along `dim`. */
export function reduceScatterAlong(x: Tensor, dim: number, group: ProcessGroup, what = 'reduceScatter'): Tensor {
  const d = normDim(dim, x.ndim, what);
  const len = sliceSize(x, d, group, what);
  if (group.size === 1) return k.copy(x);
  const front = toFront(x, d);
  const mine = k.empty([len, ...front.shape.slice(1)], x.dtype, undefined, false, x.device);
  timed('reduceScatter', front, () => group.reduceScatter(mine, front, 'sum'));
  front.dispose();
  const out = fromFront(mine, d);
  mine.dispose();
  return out;
}
