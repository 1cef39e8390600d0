/**
 * Finite-difference gradient checks in f64: the analytic gradient of sum(f(inputs) * W), W a
 * fixed random weighting, must match central differences for every input element. Inputs may
 * live on any device (all on one); the perturbed copies are made there too.
 */
import { mul, noGrad, randn, sum, type Tensor, tensor, tidy } from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
}

function perturbed(inputs: Tensor[], which: number, index: number, delta: number): Tensor[] {
  return inputs.map((t, i) => {
    if (i !== which) return t;
    const v = t.toList();
    v[index] += delta;
    return tensor(v, { shape: [...t.shape], dtype: t.dtype, device: t.device });
  });
}

/**
 * Throws with the op, input, element and both values when any gradient element disagrees.
 * Inputs must be f64 leaves; only those with requiresGrad are checked.
 */
export function gradcheck(name: string, f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): void {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-6;
  const rtol = opts.rtol ?? 1e-5;
  for (const t of inputs) if (t.dtype !== 'f64') throw new Error(`gradcheck ${name}: inputs must be f64`);
  tidy(() => {
    const probe = noGrad(() => f(...inputs));
    const w = randn([...probe.shape], { dtype: 'f64', device: probe.device });
    const objective = (xs: Tensor[]) => noGrad(() => tidy(() => sum(mul(f(...xs), w)).item()));
    for (const t of inputs) {
      t.grad?.dispose();
      t.grad = null;
    }
    sum(mul(f(...inputs), w)).backward();
    inputs.forEach((t, which) => {
      if (!t.requiresGrad) return;
      const analytic = t.grad ? t.grad.toList() : new Array(t.numel).fill(0);
      for (let i = 0; i < t.numel; i++) {
        const plus = tidy(() => objective(perturbed(inputs, which, i, eps)));
        const minus = tidy(() => objective(perturbed(inputs, which, i, -eps)));
        const numeric = (plus - minus) / (2 * eps);
        const err = Math.abs(numeric - analytic[i]);
        if (!(err <= atol + rtol * Math.abs(numeric))) {
          throw new Error(`gradcheck ${name}: input ${which} element ${i}: analytic ${analytic[i]}, numeric ${numeric}`);
        }
      }
    });
  });
}

/** Max absolute difference between two equal-length lists. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** An f64 leaf with random values (the same on every device), requiring grad. */
export function leaf(shape: number[], scale = 1, device: Device = 'cpu'): Tensor {
  const t = randn(shape, { dtype: 'f64', std: scale, device });
  t.requiresGrad = true;
  return t;
}
