/** Pooling layers over [N, C, H, W]: MaxPool2d and AdaptiveAvgPool2d. */

import { pair } from '../ops/nchw.ts';
import { adaptiveAvgPool2d, maxPool2d } from '../ops/pool.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { Module } from './module.ts';

/**
 * Max over kernel windows (stride defaults to the kernel size, padding reads as -inf).
 * @example
 * const pool = new MaxPool2d(3, { stride: 2, padding: 1 });   // ResNet's stem
 */
export class MaxPool2d extends Module {
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];

  constructor(kernelSize: number | readonly [number, number], opts: { stride?: number | readonly [number, number]; padding?: number | readonly [number, number] } = {}) {
    super();
    this.kernelSize = pair(kernelSize, 'MaxPool2d', 'kernelSize', 1);
    this.stride = pair(opts.stride ?? this.kernelSize, 'MaxPool2d', 'stride', 1);
    this.padding = pair(opts.padding ?? 0, 'MaxPool2d', 'padding', 0);
  }

  override forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernelSize, { stride: this.stride, padding: this.padding });
  }

  protected override extraRepr(): string {
    return `kernel ${this.kernelSize.join('x')}, stride ${this.stride.join('x')}, padding ${this.padding.join('x')}`;
  }
}

/**
 * Averages into a fixed output size whatever the input size.
 * @example
 * const gap = new AdaptiveAvgPool2d(1);   // [N, C, H, W] -> [N, C, 1, 1]
 */
export class AdaptiveAvgPool2d extends Module {
  readonly outputSize: [number, number];

  constructor(outputSize: number | readonly [number, number]) {
    super();
    this.outputSize = pair(outputSize, 'AdaptiveAvgPool2d', 'outputSize', 1);
  }

  override forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }

  protected override extraRepr(): string {
    return `${this.outputSize.join('x')}`;
  }
}
