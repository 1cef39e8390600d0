import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adaptiveAvgPool2d, batchNorm2d, maxPool2d, noGrad, ones, rand, randn, type Tensor, tensor, tidy, zeros } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf, maxAbsDiff } from '../helpers/gradcheck.ts';
import { toChannelsLast } from '../helpers/nchw.ts';

const at = (s: number[], n: number, c: number, h: number, w: number) => ((n * s[1] + c) * s[2] + h) * s[3] + w;

/** Plain-loop batch norm on an NCHW array; returns y and the batch mean / biased variance. */
function batchNormRef(
  x: number[], s: number[], w: number[] | null, b: number[] | null, stats: { mean: number[]; var: number[] } | null, eps: number,
) {
  const [N, C, H, W] = s;
  const M = N * H * W;
  const mean = new Array<number>(C).fill(0);
  const vr = new Array<number>(C).fill(0);
  for (let c = 0; c < C; c++) {
    for (let n = 0; n < N; n++) for (let h = 0; h < H; h++) for (let q = 0; q < W; q++) mean[c] += x[at(s, n, c, h, q)] / M;
    for (let n = 0; n < N; n++) for (let h = 0; h < H; h++) for (let q = 0; q < W; q++) vr[c] += (x[at(s, n, c, h, q)] - mean[c]) ** 2 / M;
  }
  const useMean = stats ? stats.mean : mean;
  const useVar = stats ? stats.var : vr;
  const y = x.map((v, i) => {
    const c = Math.floor(i / (H * W)) % C;
    return ((v - useMean[c]) / Math.sqrt(useVar[c] + eps)) * (w ? w[c] : 1) + (b ? b[c] : 0);
  });
  return { y, mean, var: vr, M };
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  const scale = Math.max(1, ...Array.from(b, Math.abs));
  const d = maxAbsDiff(a, b);
  assert.ok(d <= tol * scale, `${what}: max difference ${d}`);
};

for (const dtype of ['f64', 'f32'] as const) {
  deviceTest(`batchNorm2d training matches a plain loop and updates running stats (${dtype})`, (dev) => {
    const tol = dtype === 'f64' ? 1e-12 : 2e-6;
    tidy(() => {
      const shape = [3, 4, 5, 2];
      const x = randn(shape, { dtype, mean: 0.5, std: 2, device: dev });
      const w = randn([4], { dtype, device: dev });
      const b = randn([4], { dtype, device: dev });
      const rm0 = randn([4], { dtype, device: dev }).toList();
      const rv0 = rand([4], { dtype, low: 0.5, high: 2, device: dev }).toList();
      const ref = batchNormRef(x.toList(), shape, w.toList(), b.toList(), null, 1e-5);
      for (const input of [x, toChannelsLast(x)]) {
        const rm = tensor(rm0, { dtype, device: dev });
        const rv = tensor(rv0, { dtype, device: dev });
        const y = batchNorm2d(input, rm, rv, w, b, { training: true, momentum: 0.3 });
        assert.equal([...y.strides], [...input.strides], 'the output keeps the input layout');
        close(y.toList(), ref.y, tol, 'y');
        close(rm.toList(), rm0.map((v, c) => 0.7 * v + 0.3 * ref.mean[c]), tol, 'running mean');
        const unbiased = ref.var.map((v) => (v * ref.M) / (ref.M - 1));
        close(rv.toList(), rv0.map((v, c) => 0.7 * v + 0.3 * unbiased[c]), tol, 'running var (unbiased)');
      }
      // No affine parameters and no running statistics.
      const ref0 = batchNormRef(x.toList(), shape, null, null, null, 1e-3);
      close(batchNorm2d(x, null, null, null, null, { training: true, eps: 1e-3 }).toList(), ref0.y, tol, 'y without weight/bias');
    });
  });

  deviceTest(`batchNorm2d evaluation uses the running stats and leaves them alone (${dtype})`, (dev) => {
    const tol = dtype === 'f64' ? 1e-12 : 2e-6;
    tidy(() => {
      const shape = [2, 3, 4, 4];
      const x = randn(shape, { dtype, device: dev });
      const w = randn([3], { dtype, device: dev });
      const b = randn([3], { dtype, device: dev });
      const rm = randn([3], { dtype, device: dev });
      const rv = rand([3], { dtype, low: 0.5, high: 2, device: dev });
      const before = [rm.toList(), rv.toList()];
      const ref = batchNormRef(x.toList(), shape, w.toList(), b.toList(), { mean: before[0], var: before[1] }, 1e-5);
      close(batchNorm2d(x, rm, rv, w, b, { training: false }).toList(), ref.y, tol, 'eval y');
      close(batchNorm2d(toChannelsLast(x), rm, rv, w, b, { training: false }).toList(), ref.y, tol, 'eval y, channels-last');
      assert.equal([rm.toList(), rv.toList()], before);
    });
  });
}

deviceTest('batchNorm2d with bf16 input and f32 parameters and running stats', (dev) => {
  tidy(() => {
    const x = randn([4, 3, 4, 4], { device: dev });
    const rm = zeros([3], { device: dev });
    const rv = ones([3], { device: dev });
    const rm16 = zeros([3], { device: dev });
    const rv16 = ones([3], { device: dev });
    const w = randn([3], { device: dev });
    const want = batchNorm2d(x, rm, rv, w, null, { training: true });
    const got = batchNorm2d(x.to('bf16'), rm16, rv16, w, null, { training: true });
    assert.is(got.dtype, 'bf16');
    close(got.toList(), want.toList(), 2e-2, 'bf16 y');
    close(rm16.toList(), rm.toList(), 1e-2, 'bf16 running mean');
    close(rv16.toList(), rv.toList(), 1e-2, 'bf16 running var');
  });
});

deviceTest('batchNorm2d gradients (finite differences), training and evaluation, both layouts', (dev) => {
  tidy(() => {
    const rm = randn([3], { dtype: 'f64', device: dev });
    const rv = rand([3], { dtype: 'f64', low: 0.5, high: 2, device: dev });
    const train = (x: Tensor, w: Tensor, b: Tensor) => batchNorm2d(x, null, null, w, b, { training: true });
    const evalMode = (x: Tensor, w: Tensor, b: Tensor) => batchNorm2d(x, rm, rv, w, b, { training: false });
    gradcheck('batchNorm2d train', train, [leaf([2, 3, 3, 2], 1, dev), leaf([3], 1, dev), leaf([3], 1, dev)]);
    gradcheck('batchNorm2d eval', evalMode, [leaf([2, 3, 3, 2], 1, dev), leaf([3], 1, dev), leaf([3], 1, dev)]);
    const xl = toChannelsLast(randn([2, 3, 2, 3], { dtype: 'f64', device: dev }));
    xl.requiresGrad = true;
    gradcheck('batchNorm2d train, channels-last', train, [xl, leaf([3], 1, dev), leaf([3], 1, dev)]);
    gradcheck('batchNorm2d eval, channels-last', evalMode, [xl, leaf([3], 1, dev), leaf([3], 1, dev)]);
    gradcheck('batchNorm2d train, x only', (x) => batchNorm2d(x, rm.clone(), rv.clone(), null, null, { training: true }), [leaf([2, 3, 2, 2], 1, dev)]);
  });
});

test('batchNorm2d rejects bad inputs with errors naming the op and shapes', () => {
  tidy(() => {
    const x = randn([2, 3, 4, 4]);
    assert.throws(() => batchNorm2d(randn([2, 3, 4]), null, null, null, null, { training: true }), /batchNorm2d: x must be \[N, C, H, W\], got \[2, 3, 4\]/);
    assert.throws(() => batchNorm2d(x, null, null, randn([4]), null, { training: true }), /batchNorm2d: weight \[4\] should be \[3\] for x \[2, 3, 4, 4\]/);
    assert.throws(() => batchNorm2d(x, null, null, null, null, { training: false }), /batchNorm2d: evaluation \(training: false\) needs runningMean and runningVar/);
    assert.throws(() => batchNorm2d(randn([1, 3, 1, 1]), null, null, null, null, { training: true }), /batchNorm2d: training needs more than one value per channel, got x \[1, 3, 1, 1\]/);
    assert.throws(() => batchNorm2d(x, zeros([3]), null, null, null, { training: true }), /batchNorm2d: give both runningMean and runningVar/);
    assert.throws(() => batchNorm2d(x, null, null, randn([3], { dtype: 'f64' }), null, { training: true }), /batchNorm2d: weight is f64, x is f32/);
  });
});

/** Plain-loop max pool (padding as -inf) on an NCHW array. */
function maxPoolRef(x: number[], s: number[], k: [number, number], st: [number, number], p: [number, number]) {
  const [N, C, H, W] = s;
  const OH = Math.floor((H + 2 * p[0] - k[0]) / st[0]) + 1;
  const OW = Math.floor((W + 2 * p[1] - k[1]) / st[1]) + 1;
  const out: number[] = [];
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let m = -Infinity;
          for (let i = 0; i < k[0]; i++)
            for (let j = 0; j < k[1]; j++) {
              const h = oh * st[0] - p[0] + i;
              const w = ow * st[1] - p[1] + j;
              if (h >= 0 && h < H && w >= 0 && w < W) m = Math.max(m, x[at(s, n, c, h, w)]);
            }
          out.push(m);
        }
  return { out, shape: [N, C, OH, OW] };
}

/** Plain-loop adaptive average pool with PyTorch's bins. */
function adaptiveRef(x: number[], s: number[], OH: number, OW: number): number[] {
  const [N, C, H, W] = s;
  const out: number[] = [];
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < OH; i++)
        for (let j = 0; j < OW; j++) {
          const h0 = Math.floor((i * H) / OH);
          const h1 = Math.ceil(((i + 1) * H) / OH);
          const w0 = Math.floor((j * W) / OW);
          const w1 = Math.ceil(((j + 1) * W) / OW);
          let acc = 0;
          for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) acc += x[at(s, n, c, h, w)];
          out.push(acc / ((h1 - h0) * (w1 - w0)));
        }
  return out;
}

deviceTest('maxPool2d matches a plain loop in both layouts (f32, f64)', (dev) => {
  tidy(() => {
    for (const dtype of ['f32', 'f64'] as const) {
      for (const [shape, kk, st, p] of [
        [[2, 3, 7, 6], [3, 3], [2, 2], [1, 1]],
        [[1, 2, 5, 8], [2, 3], [2, 1], [1, 0]],
        [[2, 4, 4, 4], [2, 2], [2, 2], [0, 0]],
        [[1, 2, 3, 1], [3, 3], [1, 1], [1, 1]],
        [[1, 3, 2, 5], [1, 3], [1, 2], [0, 1]],
      ] as [number[], [number, number], [number, number], [number, number]][]) {
        const x = randn(shape, { dtype, device: dev });
        const want = maxPoolRef(x.toList(), shape, kk, st, p);
        const y = maxPool2d(x, kk, { stride: st, padding: p });
        assert.equal([...y.shape], want.shape);
        assert.equal(y.toList(), dtype === 'f32' ? Array.from(Float32Array.from(want.out)) : want.out);
        const yl = maxPool2d(toChannelsLast(x), kk, { stride: st, padding: p });
        assert.equal(yl.toList(), y.toList());
        if (shape[1] > 1) assert.is(yl.strides[1], 1, 'channels-last in, channels-last out');
      }
    }
    // stride defaults to the kernel
    assert.equal([...maxPool2d(randn([1, 1, 6, 6], { device: dev }), 2).shape], [1, 1, 3, 3]);
  });
});

deviceTest('adaptiveAvgPool2d matches PyTorch-style bins in both layouts', (dev) => {
  tidy(() => {
    for (const [shape, oh, ow] of [
      [[2, 3, 7, 5], 3, 2],
      [[1, 2, 6, 6], 1, 1],
      [[1, 2, 3, 5], 4, 5],
      [[2, 1, 10, 9], 4, 4],
    ] as [number[], number, number][]) {
      const x = randn(shape, { dtype: 'f64', device: dev });
      const want = adaptiveRef(x.toList(), shape, oh, ow);
      const y = adaptiveAvgPool2d(x, [oh, ow]);
      assert.equal([...y.shape], [shape[0], shape[1], oh, ow]);
      close(y.toList(), want, 1e-14, `adaptive ${shape} -> ${oh}x${ow}`);
      close(adaptiveAvgPool2d(toChannelsLast(x), [oh, ow]).toList(), want, 1e-14, 'channels-last');
    }
  });
});

deviceTest('pooling gradients (finite differences), both layouts', (dev) => {
  tidy(() => {
    gradcheck('maxPool2d 3/2 pad 1', (x) => maxPool2d(x, 3, { stride: 2, padding: 1 }), [leaf([2, 2, 5, 6], 1, dev)]);
    gradcheck('maxPool2d 2x3 overlapping', (x) => maxPool2d(x, [2, 3], { stride: 1 }), [leaf([1, 2, 4, 5], 1, dev)]);
    gradcheck('adaptiveAvgPool2d 3x2', (x) => adaptiveAvgPool2d(x, [3, 2]), [leaf([2, 2, 7, 5], 1, dev)]);
    gradcheck('adaptiveAvgPool2d upsampling bins', (x) => adaptiveAvgPool2d(x, [4, 5]), [leaf([1, 2, 3, 4], 1, dev)]);
    const xl = toChannelsLast(randn([2, 3, 5, 5], { dtype: 'f64', device: dev }));
    xl.requiresGrad = true;
    gradcheck('maxPool2d channels-last', (x) => maxPool2d(x, 3, { stride: 2, padding: 1 }), [xl]);
    gradcheck('adaptiveAvgPool2d channels-last', (x) => adaptiveAvgPool2d(x, [2, 3]), [xl]);
  });
});

deviceTest('maxPool2d routes each gradient to the first maximum of its window', (dev) => {
  tidy(() => {
    const x = tensor([1, 5, 5, 2, 0, 3, 5, 1, 5], { shape: [1, 1, 3, 3], dtype: 'f64', device: dev, requiresGrad: true });
    const y = maxPool2d(x, 2, { stride: 1 });
    assert.equal(y.toList(), [5, 5, 5, 5]);
    y.sum().backward();
    assert.equal((x.grad as Tensor).toList(), [0, 2, 0, 0, 0, 0, 1, 0, 1]);
    noGrad(() => assert.equal(maxPool2d(tensor([NaN, 1, 2, 3], { shape: [1, 1, 2, 2], device: dev }), 2).toList(), [NaN]));
  });
});

test('pooling rejects bad inputs with errors naming the op and shapes', () => {
  tidy(() => {
    const x = randn([1, 2, 4, 4]);
    assert.throws(() => maxPool2d(randn([2, 4, 4]), 2), /maxPool2d: x must be \[N, C, H, W\], got \[2, 4, 4\]/);
    assert.throws(() => maxPool2d(x, 3, { padding: 2 }), /maxPool2d: padding \[2, 2\] should be at most half of the kernel \[3, 3\]/);
    assert.throws(() => maxPool2d(x, 6), /maxPool2d: kernel \[6, 6\] is larger than the padded input 4x4 of x \[1, 2, 4, 4\]/);
    assert.throws(() => maxPool2d(x, 0), /maxPool2d: kernel must be an integer >= 1/);
    assert.throws(() => adaptiveAvgPool2d(x, [0, 1]), /adaptiveAvgPool2d: outputSize must be an integer >= 1/);
    assert.throws(() => adaptiveAvgPool2d(randn([4, 4]), 1), /adaptiveAvgPool2d: x must be \[N, C, H, W\], got \[4, 4\]/);
  });
});

test.run();
