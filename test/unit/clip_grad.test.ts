/** clipGradNorm against a plain-JS reference of torch.nn.utils.clip_grad_norm_. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { clipGradNorm, type Tensor, tensor } from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { deviceTest } from '../helpers/devices.ts';

/** Deterministic values spanning several magnitudes. */
const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(seed + i * 1.7) * 10 ** ((i % 5) - 2));

// The reference: the p-norm of all gradient elements together, scale = maxNorm / (norm + 1e-6)
// applied when it is below 1.
function reference(grads: number[][], maxNorm: number, p: number): { norm: number; clipped: number[][] } {
  const all = grads.flat().map(Math.abs);
  const norm = p === Number.POSITIVE_INFINITY ? Math.max(...all) : all.reduce((s, x) => s + x ** p, 0) ** (1 / p);
  const coef = maxNorm / (norm + 1e-6);
  return { norm, clipped: coef < 1 ? grads.map((g) => g.map((x) => x * coef)) : grads };
}

function withGrads(dtype: 'f32' | 'f64', grads: number[][], shapes: number[][], device: Device = 'cpu'): Tensor[] {
  return grads.map((g, i) => {
    const p = tensor(new Array(g.length).fill(0), { shape: shapes[i], dtype, device, requiresGrad: true });
    p.grad = tensor(g, { shape: shapes[i], dtype, device });
    return p;
  });
}

const SHAPES = [[3, 4], [7], [50, 100]]; // the last spans several native chunks

for (const dtype of ['f64', 'f32'] as const) {
  deviceTest(`clipGradNorm ${dtype}: norms of order 2, 1, 3 and inf; clipping and the no-clip case`, (dev) => {
    // f32 grads: the reference reads the same f32 values, so both sums are of identical inputs.
    const round = (x: number) => (dtype === 'f32' ? Math.fround(x) : x);
    const grads = SHAPES.map((s, i) => values(s.reduce((a, b) => a * b, 1), i).map(round));
    for (const p of [2, 1, 3, Number.POSITIVE_INFINITY]) {
      const ref = reference(grads, 1, p);
      for (const maxNorm of [ref.norm / 4, ref.norm * 2]) {
        const want = reference(grads, maxNorm, p);
        const params = withGrads(dtype, grads, SHAPES, dev);
        const norm = clipGradNorm(params, maxNorm, { normType: p === Number.POSITIVE_INFINITY ? 'inf' : p });
        assert.ok(Math.abs(norm - want.norm) <= 1e-12 * want.norm, `p=${p}: norm ${norm} vs ${want.norm}`);
        const tol = dtype === 'f64' ? 1e-12 : 1e-6;
        params.forEach((t, i) => {
          const have = (t.grad as Tensor).toList();
          want.clipped[i].forEach((w, j) => assert.ok(Math.abs(have[j] - w) <= tol * Math.abs(w) + 1e-30, `p=${p} max=${maxNorm} grad ${i}[${j}]: ${have[j]} vs ${w}`));
          if (maxNorm > want.norm) assert.equal(have, grads[i], 'unclipped grads are untouched');
          t.dispose();
        });
      }
    }
  });
}

test('clipGradNorm: params without grads are skipped; none at all gives 0', () => {
  const [a, b] = withGrads('f64', [[3, 4], [1]], [[2], [1]]);
  b.grad?.dispose();
  b.grad = null;
  assert.is(clipGradNorm([a, b], 10), 5);
  assert.is(clipGradNorm(b, 1), 0);
  assert.is(clipGradNorm([], 1), 0);
  const norm = clipGradNorm(a, 1);
  assert.is(norm, 5);
  const g = (a.grad as Tensor).toList();
  assert.ok(Math.abs(g[0] - 3 / (5 + 1e-6)) < 1e-15 && Math.abs(g[1] - 4 / (5 + 1e-6)) < 1e-15);
  a.dispose();
  b.dispose();
});

test('clipGradNorm: a non-finite norm is returned with grads untouched, or throws with errorIfNonfinite', () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
    const params = withGrads('f32', [[1, 2], [bad, 3]], [[2], [2]]);
    for (const normType of [2, 'inf'] as const) {
      const norm = clipGradNorm(params, 1, { normType });
      assert.ok(Number.isNaN(bad) ? Number.isNaN(norm) : norm === Number.POSITIVE_INFINITY, `${normType}: ${norm}`);
      assert.equal((params[0].grad as Tensor).toList(), [1, 2]);
      assert.throws(() => clipGradNorm(params, 1, { normType, errorIfNonfinite: true }), /the total norm of order .* of the gradients is (NaN|Infinity)/);
    }
    for (const p of params) p.dispose();
  }
});

test('clipGradNorm: bad arguments are rejected', () => {
  const [a] = withGrads('f32', [[1]], [[1]]);
  assert.throws(() => clipGradNorm(a, Number.NaN), /maxNorm must be a finite number >= 0/);
  assert.throws(() => clipGradNorm(a, 1, { normType: 0 }), /normType must be a positive number or 'inf'/);
  assert.throws(() => clipGradNorm(a, 1, { norm_type: 2 } as never), /unknown key "norm_type" \(did you mean "normType"\?\)/);
  a.dispose();
});

test.run();
