/**
 * batchNorm2dRelu on CUDA (native flag batchNormRelu): ResNet's ReLU, and the residual added
 * before it, fused into batch norm's launches. Bit for bit the separate ops (the flag masked:
 * batchNorm2d, add, relu), f32/bf16/f16, NCHW and channels-last, on shapes that take each of batch
 * norm's tilings (cuda_bn_pool_tiles): the output, the running statistics, and the gradients of x,
 * weight, bias and the residual, training and evaluation. Per fused call, forward and backward
 * queue batch norm's launches and nothing else (6 training, 5 evaluating; the separate ops 2 more,
 * 4 with a residual leaf). A
 * residual in another layout than x's takes the separate ops. Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  batchNorm2dRelu, censusTotals, cudaCensus, cudaIsAvailable, type DType, mul, native, noGrad, rand, randn, sum, type Tensor,
} from '../../src/index.ts';
import { assertSameBits } from '../helpers/bits.ts';

const DEV = 'cuda:0';
const cuda = native.cuda as Record<string, unknown>;

const same = assertSameBits;

/** A copy of t in t's layout (clone() is NCHW-contiguous; channels-last stays channels-last here). */
function copyOf(t: Tensor): Tensor {
  const last = t.ndim === 4 && !t.isContiguous;
  return noGrad(() => (last ? t.permute([0, 2, 3, 1]).clone().permute([0, 3, 1, 2]) : t.clone()));
}

/** [N, C, H, W] on the device, channels-last (a permuted [N, H, W, C]) when asked. */
function image(shape: number[], dtype: DType, last: boolean): Tensor {
  const [N, C, H, W] = shape;
  return noGrad(() => (last ? randn([N, H, W, C], { dtype, device: DEV }).permute([0, 3, 1, 2]) : randn(shape, { dtype, device: DEV })));
}

interface Inputs {
  x: Tensor;
  w: Tensor;
  b: Tensor;
  r: Tensor | null;
  g: Tensor;
  stats: Tensor[];
}

function inputs(shape: number[], dtype: DType, last: boolean, residual: boolean): Inputs {
  const C = shape[1];
  return noGrad(() => ({
    x: image(shape, dtype, last),
    // Weights around 1 and biases of either sign: about half the outputs are cut by the ReLU.
    w: randn([C], { device: DEV }).mul(0.5).add(1).to(dtype),
    b: randn([C], { device: DEV }).mul(0.5).to(dtype),
    r: residual ? image(shape, dtype, last) : null,
    g: image(shape, dtype, last),
    stats: [randn([C], { device: DEV }).mul(0.1), rand([C], { device: DEV }).add(0.5)],
  }));
}

interface Result {
  out: Tensor[];
  deviceOps: number;
}

/** One call's output, running statistics after it and gradients, fused (flag) or as separate ops; leaves are fresh copies. */
function run(a: Inputs, training: boolean, flag: boolean): Result {
  const saved = cuda.batchNormRelu;
  cuda.batchNormRelu = flag ? saved : false;
  try {
    const leaf = (t: Tensor) => copyOf(t).requiresGrad_(true);
    const [x, w, b] = [leaf(a.x), leaf(a.w), leaf(a.b)];
    const r = a.r ? leaf(a.r) : null;
    const [rm, rv] = a.stats.map((t) => noGrad(() => t.clone()));
    const { result: y, entries } = cudaCensus(() => {
      const out = batchNorm2dRelu(x, rm, rv, w, b, { training, residual: r });
      out.backward(a.g);
      return out;
    });
    const grads = [x, w, b, ...(r ? [r] : [])].map((t) => t.grad as Tensor);
    return { out: [y, rm, rv, ...grads], deviceOps: censusTotals(entries).deviceOps };
  } finally {
    cuda.batchNormRelu = saved;
  }
}

const NAMES = ['output', 'running mean', 'running variance', 'x gradient', 'weight gradient', 'bias gradient', 'residual gradient'];

if (!cudaIsAvailable()) {
  test('CUDA batch norm with the ReLU fused', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_bn_relu: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('the addon fuses the ReLU into batch norm (batchNormRelu)', () => {
    assert.is(cuda.batchNormRelu, true);
  });

  // [name, shape, channels-last]: batch norm's tilings (cuda_bn_pool_tiles), each layout.
  const cases: [string, number[], boolean][] = [
    ['H·W 400 (one channel per block)', [2, 3, 20, 20], false],
    ['H·W 16, two chunks, a half-empty channel group', [300, 5, 4, 4], false],
    ['H·W 9, several channels per row', [40, 7, 3, 3], false],
    ['H·W 49', [4, 6, 7, 7], false],
    ['channels-last, 40 channels (groups of 32), two chunks', [16, 40, 5, 5], true],
    ['channels-last, 3 channels', [8, 3, 10, 10], true],
  ];
  for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
    test(`${dtype}: fused equals batchNorm2d, add, relu bit for bit (each tiling, both layouts, training and evaluation)`, () => {
      for (const [name, shape, last] of cases) {
        for (const residual of [false, true]) {
          for (const training of [true, false]) {
            // Evaluation and the ReLU without a residual run on two cases: they repeat the other paths.
            if ((!training || !residual) && !name.startsWith('H·W 16') && !name.startsWith('channels-last, 40')) continue;
            const a = inputs(shape, dtype, last, residual);
            const fused = run(a, training, true);
            const plain = run(a, training, false);
            const what = `${name} ${dtype}${residual ? ' + residual' : ''} ${training ? 'training' : 'evaluation'}`;
            fused.out.forEach((t, i) => same(`${what}: ${NAMES[i]}`, t, plain.out[i]));
            // Batch norm's own launches (no moments pass when evaluating); the separate ops add a ReLU
            // forward and backward and the residual add, and copy the masked gradient that both the
            // residual leaf and batch norm take (the fused backward writes the leaf's its own).
            assert.is(fused.deviceOps, training ? 6 : 5, `${what}: fused device ops`);
            assert.is(plain.deviceOps, fused.deviceOps + (residual ? 4 : 2), `${what}: separate ops' device ops`);
          }
        }
      }
    });
  }

  test('the output keeps x layout; a residual in another layout takes the separate ops, same values', () => {
    const a = inputs([4, 6, 5, 5], 'bf16', true, true);
    const nchw = noGrad(() => (a.r as Tensor).contiguous());
    const fused = run(a, true, true);
    const y = fused.out[0];
    assert.equal(y.strides, a.x.strides, 'channels-last output');
    const mixed = run({ ...a, r: nchw }, true, true);
    assert.ok(mixed.deviceOps > fused.deviceOps + 2, `separate ops for a residual in another layout: ${mixed.deviceOps} device ops`);
    fused.out.forEach((t, i) => same(`mixed layouts: ${NAMES[i]}`, mixed.out[i], t));
  });

  test('fused with batchNormAffine16 masked (f32 copies of 16-bit weights, the counter apart) still equals the separate ops', () => {
    const a = inputs([6, 40, 3, 3], 'bf16', true, true);
    const plain = run(a, true, false);
    const saved = cuda.batchNormAffine16;
    cuda.batchNormAffine16 = false;
    try {
      const fused = run(a, true, true);
      fused.out.forEach((t, i) => same(`affine16 masked: ${NAMES[i]}`, t, plain.out[i]));
    } finally {
      cuda.batchNormAffine16 = saved;
    }
  });

  test('a gradient only for the residual, or none for it', () => {
    const a = inputs([3, 5, 4, 6], 'f32', false, true);
    const residualGrad = (flag: boolean) => {
      const saved = cuda.batchNormRelu;
      cuda.batchNormRelu = flag ? saved : false;
      try {
        const r = copyOf(a.r as Tensor).requiresGrad_(true);
        batchNorm2dRelu(a.x, null, null, a.w, a.b, { training: true, residual: r }).backward(a.g);
        return r.grad as Tensor;
      } finally {
        cuda.batchNormRelu = saved;
      }
    };
    same('residual gradient alone', residualGrad(true), residualGrad(false));
    const x = copyOf(a.x).requiresGrad_(true);
    sum(mul(batchNorm2dRelu(x, null, null, a.w, a.b, { training: true, residual: a.r }), a.g)).backward();
    assert.ok(x.grad, 'x gradient without one for the residual');
  });
}

test.run();
