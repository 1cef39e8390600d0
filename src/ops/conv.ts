/**
 * 2-D convolution with PyTorch's stride, padding, dilation and groups. CPU: oneDNN (f32, bf16) or native loops (f64); f16 is
 * computed in f32 on copies (the CPU kernels have no f16 path). CUDA: cuDNN (f32 without TF32,
 * bf16/f16 on tensor cores) or direct kernels for f64. The output is channels-last: oneDNN's 3x3
 * kernels run about twice as fast on NHWC activations, and cuDNN's tensor-core kernels want NHWC.
 */

import { isGradEnabled } from '../autograd/grad_mode.ts';
import { savedByReference } from '../autograd/node.ts';
import { native } from '../native.ts';
import { deviceOf, kernelsOn, kernelsSay } from '../tensor/backend.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { fmt, isDense } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import { intArg } from './int_args.ts';
import * as k from './kernels.ts';
import { checkImage, emptyActivation, isChannelsLast, pair } from './nchw.ts';
import { statDType } from './nn_util.ts';

export interface Conv2dOptions {
  /** Step of the kernel over H and W (default 1). */
  stride?: number | readonly [number, number];
  /** Zeros added on each side of H and W (default 0). */
  padding?: number | readonly [number, number];
  /** Spacing between kernel taps along H and W (default 1, adjacent taps; DeepLab's atrous conv). */
  dilation?: number | readonly [number, number];
  /**
   * Independent convolutions over channel blocks (default 1): x's C and the weight's O split into
   * `groups` blocks, output block g reading only input block g; weight [O, C / groups, kh, kw].
   * groups = C is a depthwise conv (MobileNet).
   */
  groups?: number;
}

/** Stride, padding, dilation and groups as the bindings take them (dilation and groups last). */
type Geometry = [sh: number, sw: number, ph: number, pw: number, dh: number, dw: number, groups: number];

/** A copy of `t` laid out channels-last, unless it already is. */
function channelsLast(t: Tensor, owned: Tensor[]): Tensor {
  if (isChannelsLast(t.shape, t.strides)) return t;
  const c = emptyActivation(t.shape, t.dtype, true, t.device);
  k.copyInto(t, c);
  owned.push(c);
  return c;
}

/**
 * The input as the kernels read it: any dense layout as is (oneDNN stages an NCHW input into
 * NHWC as fast as a copy here would), anything else copied to channels-last.
 */
function denseInput(x: Tensor, owned: Tensor[]): Tensor {
  return isDense(x.shape, x.strides) ? x : channelsLast(x, owned);
}

/** `t` as the kernels compute it: itself, or for f16 on the CPU (`half`) an f32 copy that `own` collects. */
function computeCopy(t: Tensor, half: boolean, own: Tensor[]): Tensor {
  if (!half) return t;
  const c = k.emptyLike(t, 'f32');
  k.copyInto(t, c);
  own.push(c);
  return c;
}

/** A result rounded back to f16 when the kernels computed it in f32 for an f16 op on the CPU (`half`); the f32 one is disposed. */
function roundedBack(t: Tensor | null, half: boolean): Tensor | null {
  if (!half || !t) return t;
  const h = k.emptyLike(t, 'f16');
  k.copyInto(t, h);
  t.dispose();
  return h;
}

/** A 1x1, stride-1, unpadded, ungrouped conv on channels-last x and gradient (pixel-row matrices). */
function pointwiseAsMatmul(x: Tensor, g: Tensor, kh: number, kw: number, geo: Geometry): boolean {
  const [sh, sw, ph, pw, , , groups] = geo;
  return kh === 1 && kw === 1 && sh === 1 && sw === 1 && ph === 0 && pw === 0 && groups === 1 && x.dtype !== 'f64' && isChannelsLast(x.shape, x.strides) && isChannelsLast(g.shape, g.strides);
}

/**
 * On CUDA, a kh·kw > 1 filter for channels-last activations as cuDNN's NHWC kernels read it,
 * [O, kh, kw, C / groups]: copied once here and kept for backward-data, instead of copied by the
 * native side in both passes. Only when the input gradient will be computed (else nothing is
 * saved), and not for ZeRO-3 parameters (saved by reference: no copy may outlive their release).
 */
function nhwcFilter(w: Tensor, weight: Tensor, xs: Tensor, x: Tensor, cd: string, owned: Tensor[]): Tensor | null {
  const [, , kh, kw] = w.shape;
  if (w.device === 'cpu' || cd === 'f64' || kh * kw === 1 || !isChannelsLast(xs.shape, xs.strides)) return null;
  // A ZeRO-3 parameter is released after forward: a kept copy would hold the full weight until backward.
  if (savedByReference(weight)) return null;
  if (!x.requiresGrad || !isGradEnabled() || !kernelsSay(w.device, 'conv2dFilterNhwc')) return null;
  const f = emptyActivation(w.shape, w.dtype, true, w.device);
  k.copyInto(w, f);
  owned.push(f);
  return f;
}

/** groups as a positive integer dividing both x's channels and the weight's outputs (PyTorch's rules). */
function checkGroups(groups: number, x: Tensor, weight: Tensor): void {
  if (!Number.isInteger(groups) || groups < 1) throw new Error(`conv2d: groups must be a positive integer, got ${JSON.stringify(groups)}`);
  const C = x.shape[1];
  const [O, Cw] = weight.shape;
  if (O % groups !== 0) {
    throw new Error(`conv2d: groups ${groups} must divide the weight's ${O} output channels (weight ${fmt(weight.shape)})`);
  }
  if (Cw * groups !== C) {
    throw new Error(
      `conv2d: x ${fmt(x.shape)} has ${C} channels, weight ${fmt(weight.shape)} with groups ${groups} expects ${Cw * groups} (weight [out, in / groups, kh, kw])`,
    );
  }
  // An addon built before groups/dilation would read the old argument list and ignore them.
  if (native.conv2dGroups !== true) throw new Error('conv2d: the native addon predates conv2d groups/dilation; rebuild it (npm run build)');
}

/**
 * Cross-correlation of x [N, C, H, W] with weight [O, C / groups, kh, kw] (+ bias [O]), PyTorch's
 * conv2d: OH = floor((H + 2·padding - dilation·(kh - 1) - 1) / stride) + 1, likewise OW.
 * Any input layout works; the result is [N, O, OH, OW] laid out channels-last. Weights and
 * bias are f32/bf16/f16/f64 like x (a bf16 conv may take an f32 bias; f16 runs in f32 and rounds the result).
 * @example
 * const y = conv2d(x, w, null, { stride: 2, padding: 1 });
 * const dw = conv2d(x, wDepthwise, null, { padding: 2, dilation: 2, groups: x.shape[1] }); // wDepthwise [C, 1, 3, 3]
 */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null = null, opts: Conv2dOptions = {}): Tensor {
  checkImage(x, 'conv2d');
  checkImage(weight, 'conv2d', 'weight');
  const dev = deviceOf('conv2d', x, weight, bias);
  const kern = kernelsOn(dev);
  const [N, C, H, W] = x.shape;
  const [O, Cw, kh, kw] = weight.shape;
  const groups = opts.groups ?? 1;
  if (groups !== 1) checkGroups(groups, x, weight);
  else if (Cw !== C) throw new Error(`conv2d: x ${fmt(x.shape)} has ${C} channels, weight ${fmt(weight.shape)} expects ${Cw}`);
  if (x.dtype !== weight.dtype) {
    throw new Error(`conv2d: x is ${x.dtype} ${fmt(x.shape)}, weight is ${weight.dtype} ${fmt(weight.shape)}; cast one with .to()`);
  }
  if (x.dtype !== 'f32' && x.dtype !== 'bf16' && x.dtype !== 'f16' && x.dtype !== 'f64') {
    throw new Error(`conv2d: needs f32, bf16, f16 or f64, got ${x.dtype} x ${fmt(x.shape)}`);
  }
  const biasDType = statDType(x.dtype);
  if (bias) {
    if (bias.ndim !== 1 || bias.shape[0] !== O) throw new Error(`conv2d: bias ${fmt(bias.shape)} should be [${O}] for weight ${fmt(weight.shape)}`);
    if (bias.dtype !== x.dtype && bias.dtype !== biasDType) throw new Error(`conv2d: bias is ${bias.dtype}, x is ${x.dtype}`);
  }
  const [sh, sw] = pair(opts.stride ?? 1, 'conv2d', 'stride', 1);
  const [ph, pw] = pair(opts.padding ?? 0, 'conv2d', 'padding', 0);
  const [dh, dw] = pair(opts.dilation ?? 1, 'conv2d', 'dilation', 1);
  if ((dh !== 1 || dw !== 1) && native.conv2dGroups !== true) {
    throw new Error('conv2d: the native addon predates conv2d groups/dilation; rebuild it (npm run build)');
  }
  if (N === 0 || C === 0 || O === 0 || kh === 0 || kw === 0) throw new Error(`conv2d: empty x ${fmt(x.shape)} or weight ${fmt(weight.shape)}`);
  // The extent the kernel spans once its taps are spread by the dilation.
  const ekh = dh * (kh - 1) + 1;
  const ekw = dw * (kw - 1) + 1;
  if (H + 2 * ph < ekh || W + 2 * pw < ekw) {
    const dilated = dh !== 1 || dw !== 1 ? ` (dilation ${dh}x${dw} spans ${ekh}x${ekw})` : '';
    throw new Error(
      `conv2d: kernel ${kh}x${kw} of weight ${fmt(weight.shape)}${dilated} is larger than the padded input ${H + 2 * ph}x${W + 2 * pw} of x ${fmt(x.shape)} (padding ${ph}x${pw})`,
    );
  }
  const OH = Math.floor((H + 2 * ph - ekh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - ekw) / sw) + 1;
  const geo: Geometry = [sh, sw, ph, pw, dh, dw, groups];

  // f16 on the CPU (DeepSpeed's fp16 mode; the kernels have no f16 path) runs in f32 on copies
  // made here and again in backward: autograd keeps the f16 tensors themselves (a ZeRO-3
  // parameter by reference), never f32 copies of the weights, which would double the model.
  // cuDNN takes f16 directly.
  const half = x.dtype === 'f16' && dev === 'cpu';
  const cd = half ? 'f32' : x.dtype;
  const code = dtypeCode(cd);
  const owned: Tensor[] = [];
  const xs = denseInput(computeCopy(x, half, owned), owned);
  const w = k.asContiguous(computeCopy(weight, half, owned));
  if (w !== weight && !owned.includes(w)) owned.push(w);
  const b = bias && (bias.dtype !== biasDType || !bias.isContiguous) ? k.copy(bias, biasDType) : bias;
  if (b && b !== bias) owned.push(b);
  const wn = nhwcFilter(w, weight, xs, x, cd, owned);
  const wf = wn ?? w;
  const y = emptyActivation([N, O, OH, OW], cd, true, dev);
  // Arguments written out, not spread (a spread call costs an iterator per array). The trailing
  // flag says the filter is NHWC; the CPU binding reads up to groups only.
  const nhwc = wn !== null;
  kern.conv2dForward(
    code, xs.id, xs.offset, intArg(0, xs.strides), N, C, H, W, wf.id, wf.offset, O, kh, kw, b ? b.id : 0, b ? b.offset : 0,
    y.id, y.offset, intArg(1, y.strides), sh, sw, ph, pw, dh, dw, groups, nhwc,
  );
  const out = roundedBack(y, half) as Tensor;
  const result = record('conv2d', [x, weight, bias], out, (node) => {
    const needWeights = weight.requiresGrad || !!bias?.requiresGrad;
    const keptX = needWeights ? node.save(half ? x : xs) : null;
    const keptW = x.requiresGrad ? node.save(half ? weight : wf) : null;
    return (g) => {
      const own: Tensor[] = [];
      // A channels-last gradient: staged once here instead of in both calls, and never NCHW
      // together with an NCHW input (oneDNN's NCHW backward kernels are 2-3x slower).
      const gs = computeCopy(channelsLast(g, own), half, own);
      const savedX = keptX && (half ? denseInput(computeCopy(keptX, half, own), own) : keptX);
      let savedW = keptW && computeCopy(keptW, half, own);
      if (savedW && !wn && !savedW.isContiguous) {
        savedW = k.copy(savedW);
        own.push(savedW);
      }
      let gx: Tensor | null = null;
      if (savedW) {
        gx = emptyActivation(x.shape, cd, true, dev);
        kern.conv2dBackwardData(
          code, gs.id, gs.offset, intArg(0, gs.strides), savedW.id, savedW.offset, gx.id, gx.offset, intArg(1, gx.strides),
          N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, nhwc,
        );
      }
      let gw: Tensor | null = null;
      let gb: Tensor | null = null;
      if (savedX && dev === 'cpu' && pointwiseAsMatmul(savedX, gs, kh, kw, geo) && !bias?.requiresGrad) {
        // A 1x1 stride-1 conv's weight gradient is gyᵀ·x over the N·H·W pixel rows of the two
        // channels-last tensors: oneDNN's matmul does it 2-3x faster than its bf16 conv kernel.
        gw = k.empty(weight.shape, cd);
        native.matmul(
          dtypeCode(cd), gs.id, gs.offset, [0, 1, O], savedX.id, savedX.offset, [0, C, 1], 0, 0,
          dtypeCode(cd), gw.id, 0, 1, O, C, N * H * W, false,
        );
      } else if (savedX) {
        gw = k.empty(weight.shape, cd, undefined, false, dev);
        const gbias = bias?.requiresGrad ? k.empty([O], biasDType, undefined, false, dev) : null;
        kern.conv2dBackwardWeights(
          code, savedX.id, savedX.offset, intArg(0, savedX.strides), gs.id, gs.offset, intArg(1, gs.strides),
          gw.id, gw.offset, gbias ? gbias.id : 0, gbias ? gbias.offset : 0,
          N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups,
        );
        if (!weight.requiresGrad) {
          gw.dispose();
          gw = null;
        }
        gb = gbias && bias && gbias.dtype !== bias.dtype ? k.copy(gbias, bias.dtype) : gbias;
        if (gb !== gbias) gbias?.dispose();
      }
      for (const t of own) t.dispose();
      return [roundedBack(gx, half), roundedBack(gw, half), gb];
    };
  });
  for (const t of owned) t.dispose();
  return result;
}
