/**
 * 2-D pooling with PyTorch's semantics: maxPool2d (padding reads as -inf, floor output size) and
 * adaptiveAvgPool2d (bins [floor(i*H/OH), ceil((i+1)*H/OH))). Channels-last inputs give
 * channels-last outputs; other layouts give NCHW-contiguous ones.
 */

import { kernelsOn } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { fmt, isDense } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import { intArg } from './int_args.ts';
import * as k from './kernels.ts';
import { checkImage, emptyActivation, pair, prefersChannelsLast } from './nchw.ts';

export interface MaxPool2dOptions {
  /** Default: the kernel size. */
  stride?: number | readonly [number, number];
  /** -inf added on each side; at most half the kernel (default 0). */
  padding?: number | readonly [number, number];
}

/** The gradient as the kernels read it: any strides, but not broadcast (stride-0) ones. */
function readable(g: Tensor, owned: Tensor[]): Tensor {
  if (isDense(g.shape, g.strides)) return g;
  const c = k.copy(g);
  owned.push(c);
  return c;
}

/**
 * Max over kernel windows of x [N, C, H, W].
 * @example
 * const y = maxPool2d(x, 3, { stride: 2, padding: 1 }); // ResNet's stem
 */
export function maxPool2d(x: Tensor, kernel: number | readonly [number, number], opts: MaxPool2dOptions = {}): Tensor {
  checkImage(x, 'maxPool2d');
  const dev = x.device;
  const [kh, kw] = pair(kernel, 'maxPool2d', 'kernel', 1);
  const [sh, sw] = pair(opts.stride ?? [kh, kw], 'maxPool2d', 'stride', 1);
  const [ph, pw] = pair(opts.padding ?? 0, 'maxPool2d', 'padding', 0);
  if (2 * ph > kh || 2 * pw > kw) {
    throw new Error(`maxPool2d: padding [${ph}, ${pw}] should be at most half of the kernel [${kh}, ${kw}]`);
  }
  const [N, C, H, W] = x.shape;
  if (H + 2 * ph < kh || W + 2 * pw < kw) {
    throw new Error(`maxPool2d: kernel [${kh}, ${kw}] is larger than the padded input ${H + 2 * ph}x${W + 2 * pw} of x ${fmt(x.shape)}`);
  }
  const OH = Math.floor((H + 2 * ph - kh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - kw) / sw) + 1;
  const owned: Tensor[] = [];
  const xs = readable(x, owned);
  const last = prefersChannelsLast(xs);
  const out = emptyActivation([N, C, OH, OW], x.dtype, last, dev);
  const idx = emptyActivation([N, C, OH, OW], 'i32', last, dev);
  owned.push(idx);
  kernelsOn(dev).maxPool2dForward(
    dtypeCode(x.dtype), xs.id, xs.offset, intArg(0, xs.strides), out.id, out.offset, intArg(1, out.strides), idx.id, idx.offset,
    N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw,
  );
  const result = record('maxPool2d', [x], out, (node) => {
    const si = node.save(idx);
    return (g) => {
      const own: Tensor[] = [];
      const gs = readable(g, own);
      const gx = emptyActivation(x.shape, x.dtype, last, dev);
      kernelsOn(dev).maxPool2dBackward(
        dtypeCode(x.dtype), gs.id, gs.offset, intArg(0, gs.strides), si.id, si.offset, intArg(1, si.strides),
        // The window geometry last: the CUDA kernel gathers over the windows covering each input.
        gx.id, gx.offset, intArg(2, gx.strides), N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw,
      );
      for (const t of own) t.dispose();
      return [gx];
    };
  });
  for (const t of owned) t.dispose();
  return result;
}

/**
 * Averages x [N, C, H, W] over an output grid of `outputSize` ([oh, ow] or one number for both).
 * @example
 * const pooled = adaptiveAvgPool2d(x, 1); // global average pool: [N, C, 1, 1]
 */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | readonly [number, number]): Tensor {
  checkImage(x, 'adaptiveAvgPool2d');
  const dev = x.device;
  const [OH, OW] = pair(outputSize, 'adaptiveAvgPool2d', 'outputSize', 1);
  const [N, C, H, W] = x.shape;
  if (H === 0 || W === 0) throw new Error(`adaptiveAvgPool2d: x ${fmt(x.shape)} has an empty plane`);
  const owned: Tensor[] = [];
  const xs = readable(x, owned);
  const last = prefersChannelsLast(xs);
  const out = emptyActivation([N, C, OH, OW], x.dtype, last, dev);
  kernelsOn(dev).adaptiveAvgPool2dForward(dtypeCode(x.dtype), xs.id, xs.offset, intArg(0, xs.strides), out.id, out.offset, intArg(1, out.strides), N, C, H, W, OH, OW);
  for (const t of owned) t.dispose();
  return record('adaptiveAvgPool2d', [x], out, () => (g) => {
    const own: Tensor[] = [];
    const gs = readable(g, own);
    const gx = emptyActivation(x.shape, x.dtype, last, dev);
    kernelsOn(dev).adaptiveAvgPool2dBackward(dtypeCode(x.dtype), gs.id, gs.offset, intArg(0, gs.strides), gx.id, gx.offset, intArg(1, gx.strides), N, C, H, W, OH, OW);
    for (const t of own) t.dispose();
    return [gx];
  });
}
