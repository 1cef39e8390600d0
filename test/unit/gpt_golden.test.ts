/**
 * A tiny GPT-2 built functionally from the ops in f64 (embedding, layerNorm, linear, causal
 * attention, gelu, crossEntropy, tied head), checked against PyTorch 1.13: the loss and every
 * parameter gradient. See /work/shared/reference/pytorch-golden/README.md for the model; the
 * repo keeps a copy of the JSON in test/fixtures. (The file's AdamW steps belong to the optimizer tests.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Tensor, tensor, tidy } from '../../src/index.ts';
import { flat, type Golden, gptLoss, loadGolden } from '../helpers/gpt_tiny.ts';

const golden = loadGolden();

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
