/**
 * Layout helpers for 4-D activations, logically [N, C, H, W]: either NCHW-contiguous or
 * channels-last (NHWC memory, strides [H*W*C, 1, W*C, C]). Image ops keep the layout they get.
 */
import type { DType } from '../tensor/dtype.ts';
import { fmt, type Shape } from '../tensor/shape.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import * as k from './kernels.ts';
import { checkFloatArg } from './nn_util.ts';

export function channelsLastStrides(shape: Shape): number[] {
  const [, C, H, W] = shape;
  return [H * W * C, 1, W * C, C];
}

/** True when `strides` lay `shape` out channels-last (size-1 dims ignored). Allocates nothing: runs several times per image op. */
export function isChannelsLast(shape: Shape, strides: readonly number[]): boolean {
  if (shape.length !== 4) return false;
  const [N, C, H, W] = shape;
  return (N === 1 || strides[0] === H * W * C) && (C === 1 || strides[1] === 1) && (H === 1 || strides[2] === W * C) && (W === 1 || strides[3] === C);
}

/** Channels-last and not also NCHW-contiguous (which happens when C or H*W is 1). */
export function prefersChannelsLast(x: Tensor): boolean {
  return !x.isContiguous && isChannelsLast(x.shape, x.strides);
}

/** An uninitialized activation, channels-last or NCHW-contiguous, on `device`. */
export function emptyActivation(shape: Shape, dtype: DType, channelsLast: boolean, device: Device = 'cpu'): Tensor {
  if (!channelsLast) return k.empty(shape, dtype, undefined, false, device);
  return Tensor.emptyStrided(shape, channelsLastStrides(shape), { dtype, device });
}

/** True when a and b address their elements in the same order (size-1 dims ignored). */
export function sameLayout(a: Tensor, b: Tensor): boolean {
  const as = a.shape;
  const bs = b.shape;
  if (as.length !== bs.length) return false;
  for (let i = 0; i < as.length; i++) if (as[i] !== bs[i] || (as[i] !== 1 && a.strides[i] !== b.strides[i])) return false;
  return true;
}

/** `g` itself when it is laid out like `like`, else a copy of `g` in `like`'s layout. Caller checks identity. */
export function asLayoutOf(g: Tensor, like: Tensor): Tensor {
  if (sameLayout(g, like)) return g;
  const out = k.emptyLike(like, g.dtype);
  k.copyInto(g, out);
  return out;
}

function intAtLeast(s: unknown, min: number): boolean {
  return Number.isInteger(s) && (s as number) >= min;
}

/** A [h, w] pair from a number or a pair, checked to be integers >= min. */
export function pair(v: number | readonly number[], op: string, what: string, min: number): [number, number] {
  if (typeof v === 'number' ? intAtLeast(v, min) : v !== null && typeof v === 'object' && v.length === 2 && intAtLeast(v[0], min) && intAtLeast(v[1], min)) {
    return typeof v === 'number' ? [v, v] : [v[0], v[1]];
  }
  throw new Error(`${op}: ${what} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
}

/** Checks a 4-D floating-point activation. */
export function checkImage(x: Tensor, op: string, name = 'x'): void {
  checkFloatArg(x, op, name);
  if (x.ndim !== 4) throw new Error(`${op}: ${name} must be [N, C, H, W], got ${fmt(x.shape)}`);
}
