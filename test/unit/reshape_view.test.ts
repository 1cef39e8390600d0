/**
 * reshape() of a strided tensor is a view when the layout allows one (src/ops/view_strides.ts):
 * the strides agree with PyTorch's rule on hand-checked cases, the view shares storage, and
 * values and gradients equal those of reshaping a contiguous copy exactly (the same elements
 * moved, no arithmetic); layouts that need a copy still copy. Per device (CPU, and cuda:0 under
 * MT_TEST_DEVICES).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mul, narrow, permute, randn, reshape, split, sum, transpose } from '../../src/index.ts';
import { viewStrides } from '../../src/ops/view_strides.ts';
import { deviceTest } from '../helpers/devices.ts';

test('viewStrides: splits and merges within runs, null across gaps', () => {
  assert.equal(viewStrides([2, 64, 128], [24576, 384, 1], [2, 64, 2, 64]), [24576, 384, 64, 1]);
  assert.equal(viewStrides([2, 3, 4], [12, 4, 1], [6, 4]), [4, 1]);
  assert.equal(viewStrides([2, 3, 4], [24, 8, 1], [6, 4]), [8, 1]); // narrow of the last dim: rows still evenly spaced
  assert.is(viewStrides([2, 3, 4], [24, 8, 1], [2, 12]), null); // a row of 12 would cross the gap after each 4
  assert.is(viewStrides([4, 6], [1, 4], [24]), null); // a transpose
  assert.equal(viewStrides([4, 6], [1, 4], [4, 2, 3]), [1, 12, 4]);
  assert.equal(viewStrides([3, 1, 5], [5, 99, 1], [1, 15, 1]), [15, 1, 1]);
  assert.equal(viewStrides([0, 3], [3, 1], [3, 0]), [0, 1]);
  assert.is(viewStrides([2, 3], [3, 1], [5]), null);
});

deviceTest('reshape of a qkv-style narrow is a view; values and gradients equal reshaping a copy', (dev) => {
  const x = randn([2, 5, 12], { requiresGrad: true, device: dev });
  const w = randn([2, 5, 2, 2], { device: dev });
  const [, k] = split(x, 4, -1);
  const r = reshape(k, [2, 5, 2, 2]);
  assert.equal(r.strides, [60, 12, 2, 1]);
  assert.is(r.storage, x.storage, 'shares the input storage');
  const ref = reshape(k.contiguous(), [2, 5, 2, 2]);
  assert.equal(r.toArray(), ref.toArray());
  const loss = sum(mul(permute(r, [0, 2, 1, 3]), permute(w, [0, 2, 1, 3])));
  loss.backward();
  const g = x.grad?.toArray() as Float32Array;
  const expect = new Float32Array(2 * 5 * 12);
  const wv = w.toArray() as Float32Array;
  for (let b = 0; b < 2; b++) for (let t = 0; t < 5; t++) for (let c = 0; c < 4; c++) expect[b * 60 + t * 12 + 4 + c] = wv[b * 20 + t * 4 + c];
  assert.equal(Array.from(g), Array.from(expect));
});

deviceTest('reshape that needs a copy still copies (a transpose flattened)', (dev) => {
  const x = randn([3, 4], { requiresGrad: true, device: dev });
  const r = reshape(transpose(x, 0, 1), [12]);
  assert.ok(r.isContiguous);
  assert.is.not(r.storage, x.storage);
  const xs = x.toArray() as Float32Array;
  assert.equal(Array.from(r.toArray() as Float32Array), [0, 1, 2, 3].flatMap((j) => [0, 1, 2].map((i) => xs[i * 4 + j])));
  sum(mul(r, r)).backward();
  assert.equal(Array.from(x.grad?.toArray() as Float32Array), Array.from(xs, (v) => 2 * v));
});

deviceTest('narrow of the middle dim reshaped to merge leading dims', (dev) => {
  const x = randn([3, 6, 4], { device: dev });
  const n = narrow(x, 1, 2, 3);
  const r = reshape(n, [3, 12]);
  assert.equal(r.toArray(), reshape(n.contiguous(), [3, 12]).toArray());
});

test.run();
