/** Differentiable sum and mean over dims. */
import { contiguousStrides, normDim } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';

function reducedDims(x: Tensor, dims: number | number[] | undefined, op: string): number[] {
  if (dims === undefined) return x.shape.map((_, i) => i);
  const list = (Array.isArray(dims) ? dims : [dims]).map((d) => normDim(d, x.ndim, op));
  return [...new Set(list)].sort((a, b) => a - b);
}

/** x's shape with the reduced dims set to 1. */
function keptShape(x: Tensor, dims: number[]): number[] {
  return x.shape.map((s, i) => (dims.includes(i) ? 1 : s));
}

/** Copies g (the reduced values, contiguous) back out to x's shape, times `scale`. */
export function broadcastBack(g: Tensor, shape: readonly number[], dims: number[], scale: number): Tensor {
  const src = k.asContiguous(g);
  const kept = shape.map((s, i) => (dims.includes(i) ? 1 : s));
  const strides = contiguousStrides(kept).map((st, i) => (dims.includes(i) ? 0 : st));
  const view = src.alias(shape, strides, src.offset);
  let out = k.copy(view);
  view.dispose();
  if (src !== g) src.dispose();
  if (scale !== 1) {
    const scaled = k.unary(k.Unary.mulScalar, out, scale);
    out.dispose();
    out = scaled;
  }
  return out;
}

function reduceOp(name: string, x: Tensor, dims: number | number[] | undefined, keepDim: boolean, mean: boolean): Tensor {
  const ds = reducedDims(x, dims, name);
  const count = ds.reduce((n, d) => n * x.shape[d], 1);
  const scale = mean ? 1 / Math.max(count, 1) : 1;
  let out = k.reduce(k.Reduce.sum, x, ds, scale);
  if (keepDim) {
    const shape = keptShape(x, ds);
    const shaped = out.alias(shape, contiguousStrides(shape), 0);
    out.dispose();
    out = shaped;
  }
  return record(name, [x], out, () => (g) => [broadcastBack(g, x.shape, ds, scale)]);
}

/**
 * Sum over `dims` (all dims when omitted).
 * @example
 * const total = sum(x);            // scalar
 * const perRow = sum(x, 1, true);  // [n, 1]
 */
export function sum(x: Tensor, dims?: number | number[], keepDim = false): Tensor {
  return reduceOp('sum', x, dims, keepDim, false);
}

/** Mean over `dims` (all dims when omitted). */
export function mean(x: Tensor, dims?: number | number[], keepDim = false): Tensor {
  return reduceOp('mean', x, dims, keepDim, true);
}
