/** Fully connected layer: y = x Wᵀ + b with W [out, in] (PyTorch's nn.Linear). */

import { add } from '../ops/elementwise.ts';
import { type LinearActivation, linearActivation } from '../ops/linear_activation.ts';
import { linear } from '../ops/matmul.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkCount, emptyParameter, kaimingUniform_, uniform_ } from './init.ts';
import { Module } from './module.ts';

export interface LinearOptions {
  /** Learn an additive bias (default true). */
  bias?: boolean;
  dtype?: DType;
  /** Replaces the default weight init (PyTorch's kaiming-uniform with a = √5). */
  initWeight?: (weight: Tensor) => void;
  /** Replaces the default bias init (uniform ±1/√in). */
  initBias?: (bias: Tensor) => void;
  /**
   * Applied to the output: 'gelu' (GELU's tanh form, GPT-2's) gives gelu(x Wᵀ + b), rounded once
   * in bf16/f16 (fused into the product on CUDA). Parameters and state-dict keys are those of a plain Linear.
   */
  activation?: LinearActivation;
}

/**
 * y = x Wᵀ + b over the last dim of x, then the optional activation. Parameters: `weight` [out, in], `bias` [out].
 * @example
 * const fc = new Linear(512, 10);
 * const logits = fc.forward(features);   // [N, 512] -> [N, 10]
 * const up = new Linear(768, 3072, { activation: 'gelu' });   // gelu(x Wᵀ + b), one cuBLASLt call on CUDA
 * const h = proj.forward(y, x);   // x + y Wᵀ + b: the residual added in the product on CUDA
 */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  /** The activation applied to the output, or null (may be switched at any time). */
  activation: LinearActivation | null;
  /** Maps the product before the activation reads it (linear's `beforeActivation`), or null. */
  beforeActivation: ((pre: Tensor) => Tensor) | null = null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super();
    checkCount(inFeatures, 'Linear', 'inFeatures');
    checkCount(outFeatures, 'Linear', 'outFeatures');
    this.activation = linearActivation(opts.activation, 'Linear');
    const dtype = opts.dtype ?? 'f32';
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter('weight', emptyParameter([outFeatures, inFeatures], dtype));
    if (opts.initWeight) opts.initWeight(this.weight);
    else kaimingUniform_(this.weight, { a: Math.sqrt(5) });
    this.bias = null;
    if (opts.bias ?? true) {
      this.bias = this.registerParameter('bias', emptyParameter([outFeatures], dtype));
      if (opts.initBias) opts.initBias(this.bias);
      else uniform_(this.bias, -bound, bound);
    }
  }

  /** With `residual` (no activation): residual + x Wᵀ + b, one cuBLASLt call on CUDA (linear's `residual`). */
  override forward(x: Tensor, residual?: Tensor): Tensor {
    if (residual !== undefined) return linear(x, this.weight, this.bias, { residual });
    return linear(x, this.weight, this.bias, { activation: this.activation ?? undefined, beforeActivation: this.beforeActivation ?? undefined });
  }

  protected override extraRepr(): string {
    return `${this.inFeatures}, ${this.outFeatures}${this.bias ? '' : ', bias: false'}${this.activation ? `, activation: ${this.activation}` : ''}`;
  }
}

/**
 * residual + m.forward(x): added inside the product when `m` is a Linear without an activation (its
 * forward takes the residual: one cuBLASLt call on CUDA), else by a separate add (another module in
 * its place, e.g. a tensor-parallel one).
 * @example
 * const h = plusResidual(attn.c_proj, y, x);   // x + c_proj(y)
 */
export function plusResidual(m: Module, x: Tensor, residual: Tensor): Tensor {
  if (m instanceof Linear && m.activation === null) return m.forward(x, residual);
  return add(residual, m.forward(x) as Tensor);
}
