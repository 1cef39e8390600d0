/**
 * batchNorm2dRelu and BatchNorm2d.forward(x, { relu: true, residual }) on the CPU: the separate
 * ops (batchNorm2d, add, relu), so values and gradients are bit for bit theirs, NCHW and
 * channels-last; bad arguments are errors naming what is wrong. (The CUDA fused kernels:
 * cuda_bn_relu.test.ts.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, batchNorm2d, batchNorm2dRelu, manualSeed, nn, noGrad, randn, relu, type Tensor } from '../../src/index.ts';
import { assertSameBits } from '../helpers/bits.ts';


const same = assertSameBits;

for (const last of [false, true]) {
  test(`CPU ${last ? 'channels-last' : 'NCHW'}: relu(batchNorm2d(x) + residual), values and gradients`, () => {
    manualSeed(1);
    const img = () => noGrad(() => (last ? randn([3, 5, 6, 4]).permute([0, 3, 1, 2]) : randn([3, 4, 5, 6])));
    const [x0, r0, g] = [img(), img(), img()];
    const w0 = randn([4]);
    const b0 = randn([4]);
    const leaves = () => [x0, r0, w0, b0].map((t) => noGrad(() => t.clone()).requiresGrad_(true));
    const [x1, r1, w1, b1] = leaves();
    const [x2, r2, w2, b2] = leaves();
    const y1 = batchNorm2dRelu(x1, null, null, w1, b1, { training: true, residual: r1 });
    const y2 = relu(add(batchNorm2d(x2, null, null, w2, b2, { training: true }), r2));
    same('output', y1, y2);
    y1.backward(g);
    y2.backward(g);
    for (const [name, a, b] of [['x', x1, x2], ['residual', r1, r2], ['weight', w1, w2], ['bias', b1, b2]] as const) {
      same(`${name} gradient`, a.grad as Tensor, b.grad as Tensor);
    }
  });
}

test('BatchNorm2d.forward with { relu: true } equals relu(forward), and updates the same running statistics', () => {
  manualSeed(2);
  const a = new nn.BatchNorm2d(4);
  const b = new nn.BatchNorm2d(4);
  const x = randn([2, 4, 3, 3]);
  same('output', a.forward(x, { relu: true }), relu(b.forward(x)));
  same('running mean', a.runningMean as Tensor, b.runningMean as Tensor);
  assert.is((a.numBatchesTracked as Tensor).item(), 1);
});

test('bad arguments name what is wrong', () => {
  const bn = new nn.BatchNorm2d(4);
  const x = randn([2, 4, 3, 3]);
  assert.throws(() => bn.forward(x, { relu: false } as never), /BatchNorm2d\.forward: the second argument must be \{ relu: true, residual\? \}/);
  assert.throws(() => batchNorm2dRelu(x, null, null, null, null, { training: true, residual: randn([2, 4, 3, 2]) }), /add/);
  assert.throws(() => batchNorm2dRelu(x, null, null, null, null, undefined as never), /training: true \| false/);
});

test.run();
