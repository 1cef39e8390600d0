/**
 * The golden ResNet-style network (test/fixtures/convnet_tiny.json) built from our layers
 * (Conv2d, BatchNorm2d, MaxPool2d, AdaptiveAvgPool2d, Linear) and loaded with loadStateDict:
 * loss, every gradient and BatchNorm's running statistics against PyTorch (f64 1e-9, f32 1e-4
 * relative to each tensor's largest entry).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, crossEntropy, type DType, flatten, Module, nn, relu, type Tensor, tensor, tidy } from '../../src/index.ts';
import { loadConvnetGolden } from '../helpers/convnet_golden.ts';

const golden = loadConvnetGolden();

/** Stem (conv, BN, ReLU, max-pool), one bottleneck with a projection shortcut, pool, linear. */
class TinyConvNet extends Module {
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly pool: nn.MaxPool2d;
  readonly b_conv1: nn.Conv2d;
  readonly b_bn1: nn.BatchNorm2d;
  readonly b_conv2: nn.Conv2d;
  readonly b_bn2: nn.BatchNorm2d;
  readonly b_conv3: nn.Conv2d;
  readonly b_bn3: nn.BatchNorm2d;
  readonly b_down_conv: nn.Conv2d;
  readonly b_down_bn: nn.BatchNorm2d;
  readonly gap: nn.AdaptiveAvgPool2d;
  readonly fc: nn.Linear;

  constructor(dtype: DType) {
    super();
    const conv = (name: string, cin: number, cout: number, k: number, stride = 1, padding = 0) =>
      this.registerModule(name, new nn.Conv2d(cin, cout, k, { stride, padding, bias: false, dtype }));
    const bn = (name: string, c: number) => this.registerModule(name, new nn.BatchNorm2d(c, { dtype }));
    this.conv1 = conv('conv1', 3, 8, 3, 1, 1);
    this.bn1 = bn('bn1', 8);
    this.pool = this.registerModule('pool', new nn.MaxPool2d(3, { stride: 2, padding: 1 }));
    this.b_conv1 = conv('b_conv1', 8, 4, 1);
    this.b_bn1 = bn('b_bn1', 4);
    this.b_conv2 = conv('b_conv2', 4, 4, 3, 2, 1);
    this.b_bn2 = bn('b_bn2', 4);
    this.b_conv3 = conv('b_conv3', 4, 16, 1);
    this.b_bn3 = bn('b_bn3', 16);
    this.b_down_conv = conv('b_down_conv', 8, 16, 1, 2);
    this.b_down_bn = bn('b_down_bn', 16);
    this.gap = this.registerModule('gap', new nn.AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new nn.Linear(16, 5, { dtype }));
  }

  override forward(x: Tensor): Tensor {
    const h = this.pool.forward(relu(this.bn1.forward(this.conv1.forward(x))));
    let b = relu(this.b_bn1.forward(this.b_conv1.forward(h)));
    b = relu(this.b_bn2.forward(this.b_conv2.forward(b)));
    b = this.b_bn3.forward(this.b_conv3.forward(b));
    const shortcut = this.b_down_bn.forward(this.b_down_conv.forward(h));
    return this.fc.forward(flatten(this.gap.forward(relu(add(b, shortcut))), 1));
  }
}

/** Largest |got − want| relative to the largest |want| of the tensor. */
function relErr(got: ArrayLike<number>, want: number[]): number {
  assert.is(got.length, want.length);
  let scale = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    m = Math.max(m, Math.abs(got[i] - want[i]));
  }
  return m / scale;
}

function check(dtype: DType, tol: number): void {
  const model = new TinyConvNet(dtype);
  tidy(() => {
    const sd = Object.fromEntries(Object.entries(golden.weights).map(([k, w]) => [k, tensor(w.data, { shape: w.shape, dtype })]));
    // The file holds parameters only: the running statistics keep their initial values.
    const { missingKeys, unexpectedKeys } = model.loadStateDict(sd, { strict: false });
    assert.equal(unexpectedKeys, []);
    assert.ok(missingKeys.every((k) => /\.(running_mean|running_var|num_batches_tracked)$/.test(k)), missingKeys.join());
    assert.is(missingKeys.length, 15);
    const x = tensor(golden.inputs, { shape: golden.input_shape, dtype });
    const loss = crossEntropy(model.forward(x), tensor(golden.labels, { dtype: 'i64' }));
    assert.ok(Math.abs(loss.item() - golden.loss) <= tol * Math.abs(golden.loss), `${dtype} loss ${loss.item()} vs ${golden.loss}`);
    loss.backward();
  });
  const state = model.stateDict();
  for (const [name, want] of Object.entries(golden.grads)) {
    const g = state[name].grad;
    assert.ok(g, `${name} has a gradient`);
    const e = relErr(g.toList(), want);
    assert.ok(e <= tol, `${dtype} gradient of ${name}: relative error ${e}`);
  }
  for (const [name, want] of Object.entries(golden.running_stats_after_forward)) {
    const e = relErr(state[name].toList(), want);
    assert.ok(e <= tol, `${dtype} ${name}: relative error ${e}`);
  }
  assert.is(model.bn1.numBatchesTracked?.item(), 1);
  model.dispose();
}

test('convnet from layers matches PyTorch in f64: loss, every gradient, running stats (1e-9 relative)', () => {
  check('f64', 1e-9);
});

test('convnet from layers matches PyTorch in f32 (1e-4 relative)', () => {
  check('f32', 1e-4);
});

test.run();
