/**
 * CPU-vs-CUDA comparison for the CUDA op suites: run the same function on both devices from the
 * same inputs and compare outputs and input gradients relative to the largest CPU value.
 *
 * @example
 * parity('gelu', gelu, () => [randn([64], { requiresGrad: true })]);       // f32: within 1e-5
 * assert.ok(maxRelErr(gpu.toList(), cpu.toList()) <= 1e-12);
 */
import * as assert from 'uvu/assert';
import { mul, noGrad, randn, sum, type Tensor, tidy } from '../../src/index.ts';

export const DEV = 'cuda:0';

/** Default tolerances by output dtype, relative to the largest CPU value; other dtypes get 1e-5. */
export const TOL: Record<string, number> = { f64: 1e-12, f32: 1e-5, bf16: 1e-2, f16: 1e-2 };

/**
 * Largest |got - want| over the largest finite |want| (at least `floor`); NaN anywhere it is not
 * equal gives Infinity. Equal values, infinities included (log-softmax's masked -inf), differ by nothing.
 */
export function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-30): number {
  assert.is(got.length, want.length, 'lengths differ');
  let scale = floor;
  let err = 0;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= err)) err = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(err, d);
  }
  return err / scale;
}

/** A copy of x on the CUDA device, a leaf requiring gradients when x does. */
export function onDevice(x: Tensor): Tensor {
  const y = noGrad(() => x.to(DEV));
  return x.requiresGrad ? y.requiresGrad_(true) : y;
}

/**
 * Runs f on the CPU and on CUDA from the same inputs (`make` builds the CPU ones); the CUDA output
 * must be on the device with the CPU's shape, and it and the input gradients of sum(f(x) * w),
 * w random, within `tol` (default TOL by output dtype). Outputs that need no gradient stop after the values.
 */
export function parity(name: string, f: (...xs: Tensor[]) => Tensor, make: () => Tensor[], tol?: number): void {
  tidy(() => {
    const cpuIn = make();
    const gpuIn = cpuIn.map(onDevice);
    const cpuOut = f(...cpuIn);
    const gpuOut = f(...gpuIn);
    assert.is(gpuOut.device, DEV, `${name}: output device`);
    assert.equal(gpuOut.shape, cpuOut.shape, `${name}: shape`);
    const t = tol ?? TOL[cpuOut.dtype] ?? 1e-5;
    const e = maxRelErr(gpuOut.toList(), cpuOut.toList());
    assert.ok(e <= t, `${name} ${cpuOut.dtype}: output differs by ${e} (tolerance ${t})`);
    if (!cpuOut.requiresGrad) return;
    const w = randn([...cpuOut.shape], { dtype: cpuOut.dtype });
    sum(mul(cpuOut, w)).backward();
    sum(mul(gpuOut, onDevice(w))).backward();
    cpuIn.forEach((x, i) => {
      if (!x.requiresGrad) return;
      const g = gpuIn[i].grad;
      assert.ok(x.grad && g, `${name}: input ${i} has no gradient`);
      assert.is(g.device, DEV);
      const eg = maxRelErr(g.toList(), x.grad.toList());
      assert.ok(eg <= t, `${name} ${cpuOut.dtype}: gradient of input ${i} differs by ${eg} (tolerance ${t})`);
    });
  });
}
