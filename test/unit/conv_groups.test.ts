/**
 * conv2d with dilation and groups (grouped, depthwise, atrous), on the CPU and per device:
 * forward values vs a plain JS f64 loop (f64 1e-12, f32 1e-5, bf16/f16 2e-2 of the largest
 * value), gradients by finite differences (f64), f32/bf16 gradients vs f64 ones (1e-4 / 3e-2), NCHW
 * and channels-last inputs, nn.Conv2d's shapes, and the errors for bad groups and shapes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { conv2d, type DType, nn, randn, type Tensor, tidy } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf, maxAbsDiff } from '../helpers/gradcheck.ts';
import { toChannelsLast } from '../helpers/nchw.ts';

interface Case {
  x: number[];
  w: number[];
  stride: [number, number];
  pad: [number, number];
  dil: [number, number];
  groups: number;
  bias: boolean;
}

/** PyTorch's conv2d as plain loops on NCHW row-major arrays; weight [O, C / groups, kh, kw]. */
function convRef(x: number[], w: number[], bias: number[] | null, c: Case): { out: number[]; shape: number[] } {
  const [, C, H, W] = c.x;
  const [O, cg, kh, kw] = c.w;
  const og = O / c.groups;
  const [N, , OH, OW] = outShape(c);
  const out = new Array<number>(N * O * OH * OW).fill(0);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const c0 = Math.floor(o / og) * cg;
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let acc = bias ? bias[o] : 0;
          for (let ci = 0; ci < cg; ci++)
            for (let i = 0; i < kh; i++)
              for (let j = 0; j < kw; j++) {
                const h = oh * c.stride[0] - c.pad[0] + i * c.dil[0];
                const ww = ow * c.stride[1] - c.pad[1] + j * c.dil[1];
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                acc += x[((n * C + c0 + ci) * H + h) * W + ww] * w[((o * cg + ci) * kh + i) * kw + j];
              }
          out[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
    }
  return { out, shape: outShape(c) };
}

const cases: Case[] = [
  { x: [2, 4, 7, 6], w: [6, 2, 3, 3], stride: [1, 1], pad: [1, 1], dil: [1, 1], groups: 2, bias: true },
  { x: [1, 6, 9, 8], w: [6, 1, 3, 3], stride: [1, 1], pad: [2, 2], dil: [2, 2], groups: 6, bias: false },
  { x: [2, 4, 9, 10], w: [4, 4, 3, 2], stride: [2, 1], pad: [1, 0], dil: [2, 3], groups: 1, bias: true },
  { x: [1, 8, 10, 9], w: [4, 2, 3, 3], stride: [2, 2], pad: [2, 1], dil: [2, 1], groups: 4, bias: true },
  { x: [2, 6, 6, 6], w: [12, 1, 3, 3], stride: [2, 2], pad: [1, 1], dil: [1, 1], groups: 6, bias: true },
  { x: [2, 4, 5, 5], w: [6, 2, 1, 1], stride: [1, 1], pad: [0, 0], dil: [1, 1], groups: 2, bias: false },
];

function outShape(c: Case): number[] {
  const [N, , H, W] = c.x;
  const [O, , kh, kw] = c.w;
  const OH = Math.floor((H + 2 * c.pad[0] - c.dil[0] * (kh - 1) - 1) / c.stride[0]) + 1;
  const OW = Math.floor((W + 2 * c.pad[1] - c.dil[1] * (kw - 1) - 1) / c.stride[1]) + 1;
  return [N, O, OH, OW];
}

const label = (c: Case) => `x ${c.x} w ${c.w} stride ${c.stride} pad ${c.pad} dilation ${c.dil} groups ${c.groups}`;
const optsOf = (c: Case) => ({ stride: c.stride, padding: c.pad, dilation: c.dil, groups: c.groups });
const maxAbs = (v: number[]) => Math.max(1, ...v.map(Math.abs));

const tolerance: Record<string, number> = { f64: 1e-12, f32: 1e-5, bf16: 2e-2, f16: 2e-2 };
for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
  deviceTest(`grouped/dilated conv2d forward matches a plain loop (${dtype}, NCHW and channels-last)`, (dev) => {
    for (const c of cases) {
      tidy(() => {
        // Values rounded to the dtype first, so the reference sees exactly what the kernel does.
        const x = randn(c.x, { dtype, device: dev });
        const w = randn(c.w, { dtype, device: dev });
        const b = c.bias ? randn([c.w[0]], { dtype, device: dev }) : null;
        const want = convRef(x.toList(), w.toList(), b ? b.toList() : null, c);
        const y = conv2d(x, w, b, optsOf(c));
        assert.equal([...y.shape], want.shape, label(c));
        assert.is(y.dtype, dtype);
        const tol = tolerance[dtype] * maxAbs(want.out);
        const err = maxAbsDiff(y.toList(), want.out);
        assert.ok(err <= tol, `${dtype} ${label(c)}: ${err}`);
        const yl = conv2d(toChannelsLast(x), w, b, optsOf(c));
        assert.ok(maxAbsDiff(yl.toList(), want.out) <= tol, `${dtype} channels-last ${label(c)}`);
      });
    }
  });
}

deviceTest('grouped/dilated conv2d gradients (finite differences, f64)', (dev) => {
  for (const c of cases.slice(0, 5)) {
    // Smaller batches keep the central differences quick; the geometry is what matters.
    const xs = [1, ...c.x.slice(1)];
    const x = leaf(xs, 1, dev);
    const w = leaf(c.w, 1, dev);
    const b = c.bias ? leaf([c.w[0]], 1, dev) : null;
    const inputs = b ? [x, w, b] : [x, w];
    gradcheck(label(c), (xx, ww, bb) => conv2d(xx, ww, bb ?? null, optsOf(c)), inputs);
    // The analytic gradient through a channels-last input (the perturbed copies are NCHW).
    const xl = toChannelsLast(x.detach()).requiresGrad_();
    gradcheck(`${label(c)} channels-last`, (xx, ww, bb) => conv2d(xx, ww, bb ?? null, optsOf(c)), b ? [xl, w, b] : [xl, w]);
    for (const t of [x, w, b, xl]) t?.dispose();
  }
});

deviceTest('grouped/dilated conv2d f32 and bf16 gradients agree with f64', (dev) => {
  for (const c of cases) {
    tidy(() => {
      const x64 = leaf(c.x, 1, dev);
      const w64 = leaf(c.w, 1, dev);
      const b64 = leaf([c.w[0]], 1, dev);
      const g64 = toChannelsLast(leaf(outShape(c), 1, dev)).detach();
      conv2d(x64, w64, b64, optsOf(c)).backward(g64);
      // NCHW input with a bias gradient; channels-last input without one (a 1x1 stride-1 conv's
      // weight gradient would take the CPU's matmul path there, were it not grouped).
      for (const [dtype, tol, last] of [['f32', 1e-4, false], ['bf16', 3e-2, false], ['f32', 1e-4, true], ['bf16', 3e-2, true]] as const) {
        const x0 = x64.detach().to(dtype);
        const x = (last ? toChannelsLast(x0) : x0).requiresGrad_();
        const w = w64.detach().to(dtype).requiresGrad_();
        const b = last ? null : b64.detach().to(dtype === 'bf16' ? 'f32' : dtype).requiresGrad_();
        conv2d(x, w, b, optsOf(c)).backward(g64.to(dtype));
        for (const [name, got, ref] of [['x', x, x64], ['weight', w, w64], ['bias', b, b64]] as const) {
          if (!got) continue;
          const r = (ref.grad as Tensor).toList();
          const err = maxAbsDiff((got.grad as Tensor).to('f64').toList(), r);
          assert.ok(err <= tol * maxAbs(r), `${dtype}${last ? ' channels-last' : ''} grad ${name} ${label(c)}: ${err}`);
        }
      }
    });
  }
});

test('nn.Conv2d takes dilation and groups: weight [out, in / groups, kh, kw], PyTorch fan-in, same result as conv2d', () => {
  tidy(() => {
    const m = new nn.Conv2d(8, 12, 3, { padding: 2, dilation: 2, groups: 4, dtype: 'f64' });
    assert.equal([...m.weight.shape], [12, 2, 3, 3]);
    // kaiming-uniform with a = √5 bounds |w| by 1/√fanIn, fanIn = 2·3·3.
    assert.ok(Math.max(...m.weight.toList().map(Math.abs)) <= 1 / Math.sqrt(18) + 1e-12);
    const x = randn([2, 8, 7, 7], { dtype: 'f64' });
    const y = m.forward(x);
    assert.equal([...y.shape], [2, 12, 7, 7]);
    const want = conv2d(x, m.weight, m.bias, { padding: 2, dilation: 2, groups: 4 });
    assert.ok(maxAbsDiff(y.toList(), want.toList()) === 0);
    assert.match(String(m), /dilation 2x2, groups 4/);
    const dw = new nn.Conv2d(6, 6, [3, 5], { groups: 6, bias: false });
    assert.equal([...dw.weight.shape], [6, 1, 3, 5]);
  });
  assert.throws(() => new nn.Conv2d(6, 8, 3, { groups: 4 }), /Conv2d: inChannels 6 must be divisible by groups 4/);
  assert.throws(() => new nn.Conv2d(8, 6, 3, { groups: 4 }), /Conv2d: outChannels 6 must be divisible by groups 4/);
  assert.throws(() => new nn.Conv2d(8, 8, 3, { groups: 0 }), /Conv2d: groups must be a positive integer/);
  assert.throws(() => new nn.Conv2d(8, 8, 3, { dilation: 0 }), /Conv2d: dilation must be an integer >= 1/);
});

test('conv2d rejects bad groups, dilation and shapes with errors naming the op and shapes', () => {
  tidy(() => {
    const x = randn([1, 6, 8, 8]);
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3]), null, { groups: 0 }), /conv2d: groups must be a positive integer, got 0/);
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3]), null, { groups: 1.5 }), /conv2d: groups must be a positive integer, got 1.5/);
    assert.throws(
      () => conv2d(x, randn([4, 2, 3, 3]), null, { groups: 3 }),
      /conv2d: groups 3 must divide the weight's 4 output channels \(weight \[4, 2, 3, 3\]\)/,
    );
    assert.throws(
      () => conv2d(x, randn([4, 2, 3, 3]), null, { groups: 2 }),
      /conv2d: x \[1, 6, 8, 8\] has 6 channels, weight \[4, 2, 3, 3\] with groups 2 expects 4/,
    );
    assert.throws(() => conv2d(x, randn([4, 6, 3, 3]), null, { groups: 4 }), /weight \[4, 6, 3, 3\] with groups 4 expects 24/);
    assert.throws(() => conv2d(x, randn([4, 3, 3, 3]), null, { dilation: 0, groups: 2 }), /conv2d: dilation must be an integer >= 1/);
    assert.throws(
      () => conv2d(x, randn([4, 6, 3, 3]), null, { dilation: [4, 1] }),
      /conv2d: kernel 3x3 of weight \[4, 6, 3, 3\] \(dilation 4x1 spans 9x3\) is larger than the padded input 8x8 of x \[1, 6, 8, 8\]/,
    );
  });
});

test('the native bindings check groups and dilation themselves (binding bugs)', async () => {
  const { native } = await import('../../src/index.ts');
  const { dtypeCode } = await import('../../src/tensor/dtype.ts');
  tidy(() => {
    const x = randn([1, 4, 5, 5]);
    const w = randn([4, 2, 3, 3]);
    const y = randn([1, 4, 3, 3]);
    const call = (dh: number, groups: number) =>
      native.conv2dForward(dtypeCode('f32'), x.id, 0, [...x.strides], 1, 4, 5, 5, w.id, 0, 4, 3, 3, 0, 0, y.id, 0, [...y.strides], 1, 1, 0, 0, dh, dh, groups);
    call(1, 2);
    assert.throws(() => call(1, 3), /conv2dForward: dilation 1x1 must be positive and groups 3 must divide C 4 and O 4/);
    assert.throws(() => call(0, 2), /conv2dForward: dilation 0x0 must be positive/);
    assert.throws(() => call(3, 2), /conv2dForward: kernel 3x3 \(dilated 7x7\) is larger than the padded input 5x5/);
  });
});

test.run();
