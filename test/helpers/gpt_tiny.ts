/**
 * The tiny GPT-2 of /work/shared/reference/pytorch-golden/gpt_tiny.json built functionally from
 * the ops (used by the golden layer and optimizer tests): the golden file, and the loss.
 */
import { existsSync, readFileSync } from 'node:fs';
import {
  add, arange, checkpoint, crossEntropy, embedding, gelu, layerNorm, linear, reshape, scaledDotProductAttention, split, type Tensor,
  transpose,
} from '../../src/index.ts';

export type Nested = number | Nested[];

export interface Golden {
  config: { vocab: number; seq: number; hidden: number; layers: number; heads: number; batch: number; layernorm_eps: number };
  parameter_order: string[];
  weights: Record<string, { shape: number[]; data: Nested }>;
  inputs: Nested;
  targets: Nested;
  loss: number;
  grads: Record<string, Nested>;
  adamw: {
    lr: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
    steps: number;
    losses_before_each_step: number[];
    weights_after: Record<string, Nested>;
  };
}

/** The repo's copy in test/fixtures, else the shared reference. */
export function loadGolden(): Golden {
  const copy = new URL('../fixtures/gpt_tiny.json', import.meta.url);
  const shared = new URL('../../../shared/reference/pytorch-golden/gpt_tiny.json', import.meta.url);
  return JSON.parse(readFileSync(existsSync(copy) ? copy : shared, 'utf8'));
}

export const flat = (v: Nested): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v]);

/** Pre-LN GPT-2: token + position embeddings, blocks of causal attention and a GELU MLP, tied head. */
export function gptLoss(g: Golden, p: Record<string, Tensor>, ids: Tensor, targets: Tensor, checkpointBlocks = false): Tensor {
  const { seq: T, hidden: C, heads: H, batch: B, layernorm_eps: eps } = g.config;
  const ln = (x: Tensor, name: string) => layerNorm(x, [C], p[`${name}.weight`], p[`${name}.bias`], eps);
  const heads = (t: Tensor) => transpose(reshape(t, [B, T, H, C / H]), 1, 2); // [B, H, T, Dh]
  let x = add(embedding(ids, p['wte.weight']), embedding(arange(T, { dtype: 'i32' }), p['wpe.weight']));
  for (let l = 0; l < g.config.layers; l++) {
    const w = (name: string) => p[`h.${l}.${name}`];
    const block = (xin: Tensor) => {
      const qkv = linear(ln(xin, `h.${l}.ln_1`), w('attn_c_attn.weight'), w('attn_c_attn.bias'));
      const [q, k, v] = split(qkv, C, -1).map(heads);
      const y = reshape(transpose(scaledDotProductAttention(q, k, v, { causal: true }), 1, 2), [B, T, C]);
      const h = add(xin, linear(y, w('attn_c_proj.weight'), w('attn_c_proj.bias')));
      const m = gelu(linear(ln(h, `h.${l}.ln_2`), w('mlp_c_fc.weight'), w('mlp_c_fc.bias')));
      return add(h, linear(m, w('mlp_c_proj.weight'), w('mlp_c_proj.bias')));
    };
    x = checkpointBlocks ? checkpoint(block, x) : block(x);
  }
  const logits = linear(ln(x, 'ln_f'), p['wte.weight']); // tied head: [B, T, V]
  return crossEntropy(logits, targets);
}
