/**
 * GPT-2's attention and MLP with tensor parallelism (Megatron's layout): the first projection
 * is column-parallel and the second row-parallel, so each layer costs one all-reduce forward
 * and one backward. Attention splits the heads: rank r holds heads [r·H/tp, (r+1)·H/tp) with
 * its q, k and v rows of `c_attn` and its columns of `c_proj`. Built from the same seed, the
 * shards hold exactly the slices of nn's CausalSelfAttention / MLP weights. Dropout inside the
 * region (attention probabilities: each rank its heads) draws from the tp rank's stream; the
 * residual dropout does too under sequence parallelism (each rank its tokens), and otherwise
 * draws the same mask on every rank (random.ts).
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { checkGPTLayer, type GPTLayerOptions } from '../nn/attention.ts';
import { normal_, zeros_ } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import { qkvAttention } from '../ops/attention_qkv.ts';
import { matmul } from '../ops/matmul.ts';
import { dropout, softmax } from '../ops/nn.ts';
import { reshape, split, transpose } from '../ops/view.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { ColumnParallelLinear, type ColumnParallelOptions, RowParallelLinear } from './layers.ts';
import { withTensorParallelRng } from './random.ts';
import { checkDivisible } from './shard_init.ts';

export interface ParallelGPTLayerOptions extends GPTLayerOptions {
  /** The tensor-parallel group (`mesh.group('tp')`). */
  group: ProcessGroup;
  /** Activations in and out are split along the sequence dim ([batch, seq/tp, hidden]). */
  sequenceParallel?: boolean;
}

/** gptLinear's init (normal(0, std) weights, zero biases) for the pieces of a parallel linear. */
function gptInit(opts: ParallelGPTLayerOptions, residual: boolean): Pick<ColumnParallelOptions, 'group' | 'bias' | 'dtype' | 'initWeight' | 'initBias' | 'sequenceParallel'> {
  const base = opts.initStd ?? 0.02;
  const std = residual ? base / Math.sqrt(2 * (opts.nLayer ?? 1)) : base;
  return {
    group: opts.group,
    bias: opts.bias ?? true,
    dtype: opts.dtype,
    sequenceParallel: opts.sequenceParallel,
    initWeight: (piece, o) => normal_(piece, 0, std, o),
    initBias: (piece) => zeros_(piece),
  };
}

/** Already-built projections for ParallelCausalSelfAttention to adopt (what `parallelize` passes). */
export interface ParallelAttentionLinears {
  /** Column-parallel over 3·nEmbd outputs with `stacked: 3` (this rank's q, k, v rows). */
  c_attn: ColumnParallelLinear;
  /** Row-parallel over nEmbd inputs. */
  c_proj: RowParallelLinear;
}

/** Residual dropout: per-rank masks when the ranks hold different tokens, shared ones otherwise. */
function residualDropout(y: Tensor, p: number, training: boolean, group: ProcessGroup, sequenceParallel: boolean): Tensor {
  return sequenceParallel ? withTensorParallelRng(group, () => dropout(y, p, training)) : dropout(y, p, training);
}

/**
 * x [B, T, C] → [B, T, C] (T/tp in and out with sequenceParallel), as CausalSelfAttention.
 * Parameters `c_attn.weight` [3C/tp, C] (this rank's q, k, v rows), `c_attn.bias` [3C/tp],
 * `c_proj.weight` [C, C/tp], `c_proj.bias` [C]. With `linears`, adopts those projections
 * (their group and sequenceParallel win) instead of building them.
 * Without attention dropout it runs qkvAttention on this rank's q | k | v slice (on CUDA: no
 * layout copies around attention).
 * @example
 * const attn = new ParallelCausalSelfAttention({ nEmbd: 768, nHead: 12, group: mesh.group('tp') });
 */
export class ParallelCausalSelfAttention extends Module {
  readonly c_attn: ColumnParallelLinear;
  readonly c_proj: RowParallelLinear;
  readonly nEmbd: number;
  readonly nHead: number;
  /** Heads on this rank. */
  readonly localHeads: number;
  readonly dropout: number;

  constructor(opts: ParallelGPTLayerOptions, linears?: ParallelAttentionLinears) {
    super();
    const layer = 'ParallelCausalSelfAttention';
    checkGPTLayer(opts, layer);
    const group = linears?.c_attn.group ?? opts.group;
    checkDivisible(opts.nHead, group.size, layer, 'nHead', group);
    this.nEmbd = opts.nEmbd;
    this.nHead = opts.nHead;
    this.localHeads = opts.nHead / group.size;
    this.dropout = opts.dropout ?? 0;
    if (linears) checkLinears(linears, opts.nEmbd, group);
    this.c_attn = this.registerModule('c_attn', linears?.c_attn ?? new ColumnParallelLinear(opts.nEmbd, 3 * opts.nEmbd, { ...gptInit(opts, false), stacked: 3 }));
    this.c_proj = this.registerModule('c_proj', linears?.c_proj ?? new RowParallelLinear(opts.nEmbd, opts.nEmbd, gptInit(opts, true)));
  }

  override forward(x: Tensor): Tensor {
    if (x.ndim !== 3 || x.shape[2] !== this.nEmbd) {
      throw new Error(`ParallelCausalSelfAttention: x must be [batch, seq, ${this.nEmbd}], got [${x.shape.join(', ')}]`);
    }
    // [B, T, 3C/tp]: c_attn stacks q, k, v and splits each by heads (stacked: 3), so this rank's
    // slice is q | k | v of its own heads, the layout qkvAttention reads (T whole under sequence
    // parallelism: c_attn all-gathered the tokens).
    const qkv = this.c_attn.forward(x);
    const H = this.localHeads;
    let y: Tensor; // [B, T, C/tp], heads merged
    if (this.training && this.dropout > 0) {
      // Dropout on the attention probabilities needs them materialized.
      const [B, T] = qkv.shape;
      const Dh = this.nEmbd / this.nHead;
      const heads = (t: Tensor) => transpose(reshape(t, [B, T, H, Dh]), 1, 2); // [B, H/tp, T, Dh]
      const [q, k, v] = split(qkv, H * Dh, -1).map(heads);
      const probs = softmax(matmul(q, transpose(k, -2, -1)), -1, { scale: 1 / Math.sqrt(Dh), causal: true });
      // Each rank holds other heads' probabilities: per-rank masks.
      const o = matmul(withTensorParallelRng(this.c_attn.group, () => dropout(probs, this.dropout, true)), v);
      y = reshape(transpose(o, 1, 2), [B, T, H * Dh]);
    } else {
      // Reads q, k, v in place and (on CUDA) writes their gradients into one buffer: no layout copies.
      y = qkvAttention(qkv, H, { causal: true });
    }
    const out = this.c_proj.forward(y);
    return residualDropout(out, this.dropout, this.training, this.c_proj.group, this.c_proj.sequenceParallel);
  }

  protected override extraRepr(): string {
    return `nEmbd ${this.nEmbd}, nHead ${this.nHead} (${this.localHeads} on this rank)${this.dropout ? `, dropout ${this.dropout}` : ''}`;
  }
}

/**
 * x [..., C] → c_proj(gelu(c_fc(x))) as nn's MLP: `c_fc` column-parallel (4C/tp hidden units
 * per rank), `c_proj` row-parallel.
 * @example
 * const mlp = new ParallelMLP({ nEmbd: 768, nHead: 12, group: mesh.group('tp') });
 */
export class ParallelMLP extends Module {
  readonly c_fc: ColumnParallelLinear;
  readonly c_proj: RowParallelLinear;
  readonly dropout: number;

  constructor(opts: ParallelGPTLayerOptions) {
    super();
    checkGPTLayer(opts, 'ParallelMLP');
    this.dropout = opts.dropout ?? 0;
    // GELU is element-wise, so c_fc applies it to its own slice (fused into its product where the device can).
    this.c_fc = this.registerModule('c_fc', new ColumnParallelLinear(opts.nEmbd, 4 * opts.nEmbd, { ...gptInit(opts, false), activation: 'gelu' }));
    this.c_proj = this.registerModule('c_proj', new RowParallelLinear(4 * opts.nEmbd, opts.nEmbd, gptInit(opts, true)));
  }

  override forward(x: Tensor): Tensor {
    const y = this.c_proj.forward(this.c_fc.forward(x));
    return residualDropout(y, this.dropout, this.training, this.c_proj.group, this.c_proj.sequenceParallel);
  }
}

function checkLinears(l: ParallelAttentionLinears, nEmbd: number, group: ProcessGroup): void {
  const what = 'ParallelCausalSelfAttention';
  if (!(l.c_attn instanceof ColumnParallelLinear) || l.c_attn.stacked !== 3 || l.c_attn.inFeatures !== nEmbd || l.c_attn.outFeatures !== 3 * nEmbd) {
    throw new Error(`${what}: c_attn must be a ColumnParallelLinear(${nEmbd}, ${3 * nEmbd}) with stacked: 3 (q, k, v), got ${describe(l.c_attn)}`);
  }
  if (!(l.c_proj instanceof RowParallelLinear) || l.c_proj.inFeatures !== nEmbd || l.c_proj.outFeatures !== nEmbd) {
    throw new Error(`${what}: c_proj must be a RowParallelLinear(${nEmbd}, ${nEmbd}), got ${describe(l.c_proj)}`);
  }
  if (l.c_proj.group !== group || l.c_attn.sequenceParallel !== l.c_proj.sequenceParallel) {
    throw new Error(`${what}: c_attn and c_proj must share the tp group and sequenceParallel`);
  }
}

function describe(m: Module): string {
  const l = m as unknown as Partial<ColumnParallelLinear>;
  return `${m.constructor.name}(${l.inFeatures}, ${l.outFeatures}${l.stacked && l.stacked > 1 ? `, stacked: ${l.stacked}` : ''})`;
}
