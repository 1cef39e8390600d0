import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { conv2d, randn, type Tensor, tidy } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf, maxAbsDiff } from '../helpers/gradcheck.ts';
import { toChannelsLast } from '../helpers/nchw.ts';

/** Plain-loop conv2d on NCHW row-major arrays. */
function convRef(
  x: number[], xs: number[], w: number[], ws: number[], bias: number[] | null, stride: [number, number], pad: [number, number],
): { out: number[]; shape: number[] } {
  const [N, C, H, W] = xs;
  const [O, , kh, kw] = ws;
  const OH = Math.floor((H + 2 * pad[0] - kh) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * pad[1] - kw) / stride[1]) + 1;
  const out = new Array<number>(N * O * OH * OW).fill(0);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let acc = bias ? bias[o] : 0;
          for (let c = 0; c < C; c++)
            for (let i = 0; i < kh; i++)
              for (let j = 0; j < kw; j++) {
                const h = oh * stride[0] - pad[0] + i;
                const ww = ow * stride[1] - pad[1] + j;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                acc += x[((n * C + c) * H + h) * W + ww] * w[((o * C + c) * kh + i) * kw + j];
              }
          out[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
  return { out, shape: [N, O, OH, OW] };
}

const cases: { x: number[]; w: number[]; stride: [number, number]; pad: [number, number]; bias: boolean }[] = [
  { x: [2, 3, 7, 6], w: [4, 3, 3, 3], stride: [1, 1], pad: [1, 1], bias: true },
  { x: [1, 2, 9, 8], w: [3, 2, 3, 2], stride: [2, 1], pad: [0, 1], bias: false },
  { x: [2, 4, 5, 5], w: [5, 4, 1, 1], stride: [2, 2], pad: [0, 0], bias: true },
  { x: [1, 3, 11, 10], w: [2, 3, 7, 7], stride: [2, 2], pad: [3, 3], bias: true },
];

for (const dtype of ['f64', 'f32'] as const) {
  deviceTest(`conv2d forward matches a plain loop (${dtype}, NCHW and channels-last inputs)`, (dev) => {
    const tol = dtype === 'f64' ? 1e-12 : 1e-5;
    for (const c of cases) {
      tidy(() => {
        const x = randn(c.x, { dtype, device: dev });
        const w = randn(c.w, { dtype, device: dev });
        const b = c.bias ? randn([c.w[0]], { dtype, device: dev }) : null;
        const want = convRef(x.toList(), c.x, w.toList(), c.w, b ? b.toList() : null, c.stride, c.pad);
        const y = conv2d(x, w, b, { stride: c.stride, padding: c.pad });
        assert.equal([...y.shape], want.shape);
        const [, O, OH, OW] = y.shape;
        // The CPU's oneDNN path returns channels-last; a CUDA kernel may choose either layout.
        if (dev === 'cpu') assert.equal([...y.strides], [OH * OW * O, 1, OW * O, O], 'the output is channels-last');
        const scale = Math.max(1, ...want.out.map(Math.abs));
        assert.ok(maxAbsDiff(y.toList(), want.out) <= tol * scale, `${dtype} ${c.x} * ${c.w}: ${maxAbsDiff(y.toList(), want.out)}`);
        const yl = conv2d(toChannelsLast(x), w, b, { stride: c.stride, padding: c.pad });
        assert.ok(maxAbsDiff(yl.toList(), y.toList()) <= tol * scale, 'channels-last input gives the same values');
      });
    }
  });
}

deviceTest('conv2d accepts strided (non-dense) inputs', (dev) => {
  tidy(() => {
    const big = randn([2, 3, 8, 10], { dtype: 'f64', device: dev });
    const x = big.narrow(3, 1, 6); // W stride 1 but a gap per row: not dense
    const w = randn([2, 3, 3, 3], { dtype: 'f64', device: dev });
    const y = conv2d(x, w, null, { padding: 1 });
    const want = convRef(x.toList(), [2, 3, 8, 6], w.toList(), [2, 3, 3, 3], null, [1, 1], [1, 1]);
    assert.ok(maxAbsDiff(y.toList(), want.out) < 1e-12);
  });
});

deviceTest('conv2d gradients (finite differences): kernels 1, 3, 7, strides 1 and 2, padding', (dev) => {
  tidy(() => {
    const f = (stride: number | [number, number], padding: number | [number, number]) => (x: Tensor, w: Tensor, b: Tensor) =>
      conv2d(x, w, b, { stride, padding });
    gradcheck('conv2d k1', f(1, 0), [leaf([2, 3, 4, 4], 1, dev), leaf([2, 3, 1, 1], 1, dev), leaf([2], 1, dev)]);
    gradcheck('conv2d k1 s2', f(2, 0), [leaf([1, 2, 5, 5], 1, dev), leaf([3, 2, 1, 1], 1, dev), leaf([3], 1, dev)]);
    gradcheck('conv2d k3 p1', f(1, 1), [leaf([2, 2, 5, 4], 1, dev), leaf([3, 2, 3, 3], 1, dev), leaf([3], 1, dev)]);
    gradcheck('conv2d k3 s2 p1', f(2, 1), [leaf([1, 3, 6, 7], 1, dev), leaf([2, 3, 3, 3], 1, dev), leaf([2], 1, dev)]);
    gradcheck('conv2d k3 s[2,1] p[0,1]', f([2, 1], [0, 1]), [leaf([1, 2, 7, 5], 1, dev), leaf([2, 2, 3, 3], 1, dev), leaf([2], 1, dev)]);
    gradcheck('conv2d k7 s2 p3', f(2, 3), [leaf([1, 2, 9, 8], 1, dev), leaf([2, 2, 7, 7], 1, dev), leaf([2], 1, dev)]);
  });
});

deviceTest('conv2d gradients through a channels-last input and without bias', (dev) => {
  tidy(() => {
    const xl = toChannelsLast(randn([2, 3, 5, 5], { dtype: 'f64', device: dev }));
    xl.requiresGrad = true;
    gradcheck('conv2d channels-last x', (x, w) => conv2d(x, w, null, { padding: 1 }), [xl, leaf([4, 3, 3, 3], 1, dev)]);
    const frozen = randn([4, 3, 3, 3], { dtype: 'f64', device: dev });
    gradcheck('conv2d x only', (x) => conv2d(x, frozen, null, { stride: 2, padding: 1 }), [leaf([1, 3, 6, 6], 1, dev)]);
    const x0 = randn([1, 3, 6, 6], { dtype: 'f64', device: dev });
    gradcheck('conv2d bias only', (b) => conv2d(x0, frozen, b, { padding: 1 }), [leaf([4], 1, dev)]);
  });
});

deviceTest('conv2d f32 gradients agree with f64', (dev) => {
  tidy(() => {
    const x64 = leaf([2, 4, 6, 6], 1, dev);
    const w64 = leaf([5, 4, 3, 3], 1, dev);
    const b64 = leaf([5], 1, dev);
    const x32 = x64.detach().to('f32').requiresGrad_();
    const w32 = w64.detach().to('f32').requiresGrad_();
    const b32 = b64.detach().to('f32').requiresGrad_();
    conv2d(x64, w64, b64, { stride: 2, padding: 1 }).mul(conv2d(x64, w64, b64, { stride: 2, padding: 1 })).sum().backward();
    conv2d(x32, w32, b32, { stride: 2, padding: 1 }).mul(conv2d(x32, w32, b32, { stride: 2, padding: 1 })).sum().backward();
    for (const [a, b] of [[x32, x64], [w32, w64], [b32, b64]] as const) {
      const ref = (b.grad as Tensor).toList();
      const scale = Math.max(...ref.map(Math.abs));
      assert.ok(maxAbsDiff((a.grad as Tensor).toList(), ref) <= 1e-4 * scale);
    }
  });
});

deviceTest('1x1 stride-1 weight gradients on channels-last activations (the matmul path) agree with f64', (dev) => {
  tidy(() => {
    const x64 = toChannelsLast(leaf([3, 6, 4, 5], 1, dev)).detach().requiresGrad_();
    const w64 = leaf([7, 6, 1, 1], 1, dev);
    const g64 = toChannelsLast(leaf([3, 7, 4, 5], 1, dev)).detach();
    conv2d(x64, w64).backward(g64);
    const ref = (w64.grad as Tensor).toList();
    const scale = Math.max(...ref.map(Math.abs));
    for (const [dtype, tol] of [['f32', 1e-5], ['bf16', 2e-2]] as const) {
      const x = x64.detach().to(dtype);
      const xl = toChannelsLast(x).detach();
      const w = w64.detach().to(dtype).requiresGrad_();
      conv2d(xl, w).backward(toChannelsLast(g64.to(dtype)));
      // bf16 inputs are rounded first: compare with the f64 gradient of the rounded values.
      const want = dtype === 'f32' ? ref : (() => {
        const wr = w64.detach().requiresGrad_();
        conv2d(toChannelsLast(x.to('f64')), wr).backward(toChannelsLast(g64.to('bf16').to('f64')));
        return (wr.grad as Tensor).toList();
      })();
      assert.ok(maxAbsDiff((w.grad as Tensor).toList(), want) <= tol * scale, `${dtype}`);
    }
  });
});

deviceTest('conv2d in bf16 agrees with f32 and gives bf16 gradients (f32 bias)', (dev) => {
  tidy(() => {
    const x = randn([2, 8, 6, 6], { device: dev });
    const w = randn([4, 8, 3, 3], { std: 0.2, device: dev });
    const b = randn([4], { device: dev }).requiresGrad_();
    const want = conv2d(x, w, b, { padding: 1 }).toList();
    const xb = x.to('bf16').requiresGrad_();
    const wb = w.to('bf16').requiresGrad_();
    const y = conv2d(xb, wb, b, { padding: 1 });
    assert.is(y.dtype, 'bf16');
    const scale = Math.max(...want.map(Math.abs));
    assert.ok(maxAbsDiff(y.toList(), want) <= 2e-2 * scale, `bf16 forward: ${maxAbsDiff(y.toList(), want)}`);
    y.sum().backward();
    assert.is(xb.grad?.dtype, 'bf16');
    assert.is(wb.grad?.dtype, 'bf16');
    assert.is(b.grad?.dtype, 'f32');
    // d(sum y)/d bias = N * OH * OW per output channel
    assert.equal(b.grad?.toList(), [72, 72, 72, 72]);
  });
});

test('conv2d rejects bad inputs with errors naming the op and shapes', () => {
  tidy(() => {
    const x = randn([2, 3, 8, 8]);
    assert.throws(() => conv2d(randn([3, 8, 8]), randn([4, 3, 3, 3])), /conv2d: x must be \[N, C, H, W\], got \[3, 8, 8\]/);
    assert.throws(() => conv2d(x, randn([4, 5, 3, 3])), /conv2d: x \[2, 3, 8, 8\] has 3 channels, weight \[4, 5, 3, 3\] expects 5/);
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3], { dtype: 'f64' })), /conv2d: x is f32 \[2, 3, 8, 8\], weight is f64 \[4, 3, 3, 3\]/);
    assert.throws(
      () => conv2d(x, randn([4, 3, 11, 11]), null, { padding: 1 }),
      /conv2d: kernel 11x11 of weight \[4, 3, 11, 11\] is larger than the padded input 10x10 of x \[2, 3, 8, 8\]/,
    );
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3]), randn([3])), /conv2d: bias \[3\] should be \[4\]/);
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3]), null, { stride: 0 }), /conv2d: stride must be an integer >= 1/);
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3]), null, { padding: [1, -1] }), /conv2d: padding must be an integer >= 0/);
  });
});

test.run();
