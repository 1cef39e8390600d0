/** Parameter-free element-wise layers: ReLU, GELU and Dropout. */

import { gelu, relu } from '../ops/elementwise.ts';
import { dropout } from '../ops/nn.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { Module } from './module.ts';

/** max(x, 0). */
export class ReLU extends Module {
  override forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/**
 * GELU with the tanh approximation (GPT-2's; PyTorch's `nn.GELU(approximate='tanh')`).
 * @example
 * const act = new GELU();
 */
export class GELU extends Module {
  override forward(x: Tensor): Tensor {
    return gelu(x);
  }

  protected override extraRepr(): string {
    return "approximate: 'tanh'";
  }
}

/**
 * Zeroes elements with probability p and scales the rest by 1/(1-p) in training mode; the
 * identity in eval mode. Masks come from the seeded generator (replayed by checkpoint()).
 * @example
 * const drop = new Dropout(0.1);
 */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new Error(`Dropout: p must be in [0, 1), got ${p}`);
  }

  override forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }

  protected override extraRepr(): string {
    return `p ${this.p}`;
  }
}
