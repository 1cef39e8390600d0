/**
 * Optimizer.step({ gradScale }): the fused kernels multiply the gradient by gradScale in the state
 * dtype as they read it (SGD with momentum and Nesterov, Adam, AdamW; one parameter per call and,
 * on a CUDA device, the multi-tensor AdamW). f32 parameters: bit for bit the same step after
 * scaling the f32 gradients in place by gradScale (both one f32 product); with L2 weight decay
 * (SGD, Adam) within 1e-6 relative, as the compiler may fuse the product with the decay's
 * addition (one rounding fewer). f16 parameters with
 * gradients of 2^16 × 1e-8 and gradScale 2^-16: the fp32 masters within 1e-6 relative of a double
 * reference of the update on the f32-unscaled gradients (the only f32 roundings: a few per
 * element); the same gradients unscaled in f16 first flush to zero. Bad values are rejected.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Adam, AdamW, SGD, type Tensor, tensor, withTag } from '../../src/index.ts';
import { scaleInPlace } from '../../src/optim/clip_grad.ts';
import { deviceTest } from '../helpers/devices.ts';

const N = 40;
const vals = (f: (i: number) => number) => Float32Array.from({ length: N }, (_, i) => f(i));

function params(dev: string, dtype: 'f32' | 'f16', count: number): Tensor[] {
  return Array.from({ length: count }, (_, j) => withTag('param', () => tensor(vals((i) => 0.5 - (i + j) / 64), { dtype }).to(dev as never)));
}

function setGrads(ps: Tensor[], f: (i: number, j: number) => number): void {
  ps.forEach((p, j) => {
    p.grad?.dispose();
    p.grad = withTag('grad', () => tensor(vals((i) => f(i, j)), { dtype: p.dtype }).to(p.device));
  });
}

const read = (ps: Tensor[]) => ps.map((p) => Array.from(p.toArray() as Float32Array));
const makers = {
  sgd: (ps: Tensor[]) => new SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true }),
  adamw: (ps: Tensor[]) => new AdamW(ps, { lr: 1e-2, eps: 1e-12 }),
  // L2 decay: g·gradScale + wd·p may be one fused multiply-add (nvcc, -ffp-contract), where the
  // in-place scaling rounds g·gradScale first; those two differ by f32 rounding only.
  'sgd-decay': (ps: Tensor[]) => new SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 }),
  'adam-decay': (ps: Tensor[]) => new Adam(ps, { lr: 1e-2, weightDecay: 0.01 }),
};

deviceTest('step({ gradScale }) on f32 parameters equals the step after scaling the gradients in place (bit for bit without L2 decay)', (dev) => {
  for (const [name, make] of Object.entries(makers)) {
    const a = params(dev, 'f32', 3);
    const b = params(dev, 'f32', 3);
    const [oa, ob] = [make(a), make(b)];
    for (let s = 0; s < 3; s++) {
      const g = (i: number, j: number) => Math.sin(i * 0.7 + j + s) * 3;
      const gradScale = 0.37 / (s + 1);
      setGrads(a, g);
      setGrads(b, g);
      oa.step({ gradScale });
      for (const p of b) scaleInPlace(p.grad as Tensor, gradScale);
      ob.step();
    }
    if (!name.endsWith('-decay')) {
      assert.equal(read(a), read(b), `${dev} ${name}`);
      continue;
    }
    const [ra, rb] = [read(a).flat(), read(b).flat()];
    ra.forEach((x, i) => assert.ok(Math.abs(x - rb[i]) <= 1e-6 * Math.max(1, Math.abs(rb[i])), `${dev} ${name}: [${i}] ${x} vs ${rb[i]}`));
  }
});

deviceTest('step({ gradScale: 2^-16 }) unscales f16 gradients of 2^16 x 1e-8 in f32 (AdamW masters vs a double reference)', (dev) => {
  const ps = params(dev, 'f16', 3);
  const opt = new AdamW(ps, { lr: 1e-2, eps: 1e-9, weightDecay: 0 });
  const true_ = (i: number, j: number, s: number) => (1e-8 + 1e-9 * ((i + j + s) % 9)) * ((i + s) % 3 ? 1 : -1);
  const master = read(ps);
  const m = master.map((r) => r.map(() => 0));
  const v = master.map((r) => r.map(() => 0));
  for (let s = 0; s < 3; s++) {
    setGrads(ps, (i, j) => true_(i, j, s) * 2 ** 16);
    const g16 = read(ps.map((p) => p.grad as Tensor));
    opt.step({ gradScale: 2 ** -16 });
    const bc1 = 1 - 0.9 ** (s + 1);
    const bc2 = 1 - 0.999 ** (s + 1);
    master.forEach((row, j) => row.forEach((_, i) => {
      const g = g16[j][i] * 2 ** -16;
      m[j][i] = 0.9 * m[j][i] + 0.1 * g;
      v[j][i] = 0.999 * v[j][i] + 0.001 * g * g;
      row[i] -= (1e-2 / bc1) * m[j][i] / (Math.sqrt(v[j][i]) / Math.sqrt(bc2) + 1e-9);
    }));
  }
  const sd = opt.stateDict();
  const got = read(ps);
  got.forEach((row, j) => row.forEach((x, i) => {
    assert.ok(Math.abs(x - master[j][i]) <= 2 ** -11 * Math.abs(master[j][i]), `${dev} param ${j}[${i}] = ${x}, reference ${master[j][i]}`);
  }));
  // The fp32 masters: within 1e-6 relative of the double reference (f32 roundings only).
  master.forEach((row, j) => {
    const data = Array.from(sd.state[j].buffers.master.data as ArrayLike<number>);
    row.forEach((want, i) => assert.ok(Math.abs(data[i] - want) <= 1e-6 * Math.abs(want), `${dev} master ${j}[${i}] = ${data[i]}, reference ${want}`));
  });
  // Every parameter moved: unscaled in f16 these gradients (< 3e-8) would be zero.
  got.forEach((row, j) => row.forEach((x, i) => assert.ok(Math.abs(x - (0.5 - (i + j) / 64)) > 1e-3, `${dev} param ${j}[${i}] did not move`)));
});

deviceTest('step({ gradScale }) rejects non-finite values and unknown keys', (dev) => {
  const ps = params(dev, 'f32', 1);
  setGrads(ps, () => 1);
  for (const make of Object.values(makers)) {
    const opt = make(ps);
    assert.throws(() => opt.step({ gradScale: Number.NaN }), /step: gradScale must be a finite number, got NaN/);
    assert.throws(() => opt.step({ gradScale: Number.POSITIVE_INFINITY }), /gradScale must be a finite number/);
    assert.throws(() => opt.step({ gradscale: 1 } as never), /unknown key "gradscale"/);
  }
});

test.run();
