/** Shape ops: views that share storage (view, transpose, permute, narrow, expand) and copies (cat). */
import { deviceOf } from '../tensor/backend.ts';
import { contiguousStrides, fmt, normDim, numel } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record, sumToShape } from './autograd_support.ts';
import * as k from './kernels.ts';
import { narrowGrad } from './narrow_grad.ts';
import { splitViews } from './split_views.ts';
import { viewStrides } from './view_strides.ts';

function resolveShape(x: Tensor, shape: readonly number[], op: string): number[] {
  const out = [...shape];
  const infer = out.indexOf(-1);
  if (out.some((s, i) => !Number.isInteger(s) || (s < 0 && i !== infer)) || out.lastIndexOf(-1) !== infer) {
    throw new Error(`${op}: invalid shape ${fmt(shape)}`);
  }
  if (infer >= 0) {
    const rest = numel(out.filter((_, i) => i !== infer));
    if (rest === 0 || x.numel % rest !== 0) throw new Error(`${op}: cannot view ${fmt(x.shape)} as ${fmt(shape)}`);
    out[infer] = x.numel / rest;
  }
  if (numel(out) !== x.numel) {
    throw new Error(`${op}: shape ${fmt(shape)} has ${numel(out)} elements, the tensor ${fmt(x.shape)} has ${x.numel}`);
  }
  return out;
}

/**
 * Reinterprets a tensor with a new shape (one dim may be -1); shares storage. A strided tensor
 * views when the new dims only split or merge evenly spaced ones (as PyTorch's view: e.g. the
 * [B, T, V] logits with padded rows as [B*T, V]); otherwise it is an error (reshape copies).
 */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  const s = resolveShape(x, shape, 'view');
  const strides = x.isContiguous ? contiguousStrides(s) : viewStrides(x.shape, x.strides, s);
  if (!strides) {
    throw new Error(`view: the tensor ${fmt(x.shape)} is not contiguous (strides ${fmt(x.strides)}) and cannot be viewed as ${fmt(s)} without a copy; use reshape()`);
  }
  const out = x.alias(s, strides, x.offset);
  return record('view', [x], out, () => (g) => [reshapeRaw(g, x.shape)]);
}

/**
 * A view when the layout allows one (a contiguous tensor, or strided dims the new shape splits
 * or merges without crossing a gap, as PyTorch's reshape), otherwise a contiguous copy.
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = resolveShape(x, shape, 'reshape');
  if (x.isContiguous) return view(x, s);
  const strides = viewStrides(x.shape, x.strides, s);
  if (strides) return record('reshape', [x], x.alias(s, strides, x.offset), () => (g) => [reshapeRaw(g, x.shape)]);
  const c = k.copy(x);
  const out = c.alias(s, contiguousStrides(s), 0);
  c.dispose();
  return record('reshape', [x], out, () => (g) => [reshapeRaw(g, x.shape)]);
}

/** Reshape without autograd, for backward functions: a view when the layout allows one. */
function reshapeRaw(g: Tensor, shape: readonly number[]): Tensor {
  const strides = viewStrides(g.shape, g.strides, shape);
  if (strides) return g.alias([...shape], strides, g.offset);
  const c = k.asContiguous(g);
  const out = c.alias([...shape], contiguousStrides(shape), c.offset);
  if (c !== g) c.dispose();
  return out;
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  const s = normDim(startDim, x.ndim, 'flatten');
  const e = normDim(endDim, x.ndim, 'flatten');
  return reshape(x, [...x.shape.slice(0, s), numel(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normDim(dim, x.ndim + 1, 'unsqueeze');
  return reshape(x, [...x.shape.slice(0, d), 1, ...x.shape.slice(d)]);
}

export function squeeze(x: Tensor, dim: number): Tensor {
  const d = normDim(dim, x.ndim, 'squeeze');
  if (x.shape[d] !== 1) throw new Error(`squeeze: dim ${dim} of ${fmt(x.shape)} has size ${x.shape[d]}, not 1`);
  return reshape(x, [...x.shape.slice(0, d), ...x.shape.slice(d + 1)]);
}

/** Reorders dims; a view. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((v) => normDim(v, x.ndim, 'permute'));
  if (d.length !== x.ndim || new Set(d).size !== d.length) {
    throw new Error(`permute: ${fmt(dims)} is not a permutation of the ${x.ndim} dims of ${fmt(x.shape)}`);
  }
  const out = x.alias(d.map((i) => x.shape[i]), d.map((i) => x.strides[i]), x.offset);
  const inverse = new Array<number>(d.length);
  d.forEach((v, i) => {
    inverse[v] = i;
  });
  return record('permute', [x], out, () => (g) => [g.alias(inverse.map((i) => g.shape[i]), inverse.map((i) => g.strides[i]), g.offset)]);
}

export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  const a = normDim(d0, x.ndim, 'transpose');
  const b = normDim(d1, x.ndim, 'transpose');
  const dims = x.shape.map((_, i) => i);
  dims[a] = b;
  dims[b] = a;
  return permute(x, dims);
}

/** Elements [start, start + length) of `dim`; a view. */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normDim(dim, x.ndim, 'narrow');
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > x.shape[d]) {
    throw new Error(`narrow: [${start}, ${start + length}) is outside dim ${dim} of size ${x.shape[d]} in ${fmt(x.shape)}`);
  }
  const shape = [...x.shape];
  shape[d] = length;
  const out = x.alias(shape, x.strides, x.offset + start * x.strides[d]);
  const xShape = x.shape;
  return record('narrow', [x], out, () => (g) => [narrowGrad(g, xShape, d, start)]);
}

/** Broadcasts size-1 dims (and new leading dims) to `shape`; a view with stride 0. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.ndim;
  if (lead < 0) throw new Error(`expand: cannot expand ${fmt(x.shape)} to fewer dims ${fmt(shape)}`);
  const strides = shape.map((s, i) => {
    if (i < lead) return 0;
    const own = x.shape[i - lead];
    if (own === s) return x.strides[i - lead];
    if (own === 1) return 0;
    throw new Error(`expand: cannot expand ${fmt(x.shape)} to ${fmt(shape)}`);
  });
  const out = x.alias([...shape], strides, x.offset);
  return record('expand', [x], out, () => (g) => [sumToShape(g, x.shape)]);
}

/** Joins tensors along `dim` (a new contiguous tensor). */
export function cat(xs: readonly Tensor[], dim = 0): Tensor {
  if (xs.length === 0) throw new Error('cat: needs at least one tensor');
  const first = xs[0];
  const d = normDim(dim, first.ndim, 'cat');
  for (const x of xs) {
    if (x.ndim !== first.ndim || x.shape.some((s, i) => i !== d && s !== first.shape[i]) || x.dtype !== first.dtype) {
      throw new Error(`cat: ${fmt(x.shape)} ${x.dtype} does not match ${fmt(first.shape)} ${first.dtype} outside dim ${dim}`);
    }
  }
  const shape = [...first.shape];
  shape[d] = xs.reduce((n, x) => n + x.shape[d], 0);
  const out = k.empty(shape, first.dtype, undefined, false, deviceOf('cat', ...xs));
  const starts: number[] = [];
  let at = 0;
  for (const x of xs) {
    starts.push(at);
    const region = out.alias(x.shape, out.strides, at * out.strides[d]);
    k.copyInto(x, region);
    region.dispose();
    at += x.shape[d];
  }
  return record('cat', [...xs], out, () => (g) =>
    xs.map((x, i) => (x.requiresGrad ? g.alias(x.shape, g.strides, g.offset + starts[i] * g.strides[d]) : null)),
  );
}

/** Splits along `dim` into pieces of `size` (the last may be smaller) or of the given sizes; views. */
export function split(x: Tensor, sizes: number | readonly number[], dim = 0): Tensor[] {
  const d = normDim(dim, x.ndim, 'split');
  const n = x.shape[d];
  let list: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes <= 0) throw new Error(`split: size must be a positive integer, got ${sizes}`);
    list = [];
    for (let at = 0; at < n; at += sizes) list.push(Math.min(sizes, n - at));
  } else {
    list = [...sizes];
    if (list.reduce((a, b) => a + b, 0) !== n) throw new Error(`split: sizes ${fmt(list)} do not add up to ${n} (dim ${dim} of ${fmt(x.shape)})`);
  }
  return splitViews(x, d, list);
}
