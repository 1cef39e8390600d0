/**
 * A tiny GPT-2 built functionally from the ops in f64 (embedding, layerNorm, linear, causal
 * attention, gelu, crossEntropy, tied head), checked against PyTorch 1.13: the loss and every
 * parameter gradient. See /work/shared/reference/pytorch-golden/README.md for the model; the
 * repo keeps a copy of the JSON in test/fixtures. (The file's AdamW steps belong to the optimizer tests.)
 */
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  add, arange, checkpoint, crossEntropy, embedding, gelu, layerNorm, linear, reshape, scaledDotProductAttention, split, type Tensor, tensor, tidy,
  transpose,
} from '../../src/index.ts';

type Nested = number | Nested[];
interface Golden {
  config: { vocab: number; seq: number; hidden: number; layers: number; heads: number; batch: number; layernorm_eps: number };
  parameter_order: string[];
  weights: Record<string, { shape: number[]; data: Nested }>;
  inputs: Nested;
  targets: Nested;
  loss: number;
  grads: Record<string, Nested>;
}

function load(): Golden {
  const copy = new URL('../fixtures/gpt_tiny.json', import.meta.url);
  const shared = new URL('../../../shared/reference/pytorch-golden/gpt_tiny.json', import.meta.url);
  return JSON.parse(readFileSync(existsSync(copy) ? copy : shared, 'utf8'));
}

const flat = (v: Nested): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v]);

/** Pre-LN GPT-2: token + position embeddings, blocks of causal attention and a GELU MLP, tied head. */
function gptLoss(g: Golden, p: Record<string, Tensor>, ids: Tensor, targets: Tensor, checkpointBlocks = false): Tensor {
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

const golden = load();

for (const checkpointBlocks of [false, true]) {
  test(`tiny GPT-2 in f64${checkpointBlocks ? ', blocks checkpointed' : ''}: loss and every gradient match PyTorch within 1e-9 relative`, () => {
    check(golden, checkpointBlocks);
  });
}

function check(g: Golden, checkpointBlocks: boolean): void {
  const { batch: B, seq: T } = g.config;
  const params: Record<string, Tensor> = {};
  for (const name of g.parameter_order) {
    const w = g.weights[name];
    params[name] = tensor(flat(w.data), { shape: w.shape, dtype: 'f64', requiresGrad: true });
  }
  tidy(() => {
    const ids = tensor(flat(g.inputs), { shape: [B, T], dtype: 'i64' });
    const targets = tensor(flat(g.targets), { shape: [B, T], dtype: 'i64' });
    const loss = gptLoss(g, params, ids, targets, checkpointBlocks);
    const got = loss.item();
    assert.ok(Math.abs(got - g.loss) <= 1e-9 * Math.abs(g.loss), `loss ${got} vs ${g.loss}`);
    loss.backward();
  });
  for (const name of g.parameter_order) {
    const want = flat(g.grads[name]);
    const grad = params[name].grad;
    assert.ok(grad, `${name} has a gradient`);
    const have = grad.toList();
    assert.is(have.length, want.length, name);
    // 1e-9 relative per element, with a floor of 1e-12 of the tensor's largest entry: elements
    // that are near 0 by cancellation carry rounding noise of that scale.
    const scale = Math.max(...want.map(Math.abs));
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(have[i] - want[i]);
      assert.ok(err <= 1e-9 * Math.abs(want[i]) + 1e-12 * scale, `${name}[${i}]: ${have[i]} vs ${want[i]}`);
    }
  }
  for (const t of Object.values(params)) t.dispose();
}

test.run();
