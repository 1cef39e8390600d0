/**
 * Three AdamW steps on the tiny GPT-2 of the PyTorch golden file (f64): the loss before each
 * step and every weight after the third match PyTorch 1.13 within 1e-9 relative. The model is
 * built functionally (test/helpers/gpt_tiny.ts), as in gpt_golden.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AdamW, type Tensor, tensor, tidy } from '../../src/index.ts';
import { flat, gptLoss, loadGolden } from '../helpers/gpt_tiny.ts';

const g = loadGolden();

test('AdamW on the tiny GPT-2 (f64): losses before each of 3 steps and all weights after match PyTorch within 1e-9', () => {
  const { batch: B, seq: T } = g.config;
  const a = g.adamw;
  const params: Record<string, Tensor> = {};
  for (const name of g.parameter_order) {
    const w = g.weights[name];
    params[name] = tensor(flat(w.data), { shape: w.shape, dtype: 'f64', requiresGrad: true });
  }
  // One group with every parameter, as the reference: torch.optim.AdamW(model.parameters(), ...).
  const opt = new AdamW(g.parameter_order.map((n) => params[n]), { lr: a.lr, betas: a.betas, eps: a.eps, weightDecay: a.weight_decay });
  const ids = tensor(flat(g.inputs), { shape: [B, T], dtype: 'i64' });
  const targets = tensor(flat(g.targets), { shape: [B, T], dtype: 'i64' });
  assert.is(a.steps, 3);
  for (let s = 0; s < a.steps; s++) {
    const loss = tidy(() => {
      const l = gptLoss(g, params, ids, targets);
      l.backward();
      return l.item();
    });
    const want = a.losses_before_each_step[s];
    assert.ok(Math.abs(loss - want) <= 1e-9 * Math.abs(want), `loss before step ${s + 1}: ${loss} vs ${want}`);
    opt.step();
    opt.zeroGrad();
  }
  for (const name of g.parameter_order) {
    const want = flat(a.weights_after[name]);
    const have = params[name].toList();
    assert.is(have.length, want.length, name);
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(have[i] - want[i]);
      assert.ok(err <= 1e-9 * Math.abs(want[i]), `${name}[${i}]: ${have[i]} vs ${want[i]} (relative error ${err / Math.abs(want[i])})`);
    }
  }
  for (const t of [...Object.values(params), ids, targets]) t.dispose();
  opt.dispose();
});

test.run();
