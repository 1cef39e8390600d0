// conv2d and linear on f16 tensors (DeepSpeed's fp16 mode on CPUs): computed in f32 on the f16
// values and rounded to f16; conv2d saves the f16 tensors for backward, not f32 copies. Checked against the same op in f32 on the same (f16-representable)
// values: outputs and every gradient within 2e-3 relative to the largest magnitude (f16 keeps 11
// significant bits, 2^-11 ≈ 4.9e-4 per rounding; the f32 math adds nothing comparable), and in f16.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { conv2d, linear, manualSeed, memoryStats, mul, randn, sum, type Tensor, tidy } from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { deviceTest } from '../helpers/devices.ts';

/** max |a - b| / max |b| over the elements. */
function relErr(a: Tensor, b: Tensor): number {
  const x = a.toArray() as Float32Array;
  const y = b.toArray() as Float32Array;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    diff = Math.max(diff, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return diff / scale;
}

/** f16 and f32 leaves holding the same values (drawn in f32, rounded to f16). */
function pair(shape: number[], device: Device): [Tensor, Tensor] {
  const h = randn(shape, { device }).to('f16');
  const h16 = h.detach().requiresGrad_();
  const h32 = h.to('f32').detach().requiresGrad_();
  return [h16, h32];
}

function check(name: string, op: (a: Tensor, b: Tensor, c: Tensor) => Tensor, shapes: number[][], device: Device = 'cpu'): void {
  tidy(() => {
    manualSeed(7);
    const leaves = shapes.map((s) => pair(s, device));
    const y16 = op(leaves[0][0], leaves[1][0], leaves[2][0]);
    const y32 = op(leaves[0][1], leaves[1][1], leaves[2][1]);
    assert.is(y16.dtype, 'f16', `${name}: output dtype`);
    assert.ok(relErr(y16.to('f32'), y32) < 2e-3, `${name}: output ${relErr(y16.to('f32'), y32)}`);
    // A loss with a non-uniform upstream gradient.
    const g = randn([...y32.shape], { device });
    sum(mul(y16.to('f32'), g)).backward();
    sum(mul(y32, g)).backward();
    leaves.forEach(([a, b], i) => {
      assert.is(a.grad?.dtype, 'f16', `${name}: grad ${i} dtype`);
      const e = relErr((a.grad as Tensor).to('f32'), b.grad as Tensor);
      assert.ok(e < 2e-3, `${name}: grad ${i} ${e}`);
    });
  });
}

deviceTest('conv2d in f16 (3x3 padded, 1x1, strided 7x7 with bias) matches f32 on the same values', (dev) => {
  check('conv 3x3', (x, w, b) => conv2d(x, w, b, { padding: 1 }), [[2, 8, 6, 6], [16, 8, 3, 3], [16]], dev);
  check('conv 1x1', (x, w, b) => conv2d(x, w, b), [[2, 16, 4, 4], [32, 16, 1, 1], [32]], dev);
  check('conv 7x7/2', (x, w, b) => conv2d(x, w, b, { stride: 2, padding: 3 }), [[1, 3, 16, 16], [8, 3, 7, 7], [8]], dev);
});

deviceTest('linear in f16 matches f32 on the same values', (dev) => {
  check('linear', (x, w, b) => linear(x, w, b), [[5, 64], [10, 64], [10]], dev);
});

test('an f16 conv keeps no f32 copies for backward: between forward and backward only its f16 output is held', () => {
  tidy(() => {
    const x = randn([1, 256, 4, 4]).to('f16').requiresGrad_();
    const w = randn([256, 256, 3, 3]).to('f16').requiresGrad_(); // f32 copy: 2.25 MiB
    const before = memoryStats().cpu?.activation.current ?? 0;
    const y = conv2d(x, w, null, { padding: 1 });
    const held = (memoryStats().cpu?.activation.current ?? 0) - before;
    assert.ok(held <= 2 * y.numel * 2, `held ${held} bytes after forward, output ${y.numel * 2}`);
    sum(y.to('f32')).backward();
    assert.is(w.grad?.dtype, 'f16');
  });
});

test('f16 ops still refuse mixed dtypes, naming both', () => {
  const x = randn([1, 2, 4, 4]).to('f16');
  assert.throws(() => conv2d(x, randn([3, 2, 3, 3])), /conv2d: x is f16 .*weight is f32/);
  assert.throws(() => linear(randn([2, 4]).to('f16'), randn([3, 4])), /linear: x is f16, weight is f32/);
});

test.run();
