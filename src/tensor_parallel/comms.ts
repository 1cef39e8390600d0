/**
 * The raw collectives tensor parallelism uses, along a tensor dim: all-reduce (into a copy, or
 * in place where nothing else reads the tensor), split (this rank's slice), all-gather and
 * reduce-scatter. The group's collectives work on flat memory in rank order: along a dim other
 * than the first, ranks' blocks are contiguous only when the leading dims have size 1 (batch 1
 * along the sequence); otherwise one copy interleaves (gather) or groups (reduce-scatter) them.
 * No autograd here: mappings.ts pairs these into differentiable ops.
 */
import { performance } from 'node:perf_hooks';
import type { ProcessGroup } from '../dist/process_group.ts';
import * as k from '../ops/kernels.ts';
import { itemSize } from '../tensor/dtype.ts';
import { contiguousStrides, fmt, isDense, normDim } from '../tensor/shape.ts';
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

/** A contiguous copy of `x` summed over the group. */
export function allReduceCopy(x: Tensor, group: ProcessGroup): Tensor {
  const out = k.copy(x);
  if (group.size > 1) timed('allReduce', out, () => group.allReduce(out, 'sum'));
  return out;
}

/** `x` summed over the group in place (a dense `x`; else into a copy). Returns what holds the sum: `x`, or the copy. */
export function allReduceInPlace(x: Tensor, group: ProcessGroup): Tensor {
  if (!isDense(x.shape, x.strides)) return allReduceCopy(x, group);
  if (group.size > 1) timed('allReduce', x, () => group.allReduce(x, 'sum'));
  return x;
}

/**
 * `x` summed over the group: in place when this handle is the only one on its memory (a gradient
 * the engine handed over that nobody else holds: no alias of the caller's seed, of another pending
 * gradient or of a saved tensor), else into a copy.
 */
export function allReduceOwned(x: Tensor, group: ProcessGroup): Tensor {
  return x.storage.holders === 1 && !x.kept ? allReduceInPlace(x, group) : allReduceCopy(x, group);
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

/**
 * Every rank's `x` concatenated along `dim` in rank order. The ranks' contiguous blocks arrive
 * stacked ([tp, ...x.shape]); that is already the result when the dims before `dim` have size 1
 * (batch 1 along the sequence), else one copy interleaves them.
 */
export function gatherAlong(x: Tensor, dim: number, group: ProcessGroup, what = 'gather'): Tensor {
  const d = normDim(dim, x.ndim, what);
  if (group.size === 1) return k.copy(x);
  const src = k.asContiguous(x);
  const all = k.empty([group.size, ...x.shape], x.dtype, undefined, false, x.device);
  timed('allGather', all, () => group.allGather(all, src));
  if (src !== x) src.dispose();
  const shape = [...x.shape];
  shape[d] *= group.size;
  const out = outerSize(x, d) === 1 ? all.alias(shape, contiguousStrides(shape), all.offset) : interleave(all, d, shape);
  all.dispose();
  return out;
}

/** `x` summed over the group, of which this rank keeps its slice along `dim`. */
export function reduceScatterAlong(x: Tensor, dim: number, group: ProcessGroup, what = 'reduceScatter'): Tensor {
  const d = normDim(dim, x.ndim, what);
  const len = sliceSize(x, d, group, what);
  if (group.size === 1) return k.copy(x);
  // x as [tp, ...] rank blocks: free when they are already contiguous blocks (batch 1), else one copy.
  const blocks = x.alias([group.size, ...x.shape.slice(0, d), len, ...x.shape.slice(d + 1)], [len * x.strides[d], ...x.strides], x.offset);
  const inp = k.asContiguous(blocks);
  const shape = [...x.shape];
  shape[d] = len;
  const mine = k.empty(shape, x.dtype, undefined, false, x.device);
  timed('reduceScatter', inp, () => group.reduceScatter(mine, inp, 'sum'));
  if (inp !== blocks) inp.dispose();
  blocks.dispose();
  return mine;
}

/** Elements before `dim` in each index of it: the product of the leading sizes. */
function outerSize(x: Tensor, d: number): number {
  return x.shape.slice(0, d).reduce((a, b) => a * b, 1);
}

/** `all` [tp, ...s] (s[d] = n) as the contiguous [...s with tp·n at d]: rank r's block at [r·n, (r+1)·n). */
function interleave(all: Tensor, d: number, shape: number[]): Tensor {
  const st = all.strides;
  const view = all.alias([...all.shape.slice(1, d + 1), all.shape[0], ...all.shape.slice(d + 1)], [...st.slice(1, d + 1), st[0], ...st.slice(d + 1)], all.offset);
  const flat = k.copy(view);
  view.dispose();
  const out = flat.alias(shape, contiguousStrides(shape), flat.offset);
  flat.dispose();
  return out;
}
