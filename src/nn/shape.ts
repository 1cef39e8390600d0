/** Layers that only reshape: Flatten and Identity. */

import { flatten } from '../ops/view.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { Module } from './module.ts';

/**
 * Flattens dims startDim..endDim into one (default: all but the batch dim).
 * @example
 * const head = new Sequential(new AdaptiveAvgPool2d(1), new Flatten(), new Linear(512, 10));
 */
export class Flatten extends Module {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }

  override forward(x: Tensor): Tensor {
    return flatten(x, this.startDim, this.endDim);
  }
}

/** Returns its input (a placeholder, e.g. for an absent shortcut). */
export class Identity extends Module {
  override forward(x: Tensor): Tensor {
    return x;
  }
}
