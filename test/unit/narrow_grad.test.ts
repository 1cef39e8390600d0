/**
 * narrow's backward (src/ops/narrow_grad.ts): a gradient that is the only handle on a storage laid
 * out as the whole input's gradient is completed in place (its other elements zeroed) and handed
 * on; any other takes zeros + copy. On the CPU cat's backward makes such gradients (views of its
 * own), so both paths are checked here against plain loops, including a storage shared with
 * another input's pending gradient, which must not be written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cat, mul, narrow, narrowGradsInPlace, sum, type Tensor, tensor } from '../../src/index.ts';

/** Values 1..n over `shape`, f64, optionally a leaf that requires grad. */
function ramp(shape: number[], leaf = true, from = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Array.from({ length: n }, (_, i) => from + i), { dtype: 'f64', shape, requiresGrad: leaf });
}

/** d sum(y * w) / dx for x narrowed on `dim` at [start, start + len): w's values there, 0 elsewhere. */
function expected(xShape: number[], w: number[][], dim: number, start: number, len: number, wOffset: number): number[] {
  const [R, C] = xShape;
  const out: number[] = [];
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const i = dim === 0 ? r : c;
      const inside = i >= start && i < start + len;
      out.push(!inside ? 0 : dim === 0 ? w[r - start + wOffset][c] : w[r][c - start + wOffset]);
    }
  }
  return out;
}

const rows = (t: Tensor): number[][] => {
  const v = t.toList();
  const [R, C] = t.shape;
  return Array.from({ length: R }, (_, r) => v.slice(r * C, (r + 1) * C));
};

test('narrow [4, 8] -> [4, 5] joined by cat with a constant: completed in place, zeros after the span', () => {
  const x = ramp([4, 8]);
  const w = ramp([4, 8], false, 10);
  const before = narrowGradsInPlace();
  sum(mul(cat([narrow(x, 1, 0, 5), ramp([4, 3], false)], 1), w)).backward();
  assert.is(narrowGradsInPlace() - before, 1);
  assert.equal(x.grad?.toList(), expected([4, 8], rows(w), 1, 0, 5, 0));
});

test('narrow along dim 0 in the middle ([6, 4] -> rows 2..4): zeros before and after, in place', () => {
  const x = ramp([6, 4]);
  const w = ramp([6, 4], false, 5);
  const before = narrowGradsInPlace();
  sum(mul(cat([ramp([2, 4], false), narrow(x, 0, 2, 3), ramp([1, 4], false)], 0), w)).backward();
  assert.is(narrowGradsInPlace() - before, 1);
  assert.equal(x.grad?.toList(), expected([6, 4], rows(w), 0, 2, 3, 2));
});

test('the storage shared with another input\'s gradient: both gradients right (the other is read before or not written)', () => {
  const x = ramp([4, 8]);
  const c = ramp([4, 3]);
  const w = ramp([4, 8], false, 3);
  // c's gradient flows through a node (mul by 3): the cat gradient's storage holds it too.
  sum(mul(cat([narrow(x, 1, 0, 5), mul(c, 3)], 1), w)).backward();
  assert.equal(x.grad?.toList(), expected([4, 8], rows(w), 1, 0, 5, 0));
  const wc = rows(w).flatMap((r) => r.slice(5).map((v) => 3 * v));
  assert.equal(c.grad?.toList(), wc);
});

test('the other input\'s gradient still pending in the same storage: not written (zeros + copy)', () => {
  const x = ramp([4, 8]);
  const c = ramp([4, 3]);
  const w = ramp([4, 8], false, 3);
  // narrow's node runs first here (the engine runs the last ready node first), c's piece is still pending.
  const before = narrowGradsInPlace();
  sum(mul(cat([mul(c, 3), narrow(x, 1, 3, 5)], 1), w)).backward();
  assert.is(narrowGradsInPlace() - before, 0);
  assert.equal(x.grad?.toList(), expected([4, 8], rows(w).map((r) => r.slice(3)), 1, 3, 5, 0));
  assert.equal(c.grad?.toList(), rows(w).flatMap((r) => r.slice(0, 3).map((v) => 3 * v)));
});

test('a dense gradient takes zeros + copy (nothing in place)', () => {
  const x = ramp([4, 8]);
  const w = ramp([4, 5], false, 2);
  const before = narrowGradsInPlace();
  sum(mul(narrow(x, 1, 1, 5), w)).backward();
  assert.is(narrowGradsInPlace() - before, 0);
  assert.equal(x.grad?.toList(), expected([4, 8], rows(w), 1, 1, 5, 0));
});

test.run();
