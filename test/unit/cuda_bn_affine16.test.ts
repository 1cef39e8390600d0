/**
 * CUDA batch norm reads bf16/f16 weight and bias as they are (no cast copies) and writes their
 * gradients in their dtype: outputs, input gradients and running statistics equal, bit for bit,
 * the same call with f32 copies of weight and bias, and the 16-bit weight and bias gradients equal
 * the f32 ones cast afterwards (rounded to f32 first, then to 16 bits: what the cast gave). NCHW
 * and channels-last, training and evaluation. The batch counter (numBatchesTracked, PyTorch's
 * num_batches_tracked) goes up by one per training call, on the device, and not when evaluating.
 * Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { batchNorm2d, cudaIsAvailable, type DType, mul, native, noGrad, ones, randn, sum, type Tensor, zeros } from '../../src/index.ts';

const DEV = 'cuda:0';
const bits = (t: Tensor): number[] => t.to('cpu').contiguous().toList() as number[];

/** The first index where a and b differ (Object.is: NaN equals NaN, -0 differs from 0), or -1. */
function firstDiff(a: number[], b: number[]): number {
  if (a.length !== b.length) return 0;
  return a.findIndex((v, i) => !Object.is(v, b[i]));
}

function same(what: string, got: Tensor, want: Tensor): void {
  const g = bits(got);
  const w = bits(want);
  const i = firstDiff(g, w);
  assert.is(i, -1, `${what}: element ${i} is ${g[i]}, want ${w[i]}`);
}

/** [N, C, H, W] on the device, channels-last (a permuted [N, H, W, C]) when asked. */
function image(dtype: DType, last: boolean): Tensor {
  const [N, C, H, W] = [3, 5, 4, 6];
  return noGrad(() => (last ? randn([N, H, W, C], { dtype, device: DEV }).permute([0, 3, 1, 2]) : randn([N, C, H, W], { dtype, device: DEV })));
}

if (!cudaIsAvailable()) {
  test('CUDA batch norm with 16-bit weight and bias', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_bn_affine16: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('the addon reads 16-bit weight and bias directly (batchNormAffine16)', () => {
    assert.is((native.cuda as Record<string, unknown>).batchNormAffine16, true);
  });

  for (const dtype of ['bf16', 'f16'] as const) {
    for (const last of [false, true]) {
      for (const training of [true, false]) {
        test(`${dtype} ${last ? 'channels-last' : 'NCHW'} ${training ? 'training' : 'evaluation'}: bit for bit the f32-weight call`, () => {
          const x = image(dtype, last);
          const g = noGrad(() => randn([...x.shape], { dtype, device: DEV }));
          const w16 = noGrad(() => randn([5], { device: DEV }).mul(0.5).add(1).to(dtype)).requiresGrad_(true);
          const b16 = noGrad(() => randn([5], { device: DEV }).to(dtype)).requiresGrad_(true);
          const w32 = noGrad(() => w16.to('f32')).requiresGrad_(true);
          const b32 = noGrad(() => b16.to('f32')).requiresGrad_(true);
          const stats = () => [noGrad(() => randn([5], { device: DEV }).mul(0.1)), noGrad(() => ones([5], { device: DEV }).add(0.5))];
          const [rm16, rv16] = stats();
          const rm32 = noGrad(() => rm16.clone());
          const rv32 = noGrad(() => rv16.clone());
          const x16 = x.clone().requiresGrad_(true);
          const x32 = x.clone().requiresGrad_(true);
          const y16 = batchNorm2d(x16, rm16, rv16, w16, b16, { training });
          const y32 = batchNorm2d(x32, rm32, rv32, w32, b32, { training });
          same('output', y16, y32);
          same('running mean', rm16, rm32);
          same('running variance', rv16, rv32);
          sum(mul(y16, g)).backward();
          sum(mul(y32, g)).backward();
          same('input gradient', x16.grad as Tensor, x32.grad as Tensor);
          assert.is((w16.grad as Tensor).dtype, dtype);
          same('weight gradient', w16.grad as Tensor, noGrad(() => (w32.grad as Tensor).to(dtype)));
          same('bias gradient', b16.grad as Tensor, noGrad(() => (b32.grad as Tensor).to(dtype)));
        });
      }
    }
  }

  test('numBatchesTracked counts training calls on the device, not evaluation', () => {
    const x = image('bf16', true);
    const rm = zeros([5], { device: DEV });
    const rv = ones([5], { device: DEV });
    const n = zeros([], { dtype: 'i64', device: DEV });
    const w = ones([5], { dtype: 'bf16', device: DEV });
    for (let k = 0; k < 3; k++) batchNorm2d(x, rm, rv, w, null, { training: true, numBatchesTracked: n }).dispose();
    batchNorm2d(x, rm, rv, w, null, { training: false, numBatchesTracked: n }).dispose();
    assert.is(n.item(), 3);
    assert.throws(
      () => batchNorm2d(x, rm, rv, w, null, { training: true, numBatchesTracked: zeros([2], { dtype: 'i64', device: DEV }) }),
      /numBatchesTracked must be one i64 value, got i64 \[2\]/,
    );
  });
}

test.run();
