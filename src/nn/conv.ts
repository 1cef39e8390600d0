/** 2-D convolution layer (PyTorch's nn.Conv2d with groups 1, dilation 1). */

import { conv2d } from '../ops/conv.ts';
import { pair } from '../ops/nchw.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkCount, emptyParameter, fans, kaimingUniform_, uniform_ } from './init.ts';
import { Module } from './module.ts';

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  /** Learn a per-channel bias (default true). */
  bias?: boolean;
  dtype?: DType;
  /** Replaces the default weight init (kaiming-uniform with a = √5, as PyTorch). */
  initWeight?: (weight: Tensor) => void;
  /** Replaces the default bias init (uniform ±1/√fanIn). */
  initBias?: (bias: Tensor) => void;
}

/**
 * Cross-correlation of x [N, C, H, W] with `weight` [out, in, kh, kw] plus `bias` [out]; the
 * output is laid out channels-last (see the conv2d op).
 * @example
 * const conv = new Conv2d(3, 64, 3, { padding: 1, bias: false });
 * const y = conv.forward(images);   // [N, 3, 32, 32] -> [N, 64, 32, 32]
 */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | readonly [number, number],
    opts: Conv2dOptions = {},
  ) {
    super();
    checkCount(inChannels, 'Conv2d', 'inChannels');
    checkCount(outChannels, 'Conv2d', 'outChannels');
    this.kernelSize = pair(kernelSize, 'Conv2d', 'kernelSize', 1);
    this.stride = pair(opts.stride ?? 1, 'Conv2d', 'stride', 1);
    this.padding = pair(opts.padding ?? 0, 'Conv2d', 'padding', 0);
    const dtype = opts.dtype ?? 'f32';
    const shape = [outChannels, inChannels, ...this.kernelSize];
    this.weight = this.registerParameter('weight', emptyParameter(shape, dtype));
    if (opts.initWeight) opts.initWeight(this.weight);
    else kaimingUniform_(this.weight, { a: Math.sqrt(5) });
    this.bias = null;
    if (opts.bias ?? true) {
      this.bias = this.registerParameter('bias', emptyParameter([outChannels], dtype));
      const bound = 1 / Math.sqrt(fans(shape)[0]);
      if (opts.initBias) opts.initBias(this.bias);
      else uniform_(this.bias, -bound, bound);
    }
  }

  override forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }

  protected override extraRepr(): string {
    const [kh, kw] = this.kernelSize;
    return `${this.inChannels}, ${this.outChannels}, kernel ${kh}x${kw}, stride ${this.stride.join('x')}, padding ${this.padding.join('x')}${this.bias ? '' : ', bias: false'}`;
  }
}
