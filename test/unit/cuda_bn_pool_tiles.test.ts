/**
 * The tilings of the CUDA batch norm (batchnorm.cu: per-chunk partials, a per-channel finish,
 * an apply pass) and the max-pool backward gather (pool.cu) against the CPU, on shapes that take
 * each path: H·W above 256 (one channel per block, threads stepping through rows), several row
 * chunks with a short last one, channel groups the channel count does not fill (H·W of 16 and 9:
 * several channels per row of lanes), H·W of 49, and channels-last with many rows. Pooling:
 * overlapping windows (3 stride 1), gaps between windows (2 stride 3, some inputs in no window),
 * and ties (a constant input: every window's argmax its first element, gathered from several
 * windows). Values, input/weight/bias gradients and running statistics; tolerances relative to
 * the largest CPU value: f64 1e-12, f32 1e-5, bf16 1e-2. Repeated runs are bit-identical.
 * Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  batchNorm2d, cudaIsAvailable, type DType, maxPool2d, mul, native, noGrad, ones, randn, sum, type Tensor, tidy, zeros,
} from '../../src/index.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';

const DEV = 'cuda:0';
const TOL: Record<string, number> = { f64: 1e-12, f32: 1e-5, bf16: 1e-2 };

const flat = (t: Tensor): number[] => t.to('cpu').contiguous().toList();
const toDev = (x: Tensor): Tensor => {
  const y = noGrad(() => x.to(DEV));
  return x.requiresGrad ? y.requiresGrad_(true) : y;
};

/** [N, C, H, W] from `fill`, channels-last (a permuted contiguous [N, H, W, C]) when asked. */
function image(shape: number[], dtype: DType, last: boolean, fill = randn): Tensor {
  const [N, C, H, W] = shape;
  const x = last ? noGrad(() => fill([N, H, W, C], { dtype }).permute([0, 3, 1, 2])) : fill(shape, { dtype });
  return x.requiresGrad_(true);
}

/** f on both devices from the same inputs: outputs and the gradients of sum(f(x) * g) agree. */
function parity(name: string, f: (xs: Tensor[]) => Tensor, inputs: Tensor[], tol: number): void {
  const gpuIn = inputs.map(toDev);
  const cpuOut = f(inputs);
  const gpuOut = f(gpuIn);
  assert.ok(maxRelErr(flat(gpuOut), flat(cpuOut)) <= tol, `${name}: output differs by ${maxRelErr(flat(gpuOut), flat(cpuOut))}`);
  const g = randn([...cpuOut.shape], { dtype: cpuOut.dtype });
  sum(mul(cpuOut, g)).backward();
  sum(mul(gpuOut, toDev(g))).backward();
  inputs.forEach((x, i) => {
    const e = maxRelErr(flat(gpuIn[i].grad as Tensor), flat(x.grad as Tensor));
    assert.ok(e <= tol, `${name}: gradient of input ${i} differs by ${e} (tolerance ${tol})`);
  });
}

if (!cudaIsAvailable()) {
  test('CUDA batch norm and pooling tilings', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_bn_pool_tiles: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  // [name, shape, channels-last]
  const bnCases: [string, number[], boolean][] = [
    ['H·W 400 (one channel per block)', [2, 3, 20, 20], false],
    ['H·W 16, two chunks, a half-empty channel group', [300, 5, 4, 4], false],
    ['H·W 9, two chunks', [700, 7, 3, 3], false],
    ['H·W 49', [4, 6, 7, 7], false],
    ['channels-last, 40 channels (groups of 32), many chunks', [16, 40, 12, 12], true],
    ['channels-last, 3 channels', [8, 3, 10, 10], true],
  ];
  for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
    test(`batchNorm2d tilings equal the CPU (training, running statistics, evaluation), ${dtype}`, () => {
      const S: DType = dtype === 'f64' ? 'f64' : 'f32';
      for (const [name, shape, last] of bnCases) {
        // bf16 runs only the two largest cases: the rest repeat f32's paths.
        if (dtype === 'bf16' && !name.startsWith('channels-last, 40') && !name.startsWith('H·W 16')) continue;
        tidy(() => {
          const C = shape[1];
          const cpuStats = [randn([C], { dtype: S }), ones([C], { dtype: S })];
          const gpuStats = cpuStats.map((t) => t.to(DEV));
          const stats = (x: Tensor) => (x.device === 'cpu' ? cpuStats : gpuStats);
          const wb = () => [randn([C], { dtype: S, requiresGrad: true }), randn([C], { dtype: S, requiresGrad: true })];
          parity(`${name} training ${dtype}`, ([x, w, b]) => batchNorm2d(x, stats(x)[0], stats(x)[1], w, b, { training: true, momentum: 0.3 }),
            [image(shape, dtype, last), ...wb()], TOL[dtype]);
          for (let i = 0; i < 2; i++) {
            const e = maxRelErr(flat(gpuStats[i]), flat(cpuStats[i]));
            assert.ok(e <= TOL[S], `${name} ${dtype}: running ${i ? 'var' : 'mean'} differs by ${e}`);
          }
          parity(`${name} evaluation ${dtype}`, ([x, w, b]) => batchNorm2d(x, stats(x)[0], stats(x)[1], w, b, { training: false }),
            [image(shape, dtype, last), ...wb()], TOL[dtype]);
        });
      }
    });
  }

  // [name, shape, kernel, stride, padding]
  const poolCases: [string, number[], number, number, number][] = [
    ['3 stride 1 pad 1 (windows overlap)', [2, 6, 7, 9], 3, 1, 1],
    ['2 stride 3 (gaps between windows)', [2, 5, 8, 10], 2, 3, 0],
    ['3 stride 2 pad 1 (ResNet stem)', [3, 4, 11, 11], 3, 2, 1],
  ];
  for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
    test(`maxPool2d backward gathers equal the CPU's scatter, ${dtype}`, () => {
      for (const [name, shape, k, stride, padding] of poolCases) {
        for (const last of [false, true]) {
          for (const fill of [randn, zeros]) {
            tidy(() => {
              const what = `maxPool2d ${name} ${last ? 'channels-last' : 'NCHW'} ${fill === zeros ? 'ties' : 'random'} ${dtype}`;
              parity(what, ([x]) => maxPool2d(x, k, { stride, padding }), [image(shape, dtype, last, fill)], TOL[dtype]);
            });
          }
        }
      }
    });
  }

  test('batch norm over many chunks and the pooling gather are bit-identical run to run', () => {
    tidy(() => {
      const x = toDev(image([16, 40, 12, 12], 'f32', true));
      const w = toDev(randn([40], { requiresGrad: true }));
      const b = toDev(randn([40], { requiresGrad: true }));
      const g = randn([16, 40, 12, 12]).to(DEV);
      const once = () => {
        for (const t of [x, w, b]) t.grad = null;
        const y = maxPool2d(batchNorm2d(x, null, null, w, b, { training: true }), 3, { stride: 1, padding: 1 });
        sum(mul(y, g)).backward();
        return [y, x.grad, w.grad, b.grad].map((t) => flat(t as Tensor));
      };
      const first = once();
      const second = once();
      first.forEach((v, i) => assert.equal(second[i], v, `output ${i} changed between runs`));
    });
  });
}

test.run();
