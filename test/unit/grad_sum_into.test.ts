/**
 * A tensor used twice, produced by a node (not a leaf): the engine offers the gradient it already
 * holds for it to the node delivering the second one (grad_into.ts), and linear adds its input
 * gradient there (a product with beta = 1) instead of the engine's add. Each case runs with
 * destinations on and off (setGradInto(false): every gradient returned and added): f64 bit for
 * bit, f32 within 2^-22 relative + 1e-6 of the largest, bf16 within 2^-7 relative + 2^-7 of the
 * largest (the sum rounded once instead of the product and then the sum; where the two gradients
 * cancel, an addend's rounding is absolute). Not offered:
 * a held gradient with another handle (here the node's own incoming gradient, add(h, linear(h))),
 * an input used twice by the same node. On cuda:0: one element-wise launch fewer per sum written.
 * Per device (CPU, and cuda:0 under MT_TEST_DEVICES).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setGradInto, sumsWrittenInto } from '../../src/autograd/grad_into.ts';
import { add, cudaCensus, type Device, type DType, linear, manualSeed, mul, randn, type Tensor, tidy } from '../../src/index.ts';
import { closeScaled } from '../helpers/close.ts';
import { deviceTest } from '../helpers/devices.ts';

const ULP: Record<string, number> = { f64: 0, f32: 2 ** -22, bf16: 2 ** -7 };
/** Of the largest |value|: the two gradients' sum may cancel, so one rounding of each addend is an absolute error. */
const SLACK: Record<string, number> = { f64: 0, f32: 1e-6, bf16: 2 ** -7 };

interface Run {
  grads: number[][];
  sums: number;
  binary: number;
}

/** x's and the weights' gradients of `fn`'s output (from a fixed g), destinations on or off. */
function run(on: boolean, dev: Device, dtype: DType, fn: (x: Tensor, w1: Tensor, w2: Tensor) => Tensor): Run {
  const prev = setGradInto(on);
  try {
    return tidy(() => {
      manualSeed(11);
      const leaf = () => randn([16, 16], { device: dev }).to(dtype).requiresGrad_(true);
      const [x, w1, w2] = [leaf(), leaf(), leaf()];
      const y = fn(x, w1, w2);
      const g = randn([...y.shape], { device: dev }).to(dtype);
      const before = sumsWrittenInto();
      const count = () => y.backward(g);
      let binary = 0;
      if (dev !== 'cpu') binary = cudaCensus(count).entries.filter((e) => e.kind === 'kernel' && /^binary/.test(e.name)).reduce((n, e) => n + e.count, 0);
      else count();
      return { grads: [x, w1, w2].map((t) => t.grad?.toList() ?? []), sums: sumsWrittenInto() - before, binary };
    });
  } finally {
    setGradInto(prev);
  }
}

function close(label: string, got: number[], want: number[], dtype: DType): void {
  closeScaled(label, got, want, ULP[dtype], SLACK[dtype]);
}

/** h = 2x feeds two linears (separate q and k projections, say): the second input gradient is added into the first. */
const twoLinears = (x: Tensor, w1: Tensor, w2: Tensor) => {
  const h = mul(x, 2);
  return add(linear(h, w1), linear(h, w2));
};

for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
  deviceTest(`grad_sum_into: ${dtype}, a produced tensor feeding two linears: the second gradient is added by the product`, (dev) => {
    if (dtype === 'f64' && dev !== 'cpu') return; // f64 products on CUDA are cuBLASLt's too; the CPU's loop is the bit-for-bit case
    const on = run(true, dev, dtype, twoLinears);
    const off = run(false, dev, dtype, twoLinears);
    assert.is(on.sums, 1, 'one sum written by the node');
    assert.is(off.sums, 0, 'none with destinations off');
    if (dev !== 'cpu') assert.is(on.binary, off.binary - 1, `element-wise launches ${on.binary} vs ${off.binary}`);
    ['dx', 'dw1', 'dw2'].forEach((name, i) => close(`${dtype} ${name}`, on.grads[i], off.grads[i], dtype));
  });
}

deviceTest('grad_sum_into: a held gradient that is also the node\'s own incoming one, or one node using the tensor twice, is not offered', (dev) => {
  // add(h, linear(h)): add hands g to h and to the linear, which must not write into what it reads.
  const residual = (x: Tensor, w1: Tensor, w2: Tensor) => {
    const h = linear(x, w1);
    return add(h, linear(h, w2));
  };
  // h as both operands of one linear (h hᵀ): two edges to one producer, then a third use.
  const twice = (x: Tensor, w1: Tensor) => {
    const h = mul(x, 3);
    return add(linear(h, h), linear(h, w1));
  };
  for (const fn of [residual, twice]) {
    const on = run(true, dev, 'f32', fn);
    const off = run(false, dev, 'f32', fn);
    ['dx', 'dw1', 'dw2'].forEach((name, i) => close(`${fn.name} ${name}`, on.grads[i], off.grads[i], 'f32'));
    if (fn === residual) assert.is(on.sums, 0, 'the incoming gradient was not written into');
  }
});

test.run();
