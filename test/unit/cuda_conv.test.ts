/**
 * ResNet's image ops on CUDA against the CPU: conv2d (cuDNN for f32/bf16/f16, the direct kernels
 * for f64 and under MESHTRAIN_CUDA_CONV=direct), batchNorm2d (training with the running-statistics
 * update, evaluation), maxPool2d and adaptiveAvgPool2d — values and input gradients of
 * sum(f(x) * w), w random, from the same inputs, NCHW and channels-last. Tolerances relative to
 * the largest CPU value: f64 1e-12, f32 1e-5 (conv 2e-5: another summation order), bf16/f16 1e-2.
 * Repeated runs of the batch norm and pooling kernels (their reductions have a fixed order) are
 * bit-identical. Without a usable device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  adaptiveAvgPool2d, batchNorm2d, conv2d, cudaIsAvailable, cudaLibraries, type DType, maxPool2d, mul, native, noGrad, ones, randn, sum,
  type Tensor, tidy, zeros,
} from '../../src/index.ts';
import { DEV, maxRelErr, onDevice, parity, TOL } from '../helpers/cuda_parity.ts';

const flat = (t: Tensor): number[] => t.to('cpu').contiguous().toList();

/** A [N, C, H, W] input, channels-last when asked (a permuted view made contiguous). */
function image(shape: number[], dtype: DType, channelsLast = false): Tensor {
  const [N, C, H, W] = shape;
  const x = channelsLast
    ? noGrad(() => randn([N, H, W, C], { dtype }).permute([0, 3, 1, 2]))
    : randn(shape, { dtype });
  return x.requiresGrad_(true);
}

test('cudaLibraries reports cuDNN as found (path, version) or missing with the reason', () => {
  const r = cudaLibraries() as unknown as Record<string, { found: boolean; path?: string; version?: string; error?: string }>;
  assert.ok(r.cudnn, 'no cudnn entry');
  if (r.cudnn.found) assert.match(r.cudnn.version ?? '', /^\d+\.\d+\.\d+$/);
  else assert.match(r.cudnn.error ?? '', /missing libcudnn/);
});

if (!cudaIsAvailable()) {
  test('CUDA conv, batch norm and pooling', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_conv: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  // [name, x shape, weight shape, stride, padding, bias, channels-last input]
  const convCases: [string, number[], number[], number, number, boolean, boolean][] = [
    ['3x3 pad 1', [2, 8, 9, 9], [16, 8, 3, 3], 1, 1, false, true],
    ['3x3 stride 2 pad 1, bias', [2, 8, 9, 10], [12, 8, 3, 3], 2, 1, true, true],
    ['1x1', [3, 16, 5, 5], [8, 16, 1, 1], 1, 0, false, true],
    ['1x1 stride 2 (downsample)', [2, 16, 6, 6], [32, 16, 1, 1], 2, 0, false, true],
    ['7x7 stride 2 pad 3 (stem), NCHW input', [2, 3, 20, 20], [8, 3, 7, 7], 2, 3, false, false],
    ['5x3 kernel, bias, NCHW input', [1, 4, 7, 9], [6, 4, 5, 3], 1, 0, true, false],
  ];
  const conv = (stride: number, padding: number) => (x: Tensor, w: Tensor, b?: Tensor) => conv2d(x, w, b ?? null, { stride, padding });

  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    test(`conv2d on CUDA equals the CPU, ${dtype}`, () => {
      for (const [name, xs, ws, stride, pad, bias, last] of convCases) {
        const tol = dtype === 'f32' ? 2e-5 : undefined;
        parity(`conv2d ${name}`, conv(stride, pad), () => {
          const ins = [image(xs, dtype, last), randn(ws, { dtype, std: 0.3, requiresGrad: true })];
          if (bias) ins.push(randn([ws[0]], { dtype: dtype === 'f64' ? 'f64' : 'f32', requiresGrad: true }));
          return ins;
        }, tol);
      }
    });
  }

  if (!(cudaLibraries() as unknown as Record<string, { found: boolean }>).cudnn.found) {
    test('conv2d without libcudnn: f32 names the missing library, f64 (direct kernels) still runs', () => {
      tidy(() => {
        const x = randn([1, 2, 4, 4]).to(DEV);
        const w = randn([3, 2, 3, 3]).to(DEV);
        assert.throws(() => conv2d(x, w), /conv2dForward on CUDA needs cuDNN for f32: missing libcudnn/);
        assert.equal(conv2d(x.to('f64'), w.to('f64')).shape, [1, 3, 2, 2]);
      });
    });
  }

  test('conv2d: the direct kernels (MESHTRAIN_CUDA_CONV=direct) equal the CPU in f32', () => {
    process.env.MESHTRAIN_CUDA_CONV = 'direct';
    try {
      for (const [name, xs, ws, stride, pad, bias, last] of convCases) {
        parity(`conv2d direct ${name}`, conv(stride, pad), () => {
          const ins = [image(xs, 'f32', last), randn(ws, { std: 0.3, requiresGrad: true })];
          if (bias) ins.push(randn([ws[0]], { requiresGrad: true }));
          return ins;
        }, 2e-5);
      }
    } finally {
      delete process.env.MESHTRAIN_CUDA_CONV;
    }
  });

  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    test(`batchNorm2d on CUDA equals the CPU (training, running statistics, evaluation), ${dtype}`, () => {
      const S: DType = dtype === 'f64' ? 'f64' : 'f32';
      for (const last of [false, true]) {
        const layout = last ? 'channels-last' : 'NCHW';
        const stats = () => [zeros([6], { dtype: S }), ones([6], { dtype: S })];
        const cpuStats = stats();
        const gpuStats = cpuStats.map((t) => t.to(DEV));
        const train = (stat: Tensor[]) => (x: Tensor, w: Tensor, b: Tensor) => batchNorm2d(x, stat[0], stat[1], w, b, { training: true, momentum: 0.2 });
        // One function, two devices: each updates its own copy of the running statistics.
        parity(`batchNorm2d training ${layout}`, (x, w, b) => train(x.device === 'cpu' ? cpuStats : gpuStats)(x, w, b), () => [
          image([4, 6, 5, 3], dtype, last),
          randn([6], { dtype: S, requiresGrad: true }),
          randn([6], { dtype: S, requiresGrad: true }),
        ]);
        for (let i = 0; i < 2; i++) {
          const e = maxRelErr(flat(gpuStats[i]), flat(cpuStats[i]));
          assert.ok(e <= TOL[S], `batchNorm2d ${dtype} ${layout}: running ${i ? 'var' : 'mean'} differs by ${e}`);
        }
        parity(`batchNorm2d evaluation ${layout}`, (x, w, b) => {
          const st = x.device === 'cpu' ? cpuStats : gpuStats;
          return batchNorm2d(x, st[0], st[1], w, b, { training: false });
        }, () => [image([2, 6, 4, 4], dtype, last), randn([6], { dtype: S, requiresGrad: true }), randn([6], { dtype: S, requiresGrad: true })]);
      }
    });

    test(`maxPool2d and adaptiveAvgPool2d on CUDA equal the CPU, ${dtype}`, () => {
      for (const last of [false, true]) {
        const layout = last ? 'channels-last' : 'NCHW';
        parity(`maxPool2d 3/2 pad 1 ${layout}`, (x) => maxPool2d(x, 3, { stride: 2, padding: 1 }), () => [image([2, 5, 9, 8], dtype, last)]);
        parity(`maxPool2d 2x2 ${layout}`, (x) => maxPool2d(x, 2), () => [image([2, 3, 6, 6], dtype, last)]);
        parity(`adaptiveAvgPool2d 1 ${layout}`, (x) => adaptiveAvgPool2d(x, 1), () => [image([3, 7, 4, 5], dtype, last)]);
        parity(`adaptiveAvgPool2d 3x2 (overlapping bins) ${layout}`, (x) => adaptiveAvgPool2d(x, [3, 2]), () => [image([2, 4, 7, 5], dtype, last)]);
      }
    });
  }

  test('batch norm and pooling kernels are deterministic: repeated runs are bit-identical', () => {
    tidy(() => {
      const x = onDevice(image([8, 16, 12, 12], 'f32', true));
      const w = onDevice(randn([16], { requiresGrad: true }));
      const b = onDevice(randn([16], { requiresGrad: true }));
      const g = randn([8, 16, 6, 6]).to(DEV);
      const once = () => {
        for (const t of [x, w, b]) t.grad = null;
        const y = maxPool2d(batchNorm2d(x, null, null, w, b, { training: true }), 3, { stride: 2, padding: 1 });
        const z = adaptiveAvgPool2d(y, [6, 6]);
        sum(mul(z, g)).backward();
        return [z, x.grad, w.grad, b.grad].map((t) => flat(t as Tensor));
      };
      const first = once();
      const second = once();
      first.forEach((v, i) => assert.equal(second[i], v, `output ${i} changed between runs`));
    });
  });
}

test.run();
