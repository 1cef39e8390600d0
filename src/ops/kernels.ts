/**
 * Thin calls of the native kernels that produce new tensors, with no autograd. The op files
 * build differentiable ops from these; op codes mirror native/cpu/*.cc.
 */
import { native } from '../native.ts';
import { deviceOf, kernelsOn } from '../tensor/backend.ts';
import { flushDeviceChecks } from '../tensor/device_checks.ts';
import { type DType, dtypeCode, itemSize } from '../tensor/dtype.ts';
import { broadcastShapes, broadcastStrides, fmt, isDense, numel, type Shape, sameShape } from '../tensor/shape.ts';
import type { Device, MemoryTag } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import { intArg } from './int_args.ts';

export const Binary = {
  add: 0, sub: 1, mul: 2, div: 3, max: 4, min: 5, pow: 6,
  reluBackward: 7, geluBackward: 8, tanhBackward: 9, sigmoidBackward: 10,
} as const;

export const Unary = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, relu: 5, gelu: 6, tanh: 7, sigmoid: 8, abs: 9,
  addScalar: 10, mulScalar: 11, powScalar: 12, reciprocal: 13, square: 14,
} as const;

export const Reduce = { sum: 0, max: 1 } as const;
export const Random = { uniform: 0, normal: 1, dropoutMask: 2 } as const;

/** The stride list [1] (a flat run), as the bindings read it. */
const UNIT = new Float64Array([1]);

export function empty(shape: Shape, dtype: DType, tag?: MemoryTag, zero = false, device: Device = 'cpu'): Tensor {
  return Tensor.emptyOf(shape, dtype, tag, zero, device);
}

/** Fills a contiguous tensor (the kernel writes `numel` elements from the offset). */
export function fill(t: Tensor, value: number): Tensor {
  if (!t.isContiguous) throw new Error(`fill: needs a contiguous tensor, got ${fmt(t.shape)} with strides ${fmt(t.strides)}`);
  kernelsOn(t.device).fill(dtypeCode(t.dtype), t.id, t.offset, t.numel, value);
  return t;
}

/**
 * Copies `src` into `dst` (same shape), converting dtype and layout as needed. The loop runs in
 * the destination's memory order with dims that are contiguous in both merged, so copies
 * between equal layouts (two channels-last tensors) are one flat pass.
 */
export function copyInto(src: Tensor, dst: Tensor): void {
  if (src.device !== dst.device) {
    copyAcross(src, dst);
    return;
  }
  const n = dst.numel;
  // Both contiguous: the merge below always ends in one flat run; skip building it.
  if (n > 1 && dst.isContiguous && src.isContiguous && sameShape(src.shape, dst.shape)) {
    kernelsOn(dst.device).copyStrided(dtypeCode(src.dtype), src.id, src.offset, UNIT, dtypeCode(dst.dtype), dst.id, dst.offset, UNIT, intArg(0, [n]));
    return;
  }
  // The non-1 dims by destination stride, then source stride, largest first: an insertion sort,
  // stable as Array.prototype.sort is, so the same order (no closures: channels-last copies come here).
  const dims: number[] = [];
  for (let i = 0; i < dst.shape.length; i++) {
    if (dst.shape[i] === 1) continue;
    let j = dims.length;
    while (j > 0 && (dst.strides[i] - dst.strides[dims[j - 1]] || src.strides[i] - src.strides[dims[j - 1]]) > 0) {
      dims[j] = dims[j - 1];
      j--;
    }
    dims[j] = i;
  }
  const shape: number[] = [];
  const ss: number[] = [];
  const ds: number[] = [];
  for (const i of dims) {
    const k = shape.length - 1;
    const n = dst.shape[i];
    if (k >= 0 && ds[k] === dst.strides[i] * n && ss[k] === src.strides[i] * n) {
      shape[k] *= n;
      ds[k] = dst.strides[i];
      ss[k] = src.strides[i];
    } else {
      shape.push(n);
      ss.push(src.strides[i]);
      ds.push(dst.strides[i]);
    }
  }
  kernelsOn(dst.device).copyStrided(dtypeCode(src.dtype), src.id, src.offset, intArg(0, ss), dtypeCode(dst.dtype), dst.id, dst.offset, intArg(1, ds), intArg(2, shape));
}

/**
 * Between devices only bytes move: the source is first made contiguous in the destination's
 * dtype on its own device, then copied whole, then laid out on the destination if needed.
 */
function copyAcross(src: Tensor, dst: Tensor): void {
  const packed = src.isContiguous && src.dtype === dst.dtype ? src : copy(src, dst.dtype);
  const flat = dst.isContiguous ? dst : empty(dst.shape, dst.dtype, undefined, false, dst.device);
  const item = itemSize(dst.dtype);
  // A copy to the host synchronizes: the deferred device-side index checks are read too.
  if (dst.device === 'cpu') flushDeviceChecks();
  native.copyBytes(packed.id, packed.offset * item, flat.id, flat.offset * item, dst.numel * item);
  if (packed !== src) packed.dispose();
  if (flat !== dst) {
    copyInto(flat, dst);
    flat.dispose();
  }
}

/** A contiguous copy of `src` on `device` (same dtype). */
export function toDevice(src: Tensor, device: Device): Tensor {
  const out = empty(src.shape, src.dtype, undefined, false, device);
  copyInto(src, out);
  return out;
}

/** A new contiguous copy of `src`, converted to `dtype`. */
export function copy(src: Tensor, dtype: DType = src.dtype): Tensor {
  const out = empty(src.shape, dtype, undefined, false, src.device);
  copyInto(src, out);
  return out;
}

/** `src` itself when already contiguous (no copy), else a contiguous copy. Caller checks identity. */
export function asContiguous(src: Tensor): Tensor {
  return src.isContiguous ? src : copy(src);
}

/** A new tensor laid out like `x` when x is dense (channels-last stays channels-last), else contiguous. */
export function emptyLike(x: Tensor, dtype: DType = x.dtype): Tensor {
  if (x.isContiguous || !isDense(x.shape, x.strides)) return empty(x.shape, dtype, undefined, false, x.device);
  return Tensor.emptyStrided(x.shape, x.strides, { dtype, device: x.device });
}

/** Both dense with the same shape and element order (strides of size-1 dims do not matter). */
export function sameDenseLayout(a: Tensor, b: Tensor): boolean {
  return (
    sameShape(a.shape, b.shape) && a.shape.every((n, i) => n === 1 || a.strides[i] === b.strides[i]) && isDense(a.shape, a.strides)
  );
}

/** A copy of `src` (same shape) in `like`'s dtype and dense layout. */
export function copyLike(src: Tensor, like: Tensor): Tensor {
  const out = emptyLike(like);
  copyInto(src, out);
  return out;
}

export function binary(op: number, a: Tensor, b: Tensor, name: string): Tensor {
  if (a.dtype !== b.dtype) {
    throw new Error(`${name}: dtypes differ (${a.dtype} ${fmt(a.shape)} and ${b.dtype} ${fmt(b.shape)}); cast one with .to()`);
  }
  const dev = deviceOf(name, a, b);
  const kern = kernelsOn(dev);
  // Same dense layout (e.g. two channels-last tensors): one flat pass, the layout is kept.
  if (sameDenseLayout(a, b)) {
    const out = emptyLike(a);
    const n = a.numel;
    kern.binaryFlat(op, dtypeCode(a.dtype), a.id, a.offset, b.id, b.offset, out.id, 0, n);
    return out;
  }
  const shape = broadcastShapes(a.shape, b.shape, name);
  const out = empty(shape, a.dtype, undefined, false, dev);
  kern.binary(
    op, dtypeCode(a.dtype),
    a.id, a.offset, intArg(0, broadcastStrides(a.shape, a.strides, shape)),
    b.id, b.offset, intArg(1, broadcastStrides(b.shape, b.strides, shape)),
    out.id, 0, intArg(2, shape),
  );
  return out;
}

export function unary(op: number, x: Tensor, scalar = 0): Tensor {
  const src = denseOrCopy(x);
  const out = emptyLike(src);
  kernelsOn(x.device).unary(op, dtypeCode(x.dtype), src.id, src.offset, out.id, 0, out.numel, scalar);
  if (src !== x) src.dispose();
  return out;
}

/** `unary(Unary.mulScalar, x, v)` with v the f64 in `s` (deviceScalar's rules, errors naming `op`), read where the kernel runs. */
export function mulDeviceScalar(x: Tensor, s: Tensor, op: string): Tensor {
  const at = deviceScalar(s, x, op);
  const src = denseOrCopy(x);
  const out = emptyLike(src);
  kernelsOn(x.device).unary(Unary.mulScalar, dtypeCode(x.dtype), src.id, src.offset, out.id, 0, out.numel, 0, s.id, at);
  if (src !== x) src.dispose();
  return out;
}

/** x itself when its elements are one dense run (any layout), else a contiguous copy (the caller disposes it). */
function denseOrCopy(x: Tensor): Tensor {
  return x.isContiguous || isDense(x.shape, x.strides) ? x : copy(x);
}

/** The element offset of `s`, a one-element f64 tensor on x's device (a scalar a kernel reads there); else throws naming `op`. */
export function deviceScalar(s: Tensor, x: Tensor, op: string): number {
  if (s.dtype !== 'f64' || s.numel !== 1 || s.device !== x.device) {
    throw new Error(`${op}: a device scalar must be a one-element f64 tensor on ${x.device}, got ${s.dtype} ${fmt(s.shape)} on ${s.device}`);
  }
  return s.offset;
}

/** `acc += alpha * x` in place; `acc` is dense (any layout) and of x's shape. */
export function axpyInto(acc: Tensor, x: Tensor, alpha = 1): void {
  if (!isDense(acc.shape, acc.strides)) throw new Error(`axpy: the accumulator ${fmt(acc.shape)} must be dense, its strides are ${fmt(acc.strides)}`);
  deviceOf('axpy', acc, x);
  // One flat pass when both are laid out alike (channels-last gradients into a channels-last grad).
  const src = x.dtype === acc.dtype && sameDenseLayout(x, acc) ? x : copyLike(x, acc);
  kernelsOn(acc.device).axpy(dtypeCode(acc.dtype), src.id, src.offset, acc.id, acc.offset, acc.numel, alpha);
  if (src !== x) src.dispose();
}

/**
 * Reduces the dims in `dims` (sorted, unique) by sum (times `scale`) or max. Runs of adjacent
 * dims are one [outer, r, inner] pass each, so no transposes are needed.
 */
export function reduce(op: number, x: Tensor, dims: number[], scale = 1): Tensor {
  const runs: [number, number][] = [];
  for (const d of dims) {
    const last = runs[runs.length - 1];
    if (last && last[1] === d - 1) last[1] = d;
    else runs.push([d, d]);
  }
  let cur = asContiguous(x);
  let shape = [...x.shape];
  // Right to left, so the dims of earlier runs keep their positions.
  for (let i = runs.length - 1; i >= 0; i--) {
    const [lo, hi] = runs[i];
    const nextShape = [...shape.slice(0, lo), ...shape.slice(hi + 1)];
    const out = empty(nextShape, x.dtype, undefined, false, x.device);
    kernelsOn(x.device).reduce(
      op, dtypeCode(x.dtype), cur.id, cur.offset, out.id, 0,
      numel(shape.slice(0, lo)), numel(shape.slice(lo, hi + 1)), numel(shape.slice(hi + 1)),
      i === runs.length - 1 ? scale : 1,
    );
    if (cur !== x) cur.dispose();
    cur = out;
    shape = nextShape;
  }
  return cur === x ? copy(x) : cur;
}

/** `base` (inside a CUDA graph, graph_rng.ts): the device's generator base, which `offset` is relative to. */
export function random(kind: number, t: Tensor, seed: number, offset: number, start: number, a: number, b: number, base: Tensor | null = null): Tensor {
  if (t.device !== 'cpu' && kind !== Random.normal) {
    // The device runs the same generator with the CPU's arithmetic: the CPU's values exactly.
    if (base) kernelsOn(t.device).random(kind, dtypeCode(t.dtype), t.id, t.offset, t.numel, seed, offset, start, a, b, base.id, base.offset);
    else kernelsOn(t.device).random(kind, dtypeCode(t.dtype), t.id, t.offset, t.numel, seed, offset, start, a, b);
    return t;
  }
  if (base) throw new Error(`random: a generator base is for uniform samples and dropout masks on a CUDA device, got kind ${kind} on ${t.device}`);
  if (t.device !== 'cpu') {
    // Normal samples are drawn on the CPU and copied: the device's float log/cos/sin differ from
    // the CPU's in the last bit, and every layout must start from the same weights.
    const host = random(kind, empty(t.shape, t.dtype), seed, offset, start, a, b);
    copyInto(host, t);
    host.dispose();
    return t;
  }
  native.random(kind, dtypeCode(t.dtype), t.id, t.offset, t.numel, seed, offset, start, a, b);
  return t;
}

