/** Small helpers shared by the op files and the autograd engine. */
import { isGradEnabled } from '../autograd/grad_mode.ts';
import { noteInputs } from '../autograd/leaf_tracker.ts';
import { type BackwardFn, Node } from '../autograd/node.ts';
import type { DType } from '../tensor/dtype.ts';
import { contiguousStrides } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import * as k from './kernels.ts';

/** True when the op must be recorded: grad mode is on and some input requires grad. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && inputs.some((t) => t?.requiresGrad);
}

/**
 * Records `out` as produced by op `name` from `inputs`. `build` receives the node (to save
 * tensors) and returns the backward function.
 */
export function record(
  name: string,
  inputs: (Tensor | null | undefined)[],
  out: Tensor,
  build: (node: Node) => BackwardFn,
): Tensor {
  noteInputs(inputs);
  if (!isGradEnabled()) return out;
  // needsGrad without the spread and closure (every recorded op comes here).
  let any = false;
  let holes = false;
  for (const t of inputs) {
    if (t == null) holes = true;
    else if (t.requiresGrad) any = true;
  }
  if (!any) return out;
  const node = new Node(name, (holes ? inputs.map((t) => t ?? PLACEHOLDER) : inputs) as Tensor[]);
  node.backwardFn = build(node);
  node.retain();
  out.gradFn = node;
  out.requiresGrad = true;
  return out;
}

/** Stands in for absent optional inputs (a missing bias): never requires grad. */
const PLACEHOLDER = { requiresGrad: false, gradFn: null, shape: [], dtype: 'f32' } as unknown as Tensor;

export function cloneTensor(t: Tensor, dtype: DType): Tensor {
  return k.copy(t, dtype);
}

/** A copy in the same dense layout (a channels-last gradient stays channels-last). */
export function cloneLayout(t: Tensor): Tensor {
  const out = k.emptyLike(t);
  k.copyInto(t, out);
  return out;
}

export function onesLike(t: Tensor): Tensor {
  return k.fill(k.empty(t.shape, t.dtype, undefined, false, t.device), 1);
}

export function addTensors(a: Tensor, b: Tensor): Tensor {
  return k.binary(k.Binary.add, a, b, 'add');
}

export function accumulateInto(acc: Tensor, g: Tensor): void {
  k.axpyInto(acc, g, 1);
}

/** Sums a broadcast gradient back down to `shape`. Returns `g` itself when nothing to do. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  if (dims.length === 0) return g;
  const r = k.reduce(k.Reduce.sum, g, dims);
  if (r.ndim === shape.length) return r;
  // Reduced size-1 dims come back as size 1.
  const v = r.alias([...shape], contiguousStrides(shape), 0);
  r.dispose();
  return v;
}
