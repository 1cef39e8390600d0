/**
 * linear(x, w, b, { activation: 'gelu' }) and nn.Linear({ activation: 'gelu' }) against the
 * unfused gelu(linear(x, w, b)), values and gradients of x, w and b, on every test device. f64
 * runs the unfused path everywhere: equal bit for bit, and f64 finite differences (1e-6 abs +
 * 1e-5 rel). On the CPU every dtype is the unfused path: bit for bit. On CUDA bf16 fuses bias and
 * GELU into the product (one rounding of the pre-activation fewer): within 2^-7 relative (one bf16
 * ulp) + 2^-8 of the largest value; f32 stays unfused (1e-6).
 */

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gelu, linear, nn, noGrad, randn, type Tensor, tidy } from '../../src/index.ts';
import type { DType } from '../../src/tensor/dtype.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf } from '../helpers/gradcheck.ts';

const TOL: Record<string, { rel: number; scale: number }> = {
  f64: { rel: 0, scale: 0 }, f32: { rel: 1e-6, scale: 1e-6 }, bf16: { rel: 2 ** -7, scale: 2 ** -8 },
};

function near(label: string, got: number[], want: number[], tol: { rel: number; scale: number }): void {
  assert.is(got.length, want.length, label);
  const scale = Math.max(...want.map(Math.abs), 1e-30);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert.ok(err <= tol.rel * Math.abs(want[i]) + tol.scale * scale, `${label}: element ${i} is ${got[i]}, want ${want[i]} (error ${err})`);
  }
}

/** Output and gradients (x, w, b) of `f` for one fixed upstream gradient. */
function run(f: (x: Tensor, w: Tensor, b: Tensor) => Tensor, xs: Tensor[], g: Tensor): number[][] {
  return tidy(() => {
    const leaves = xs.map((t) => {
      const c = t.clone();
      c.requiresGrad = true;
      return c;
    });
    const y = f(leaves[0], leaves[1], leaves[2]);
    y.backward(g);
    const out = [y.toList(), ...leaves.map((l) => l.grad?.toList() ?? [])];
    for (const l of leaves) l.grad?.dispose();
    return out;
  });
}

function inputs(dtype: DType, dev: Device, M: number, K: number, N: number): { xs: Tensor[]; g: Tensor } {
  return noGrad(() => ({
    xs: [randn([2, M, K], { device: dev }), randn([N, K], { device: dev }), randn([N], { device: dev })].map((t) => t.to(dtype)),
    g: randn([2, M, N], { device: dev }).to(dtype),
  }));
}

for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
  deviceTest(`linear with activation 'gelu' equals gelu(linear) in values and gradients, ${dtype}`, (dev) => {
    // N 24: a multiple of 8, which cuBLASLt's GELU epilogue needs; N 20 takes the unfused path everywhere.
    for (const N of [24, 20]) {
      const { xs, g } = inputs(dtype, dev, 5, 16, N);
      const fused = run((x, w, b) => linear(x, w, b, { activation: 'gelu' }), xs, g);
      const plain = run((x, w, b) => gelu(linear(x, w, b)), xs, g);
      const names = ['output', 'x grad', 'w grad', 'b grad'];
      const exact = dtype === 'f64' || dev === 'cpu' || N % 8 !== 0 || dtype === 'f32';
      fused.forEach((v, i) => {
        if (exact) assert.equal(v, plain[i], `${names[i]} ${dtype} N ${N} on ${dev}: not bit for bit`);
        else near(`${names[i]} ${dtype} N ${N} on ${dev}`, v, plain[i], TOL[dtype]);
      });
      for (const t of [...xs, g]) t.dispose();
    }
  });
}

deviceTest("linear with activation 'gelu': f64 finite differences, with and without bias", (dev) => {
  gradcheck('linear gelu', (x, w, b) => linear(x, w, b, { activation: 'gelu' }), [leaf([3, 4], 1, dev), leaf([8, 4], 1, dev), leaf([8], 1, dev)]);
  gradcheck('linear gelu, no bias', (x, w) => linear(x, w, null, { activation: 'gelu' }), [leaf([2, 3, 4], 1, dev), leaf([8, 4], 1, dev)]);
});

deviceTest('no grad: the activated result alone (no pre-activation kept), same values', (dev) => {
  const { xs, g } = inputs('bf16', dev, 4, 8, 16);
  noGrad(() => {
    const fused = linear(xs[0], xs[1], xs[2], { activation: 'gelu' });
    const plain = gelu(linear(xs[0], xs[1], xs[2]));
    if (dev === 'cpu') assert.equal(fused.toList(), plain.toList());
    else near('bf16 no grad', fused.toList(), plain.toList(), TOL.bf16);
    assert.is(fused.gradFn, null);
  });
  for (const t of [...xs, g]) t.dispose();
});

test('nn.Linear({ activation }): forward is gelu(linear), same parameters and state-dict keys, repr, bad names refused', () => {
  const a = new nn.Linear(6, 8, { activation: 'gelu', dtype: 'f64' });
  const b = new nn.Linear(6, 8, { dtype: 'f64' });
  assert.equal(Object.keys(a.stateDict()), Object.keys(b.stateDict()));
  noGrad(() => {
    const x = randn([3, 6], { dtype: 'f64' });
    assert.equal(a.forward(x).toList(), gelu(linear(x, a.weight, a.bias)).toList());
    a.activation = null; // switchable, as GPT's MLP never does
    assert.equal(a.forward(x).toList(), linear(x, a.weight, a.bias).toList());
  });
  a.activation = 'gelu';
  assert.match(a.toString(), /activation: gelu/);
  assert.throws(() => new nn.Linear(2, 2, { activation: 'relu' as 'gelu' }), /Linear: activation "relu" is not supported/);
  assert.throws(() => linear(randn([1, 2]), randn([2, 2]), null, { activation: 'erf' as 'gelu' }), /linear: activation "erf" is not supported/);
});

test.run();
