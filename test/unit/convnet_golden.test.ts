/**
 * A tiny ResNet-style network built from the ops, checked against PyTorch 1.13 (float64):
 * the loss, every parameter gradient and the running statistics after one training forward.
 * See /work/shared/reference/pytorch-golden/README.md for the network; the JSON is a copy.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  adaptiveAvgPool2d, add, batchNorm2d, conv2d, crossEntropy, type DType, flatten, linear, maxPool2d, noGrad, ones, relu,
  type Tensor, tensor, tidy, zeros,
} from '../../src/index.ts';
import { loadConvnetGolden } from '../helpers/convnet_golden.ts';

const golden = loadConvnetGolden();

const BNS = ['bn1', 'b_bn1', 'b_bn2', 'b_bn3', 'b_down_bn'];

function run(dtype: DType) {
  const p: Record<string, Tensor> = {};
  for (const [name, w] of Object.entries(golden.weights)) p[name] = tensor(w.data, { shape: w.shape, dtype, requiresGrad: true });
  const stats: Record<string, Tensor> = {};
  for (const bn of BNS) {
    const C = golden.weights[`${bn}.weight`].shape[0];
    stats[`${bn}.running_mean`] = zeros([C], { dtype });
    stats[`${bn}.running_var`] = ones([C], { dtype });
  }
  const bn = (x: Tensor, name: string) =>
    batchNorm2d(x, stats[`${name}.running_mean`], stats[`${name}.running_var`], p[`${name}.weight`], p[`${name}.bias`], { training: true });
  const x = tensor(golden.inputs, { shape: golden.input_shape, dtype });

  let h = relu(bn(conv2d(x, p['conv1.weight'], null, { padding: 1 }), 'bn1'));
  h = maxPool2d(h, 3, { stride: 2, padding: 1 });
  let b = relu(bn(conv2d(h, p['b_conv1.weight']), 'b_bn1'));
  b = relu(bn(conv2d(b, p['b_conv2.weight'], null, { stride: 2, padding: 1 }), 'b_bn2'));
  b = bn(conv2d(b, p['b_conv3.weight']), 'b_bn3');
  const shortcut = bn(conv2d(h, p['b_down_conv.weight'], null, { stride: 2 }), 'b_down_bn');
  const y = relu(add(b, shortcut));
  const logits = linear(flatten(adaptiveAvgPool2d(y, 1), 1), p['fc.weight'], p['fc.bias']);
  const loss = crossEntropy(logits, tensor(golden.labels, { dtype: 'i64' }));
  loss.backward();
  return { loss: loss.item(), p, stats };
}

/** Largest |got − want| relative to the largest |want| of the tensor. */
function relErr(got: ArrayLike<number>, want: number[]): number {
  assert.is(got.length, want.length);
  const scale = Math.max(...want.map(Math.abs));
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]));
  return m / scale;
}

function check(dtype: DType, tol: number): void {
  tidy(() => {
    const { loss, p, stats } = run(dtype);
    assert.ok(Math.abs(loss - golden.loss) <= tol * Math.abs(golden.loss), `${dtype} loss ${loss} vs ${golden.loss}`);
    for (const [name, want] of Object.entries(golden.grads)) {
      const g = p[name].grad;
      assert.ok(g, `${name} has a gradient`);
      const e = relErr((g as Tensor).toList(), want);
      assert.ok(e <= tol, `${dtype} gradient of ${name}: relative error ${e}`);
    }
    for (const [name, want] of Object.entries(golden.running_stats_after_forward)) {
      const e = noGrad(() => relErr(stats[name].toList(), want));
      assert.ok(e <= tol, `${dtype} ${name}: relative error ${e}`);
    }
    for (const t of Object.values(p)) t.grad?.dispose();
  });
}

test('convnet matches PyTorch in f64: loss, every gradient, running stats (1e-9 relative)', () => {
  check('f64', 1e-9);
});

test('convnet matches PyTorch in f32 (1e-4 relative)', () => {
  check('f32', 1e-4);
});

test.run();
