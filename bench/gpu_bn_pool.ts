/**
 * Batch norm (training) and the stem's max pool at ResNet-101's CIFAR-shape layers (batch 128,
 * bf16, channels-last, as bench/gpu.ts part (c) runs them): device time of the forward and of
 * forward + backward (y.backward(g), g given: no other op in the timing but the gradient's
 * accumulation), with the bandwidth that time implies under docs/gpu.md's byte counts (BN
 * forward 3 passes over the values, backward 5; max pool forward: x, y and the i32 argmax;
 * backward: gy, argmax, gx). Checks the kernels' tiling, not correctness (tests do that).
 *   node --import tsx bench/gpu_bn_pool.ts [--smoke]
 */
import { batchNorm2d, cudaIsAvailable, maxPool2d, noGrad, ones, randn, type Tensor, tidy, zeros } from '../src/index.ts';
import { DEV, timeDevice } from './gpu_timing.ts';

const smoke = process.argv.includes('--smoke');
const N = smoke ? 4 : 128;
// [iterations per round, rounds, warm-up calls]; one call in the smoke run (the plumbing only).
const [IT, RO, WU] = smoke ? [1, 1, 0] : [10, 5, 3];
const time = (fn: () => void) => timeDevice(IT, RO, fn, WU);

/** A channels-last bf16 [n, c, h, w] on the device (a permuted contiguous [n, h, w, c]). */
const image = (n: number, c: number, h: number, w: number): Tensor =>
  noGrad(() => randn([n, h, w, c], { device: DEV }).to('bf16').permute([0, 3, 1, 2]));

function clearGrads(ts: Tensor[]): void {
  for (const t of ts) {
    t.grad?.dispose();
    t.grad = null;
  }
}

const gbs = (bytes: number, s: number) => (bytes / s / 1e9).toFixed(0);

if (!cudaIsAvailable()) {
  console.log('gpu_bn_pool: skipped: no usable CUDA device');
} else {
  // [name, C, H, W]: the stem's BN and layer1's 256-channel BN, the two largest.
  for (const [name, C, H, W] of [['stem', 64, 16, 16], ['layer1', 256, 8, 8]] as [string, number, number, number][]) {
    const x = image(N, C, H, W).requiresGrad_(true);
    const g = image(N, C, H, W);
    const w = ones([C], { device: DEV, requiresGrad: true });
    const b = zeros([C], { device: DEV, requiresGrad: true });
    const bytes = N * C * H * W * 2;
    const fwd = time(() => tidy(() => void batchNorm2d(x, null, null, w, b, { training: true })));
    const both = time(() =>
      tidy(() => {
        batchNorm2d(x, null, null, w, b, { training: true }).backward(g);
        clearGrads([x, w, b]);
      }),
    );
    console.log(
      `batchNorm2d ${name} [${N}, ${C}, ${H}, ${W}] bf16 channels-last: forward ${(fwd * 1e6).toFixed(1)} us (${gbs(3 * bytes, fwd)} GB/s), ` +
        `forward+backward ${(both * 1e6).toFixed(1)} us (${gbs(8 * bytes, both)} GB/s)`,
    );
  }
  const x = image(N, 64, 16, 16).requiresGrad_(true);
  const g = image(N, 64, 8, 8);
  const inBytes = N * 64 * 16 * 16 * 2;
  const outBytes = N * 64 * 8 * 8 * (2 + 4);
  const fwd = time(() => tidy(() => void maxPool2d(x, 3, { stride: 2, padding: 1 })));
  const both = time(() =>
    tidy(() => {
      maxPool2d(x, 3, { stride: 2, padding: 1 }).backward(g);
      clearGrads([x]);
    }),
  );
  console.log(
    `maxPool2d 3/2 pad 1 [${N}, 64, 16, 16] bf16 channels-last: forward ${(fwd * 1e6).toFixed(1)} us (${gbs(inBytes + outBytes, fwd)} GB/s), ` +
      `forward+backward ${(both * 1e6).toFixed(1)} us (${gbs(2 * (inBytes + outBytes), both)} GB/s)`,
  );
}
