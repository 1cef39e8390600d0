/** GPT-2's causal self-attention: one fused q/k/v projection (`c_attn`), heads, output projection (`c_proj`). */

import { qkvAttention } from '../ops/attention_qkv.ts';
import { add } from '../ops/elementwise.ts';
import type { LinearActivation } from '../ops/linear_activation.ts';
import { matmul } from '../ops/matmul.ts';
import { dropout, softmax } from '../ops/nn.ts';
import { reshape, split, transpose } from '../ops/view.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { checkCount, normal_, zeros_ } from './init.ts';
import { Linear, plusResidual } from './linear.ts';
import { Module } from './module.ts';

/** Sizes and init of the GPT-2 layers (attention, MLP, transformer block). */
export interface GPTLayerOptions {
  /** Hidden size. */
  nEmbd: number;
  /** Attention heads (must divide nEmbd). */
  nHead: number;
  /** Dropout on attention probabilities and on each residual branch (GPT-2 trains with 0.1; default 0). */
  dropout?: number;
  /** Biases in the linear layers and layer norms (default true). */
  bias?: boolean;
  layerNormEps?: number;
  /** The model's depth: residual projections start with std initStd/√(2·nLayer) (default 1). */
  nLayer?: number;
  /** Std of the normal init of weights (default 0.02, GPT-2's). */
  initStd?: number;
  dtype?: DType;
}

/** GPT-2's init for a linear layer: normal(0, std) weights, zero biases. */
export function gptLinear(inF: number, outF: number, opts: GPTLayerOptions, residual: boolean, activation?: LinearActivation): Linear {
  const base = opts.initStd ?? 0.02;
  const std = residual ? base / Math.sqrt(2 * (opts.nLayer ?? 1)) : base;
  return new Linear(inF, outF, {
    bias: opts.bias ?? true,
    dtype: opts.dtype,
    initWeight: (w) => normal_(w, 0, std),
    initBias: (b) => zeros_(b),
    activation,
  });
}

export function checkGPTLayer(opts: GPTLayerOptions, layer: string): void {
  checkCount(opts.nEmbd, layer, 'nEmbd');
  checkCount(opts.nHead, layer, 'nHead');
  if (opts.nEmbd % opts.nHead !== 0) throw new Error(`${layer}: nEmbd ${opts.nEmbd} is not divisible by nHead ${opts.nHead}`);
  const p = opts.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new Error(`${layer}: dropout must be in [0, 1), got ${p}`);
}

/**
 * x [B, T, C] → [B, T, C]: q, k, v are the three equal splits of `c_attn(x)`, each token
 * attends to itself and earlier ones (softmax(q·kᵀ/√(C/nHead))·v per head), then `c_proj`.
 * Parameters `c_attn.{weight,bias}` [3C, C] / [3C], `c_proj.{weight,bias}` [C, C] / [C].
 * @example
 * const attn = new CausalSelfAttention({ nEmbd: 768, nHead: 12 });
 * const y = attn.forward(x);
 */
export class CausalSelfAttention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly nEmbd: number;
  readonly nHead: number;
  readonly dropout: number;

  constructor(opts: GPTLayerOptions) {
    super();
    checkGPTLayer(opts, 'CausalSelfAttention');
    this.nEmbd = opts.nEmbd;
    this.nHead = opts.nHead;
    this.dropout = opts.dropout ?? 0;
    this.c_attn = this.registerModule('c_attn', gptLinear(opts.nEmbd, 3 * opts.nEmbd, opts, false));
    this.c_proj = this.registerModule('c_proj', gptLinear(opts.nEmbd, opts.nEmbd, opts, true));
  }

  /**
   * With `residual`: residual + attention(x), the add inside c_proj's product where it can be
   * (no dropout in training; `plusResidual`).
   */
  override forward(x: Tensor, residual?: Tensor): Tensor {
    if (x.ndim !== 3 || x.shape[2] !== this.nEmbd) {
      throw new Error(`CausalSelfAttention: x must be [batch, seq, ${this.nEmbd}], got [${x.shape.join(', ')}]`);
    }
    const [B, T, C] = x.shape;
    const H = this.nHead;
    const qkv = this.c_attn.forward(x);
    let y: Tensor;
    if (this.training && this.dropout > 0) {
      // Dropout on the attention probabilities needs them materialized.
      const heads = (t: Tensor) => transpose(reshape(t, [B, T, H, C / H]), 1, 2); // [B, H, T, Dh]
      const [q, k, v] = split(qkv, C, -1).map(heads);
      const probs = softmax(matmul(q, transpose(k, -2, -1)), -1, { scale: 1 / Math.sqrt(C / H), causal: true });
      y = reshape(transpose(matmul(dropout(probs, this.dropout, true), v), 1, 2), [B, T, C]);
    } else {
      // Reads q, k, v in place and (on CUDA) writes their gradients into one buffer: no layout copies.
      y = qkvAttention(qkv, H, { causal: true });
    }
    if (residual && !(this.training && this.dropout > 0)) return plusResidual(this.c_proj, y, residual);
    const out = dropout(this.c_proj.forward(y), this.dropout, this.training);
    return residual ? add(residual, out) : out;
  }

  protected override extraRepr(): string {
    return `nEmbd ${this.nEmbd}, nHead ${this.nHead}${this.dropout ? `, dropout ${this.dropout}` : ''}`;
  }
}
