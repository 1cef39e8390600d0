/** 2-D convolution layer (PyTorch's nn.Conv2d: stride, padding, dilation, groups). */

import { conv2d } from '../ops/conv.ts';
import { pair } from '../ops/nchw.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkCount, emptyParameter, fans, kaimingUniform_, uniform_ } from './init.ts';
import { Module } from './module.ts';

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  /** Spacing between kernel taps (default 1). */
  dilation?: number | readonly [number, number];
  /** Channel groups (default 1; inChannels for a depthwise conv): both channel counts must divide by it. */
  groups?: number;
  /** Learn a per-channel bias (default true). */
  bias?: boolean;
  dtype?: DType;
  /** Replaces the default weight init (kaiming-uniform with a = √5, as PyTorch). */
  initWeight?: (weight: Tensor) => void;
  /** Replaces the default bias init (uniform ±1/√fanIn). */
  initBias?: (bias: Tensor) => void;
}

/**
 * Cross-correlation of x [N, C, H, W] with `weight` [out, in / groups, kh, kw] plus `bias` [out];
 * the output is laid out channels-last (see the conv2d op).
 * @example
 * const conv = new Conv2d(3, 64, 3, { padding: 1, bias: false });
 * const y = conv.forward(images);   // [N, 3, 32, 32] -> [N, 64, 32, 32]
 * const depthwise = new Conv2d(64, 64, 3, { padding: 2, dilation: 2, groups: 64 });
 */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

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
    this.dilation = pair(opts.dilation ?? 1, 'Conv2d', 'dilation', 1);
    const groups = opts.groups ?? 1;
    if (!Number.isInteger(groups) || groups < 1) throw new Error(`Conv2d: groups must be a positive integer, got ${JSON.stringify(groups)}`);
    if (inChannels % groups !== 0) throw new Error(`Conv2d: inChannels ${inChannels} must be divisible by groups ${groups}`);
    if (outChannels % groups !== 0) throw new Error(`Conv2d: outChannels ${outChannels} must be divisible by groups ${groups}`);
    this.groups = groups;
    const dtype = opts.dtype ?? 'f32';
    // fan_in (kaiming and the bias bound) counts only the in / groups channels one output reads, as PyTorch.
    const shape = [outChannels, inChannels / groups, ...this.kernelSize];
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
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }

  protected override extraRepr(): string {
    const [kh, kw] = this.kernelSize;
    return `${this.inChannels}, ${this.outChannels}, kernel ${kh}x${kw}, stride ${this.stride.join('x')}, padding ${this.padding.join('x')}${this.dilation[0] !== 1 || this.dilation[1] !== 1 ? `, dilation ${this.dilation.join('x')}` : ''}${this.groups !== 1 ? `, groups ${this.groups}` : ''}${this.bias ? '' : ', bias: false'}`;
  }
}
