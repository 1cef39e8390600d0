/** GPT-2's MLP (`c_fc`, GELU, `c_proj`) and the pre-LN transformer block (`ln_1`, `attn`, `ln_2`, `mlp`). */
import { checkpoint } from '../autograd/checkpoint.ts';
import { isGradEnabled } from '../autograd/grad_mode.ts';
import { add } from '../ops/elementwise.ts';
import { dropout } from '../ops/nn.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { CausalSelfAttention, checkGPTLayer, type GPTLayerOptions, gptLinear } from './attention.ts';
import { type Linear, plusResidual } from './linear.ts';
import { Module } from './module.ts';
import { LayerNorm } from './norm.ts';

/**
 * x [..., C] → c_proj(gelu(c_fc(x))) with a 4C hidden layer (then residual dropout). The GELU is
 * c_fc's own activation (`Linear({ activation: 'gelu' })`): on CUDA bias and GELU run inside c_fc's product.
 * @example
 * const mlp = new MLP({ nEmbd: 768, nHead: 12 });
 */
export class MLP extends Module {
  readonly c_fc: Linear;
  readonly c_proj: Linear;
  readonly dropout: number;

  constructor(opts: GPTLayerOptions) {
    super();
    checkGPTLayer(opts, 'MLP');
    this.dropout = opts.dropout ?? 0;
    this.c_fc = this.registerModule('c_fc', gptLinear(opts.nEmbd, 4 * opts.nEmbd, opts, false, 'gelu'));
    this.c_proj = this.registerModule('c_proj', gptLinear(4 * opts.nEmbd, opts.nEmbd, opts, true));
  }

  /** With `residual`: residual + mlp(x), the add inside c_proj's product where it can be (as CausalSelfAttention's). */
  override forward(x: Tensor, residual?: Tensor): Tensor {
    const hidden = this.c_fc.forward(x);
    if (residual && !(this.training && this.dropout > 0)) return plusResidual(this.c_proj, hidden, residual);
    const out = dropout(this.c_proj.forward(hidden), this.dropout, this.training);
    return residual ? add(residual, out) : out;
  }
}

/**
 * residual + branch(x): the branch adds the residual itself (inside its output projection's product)
 * when it is this file's MLP or CausalSelfAttention, whose forward takes it; another module put in
 * its place (a tensor-parallel one) gets the separate add.
 */
function residualBranch(branch: Module, x: Tensor, residual: Tensor): Tensor {
  if (branch instanceof CausalSelfAttention || branch instanceof MLP) return branch.forward(x, residual);
  return add(residual, branch.forward(x) as Tensor);
}

export interface TransformerBlockOptions extends GPTLayerOptions {
  /** Recompute the block's activations in backward instead of keeping them (activation checkpointing). */
  checkpoint?: boolean;
}

/**
 * Pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(·)). State-dict keys: `ln_1.*`,
 * `attn.c_attn.*`, `attn.c_proj.*`, `ln_2.*`, `mlp.c_fc.*`, `mlp.c_proj.*`.
 * With `checkpoint`, only the block's input is kept for backward; the children's forward hooks
 * run again during the recomputation.
 * @example
 * const block = new TransformerBlock({ nEmbd: 768, nHead: 12, nLayer: 12, checkpoint: true });
 * x = block.forward(x);
 */
export class TransformerBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: MLP;
  /** Activation checkpointing on (may be switched at any time). */
  checkpoint: boolean;

  constructor(opts: TransformerBlockOptions) {
    super();
    checkGPTLayer(opts, 'TransformerBlock');
    const ln = { eps: opts.layerNormEps ?? 1e-5, bias: opts.bias ?? true, dtype: opts.dtype };
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(opts.nEmbd, ln));
    this.attn = this.registerModule('attn', new CausalSelfAttention(opts));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(opts.nEmbd, ln));
    this.mlp = this.registerModule('mlp', new MLP(opts));
    this.checkpoint = opts.checkpoint ?? false;
  }

  override forward(x: Tensor): Tensor {
    if (this.checkpoint && isGradEnabled()) return checkpoint((h) => this.body(h), x);
    return this.body(x);
  }

  private body(x: Tensor): Tensor {
    const h = residualBranch(this.attn, this.ln_1.forward(x), x);
    return residualBranch(this.mlp, this.ln_2.forward(h), h);
  }

  protected override extraRepr(): string {
    return this.checkpoint ? 'checkpoint' : '';
  }
}
