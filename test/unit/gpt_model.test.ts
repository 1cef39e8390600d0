/**
 * models/gpt.ts against PyTorch: the tiny GPT-2 built from our layers, loaded with the golden
 * weights through loadStateDict, reproduces the loss and every gradient (f64 within 1e-9
 * relative, f32 within 1e-4); and a tiny GPT learns a fixed sequence with plain SGD.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig, gptKeyFromFlatName, gptParamCount } from '../../models/index.ts';
import {
  addInPlace, crossEntropy, type DType, liveStorages, manualSeed, noGrad, randn, type Tensor, tensor, tidy,
} from '../../src/index.ts';
import { flat, loadGolden } from '../helpers/gpt_tiny.ts';

const golden = loadGolden();

test('gptConfig("tiny") is the golden model; named sizes have GPT-2/GPT-3 parameter counts', () => {
  const c = gptConfig('tiny');
  const g = golden.config;
  assert.equal([c.vocabSize, c.nCtx, c.nLayer, c.nHead, c.nEmbd], [g.vocab, g.seq, g.layers, g.heads, g.hidden]);
  const count = Object.values(golden.weights).reduce((n, w) => n + flat(w.data).length, 0);
  assert.is(gptParamCount(c), count);
  const m = new GPT(c);
  assert.is(m.numParameters(), count);
  m.dispose();
  // GPT-2 124M (tied head) is 124,439,808; the others follow from the same formula.
  assert.is(gptParamCount(gptConfig('124M')), 124_439_808);
  assert.is(gptParamCount(gptConfig('350m')), 354_823_168);
  assert.is(gptParamCount(gptConfig('1.5B')), 1_557_611_200);
  assert.is(gptConfig('13B').nEmbd % gptConfig('13B').nHead, 0);
  assert.throws(() => gptConfig('7B'), /unknown size "7B" \(known: tiny, 124M/);
  assert.is(gptKeyFromFlatName('h.1.attn_c_attn.weight'), 'h.1.attn.c_attn.weight');
  assert.is(gptKeyFromFlatName('h.0.mlp_c_proj.bias'), 'h.0.mlp.c_proj.bias');
  assert.is(gptKeyFromFlatName('ln_f.weight'), 'ln_f.weight');
});

/** The golden weights under our names, as `dtype` tensors (freed by the caller's scope). */
function goldenStateDict(dtype: DType): Record<string, Tensor> {
  const sd: Record<string, Tensor> = {};
  for (const name of golden.parameter_order) {
    const w = golden.weights[name];
    sd[gptKeyFromFlatName(name)] = tensor(flat(w.data), { shape: w.shape, dtype });
  }
  return sd;
}

function check(dtype: DType, checkpoint: boolean, tol: number): void {
  const { batch: B, seq: T } = golden.config;
  const model = new GPT(gptConfig('tiny', { dtype, checkpoint }));
  tidy(() => {
    const res = model.loadStateDict(goldenStateDict(dtype)); // strict: the key sets are equal
    assert.equal(res, { missingKeys: [], unexpectedKeys: [] });
    const ids = tensor(flat(golden.inputs), { shape: [B, T], dtype: 'i64' });
    const targets = tensor(flat(golden.targets), { shape: [B, T], dtype: 'i64' });
    const loss = crossEntropy(model.forward(ids), targets);
    const got = loss.item();
    assert.ok(Math.abs(got - golden.loss) <= tol * Math.abs(golden.loss), `${dtype} loss ${got} vs ${golden.loss}`);
    loss.backward();
  });
  for (const name of golden.parameter_order) {
    const want = flat(golden.grads[name]);
    const grad = model.getParameter(gptKeyFromFlatName(name)).grad;
    assert.ok(grad, `${name} has a gradient`);
    const have = grad.toList();
    assert.is(have.length, want.length, name);
    const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    if (dtype === 'f64') {
      // 1e-9 relative per element, with a floor of 1e-12 of the tensor's largest entry for
      // elements near 0 by cancellation (as the functional golden test).
      for (let i = 0; i < want.length; i++) {
        const err = Math.abs(have[i] - want[i]);
        assert.ok(err <= tol * Math.abs(want[i]) + 1e-12 * scale, `${name}[${i}]: ${have[i]} vs ${want[i]}`);
      }
    } else {
      // f32: the largest error relative to the tensor's largest entry (as the convnet golden test).
      const err = want.reduce((m, v, i) => Math.max(m, Math.abs(have[i] - v)), 0) / scale;
      assert.ok(err <= tol, `${dtype} gradient of ${name}: relative error ${err}`);
    }
  }
  model.dispose();
}

for (const checkpoint of [false, true]) {
  test(`GPT module, f64${checkpoint ? ', checkpointed blocks' : ''}: loss and every gradient match PyTorch within 1e-9 relative`, () => {
    check('f64', checkpoint, 1e-9);
  });
}

test('GPT module, f32: loss and every gradient within 1e-4 (relative to each tensor\'s largest entry)', () => {
  check('f32', false, 1e-4);
});

test('a tiny GPT learns a fixed sequence with plain SGD: loss < 0.05 within 150 steps, no leaks', () => {
  manualSeed(0);
  const cfg = gptConfig('tiny');
  const model = new GPT(cfg);
  // One fixed random sequence of 17 tokens; the model learns to predict each next token.
  const seq = tidy(() => randn([cfg.nCtx + 1]).toList().map((v) => Math.abs(Math.floor(v * 1000)) % cfg.vocabSize));
  const ids = tensor([seq.slice(0, cfg.nCtx)], { dtype: 'i64' });
  const targets = tensor([seq.slice(1)], { dtype: 'i64' });
  const lr = 0.5;
  const losses: number[] = [];
  let live = 0;
  for (let step = 0; step < 150; step++) {
    const loss = tidy(() => {
      const l = crossEntropy(model.forward(ids), targets);
      l.backward();
      noGrad(() => {
        for (const p of model.parameters()) addInPlace(p, p.grad as Tensor, -lr);
      });
      model.zeroGrad();
      return l.item();
    });
    losses.push(loss);
    if (step === 1) live = liveStorages();
    if (step > 1) assert.is(liveStorages(), live, `step ${step} leaks nothing`);
    if (loss < 0.05) break;
  }
  assert.ok(losses[0] > 3.5, `starts near ln(64) = 4.16: ${losses[0]}`);
  const last = losses[losses.length - 1];
  assert.ok(last < 0.05, `loss ${last} after ${losses.length} steps (from ${losses[0]})`);
  ids.dispose();
  targets.dispose();
  model.dispose();
});

test.run();
