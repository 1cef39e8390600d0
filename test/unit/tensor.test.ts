import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {addInPlace, 
  allocatorStats, 
  cat, emptyCache, expand, fillInPlace, liveStorages, manualSeed, memoryStats, mul, narrow, native, noGrad, permute, rand, randn, 
  resetPeakMemoryStats, reshape,setCacheLimit,split, sum, type Tensor,tanh, tensor, tidy, transpose, view, zeros, 
} from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf } from '../helpers/gradcheck.ts';

deviceTest('dtypes round-trip through native storage', (dev) => {
  tidy(() => {
    assert.equal(tensor([1.5, -2], { dtype: 'f64', device: dev }).toList(), [1.5, -2]);
    assert.equal(tensor([7, -3], { dtype: 'i32', device: dev }).toList(), [7, -3]);
    assert.equal(tensor([2 ** 40, -1], { dtype: 'i64', device: dev }).toList(), [2 ** 40, -1]);
    assert.equal(tensor(new BigInt64Array([5n, -2n]), { dtype: 'i64', device: dev }).toList(), [5, -2]);
    assert.equal(tensor(new BigInt64Array([3n]), { dtype: 'f32', device: dev }).toList(), [3]);
    assert.equal(tensor([1, 0.5, -3.25], { dtype: 'f16', device: dev }).toList(), [1, 0.5, -3.25]);
    // bf16 keeps 8 mantissa bits and rounds to nearest even.
    assert.equal(tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.140625], { dtype: 'bf16', device: dev }).toList(), [1, 1 + 2 ** -6, 3.140625]);
    assert.equal(tensor([1.75, 2.5], { device: dev }).to('bf16').to('f64').toList(), [1.75, 2.5]);
  });
});

deviceTest('views share storage and follow strides', (dev) => {
  tidy(() => {
    const x = tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'f64', device: dev });
    assert.equal(transpose(x, 0, 1).toList(), [1, 4, 2, 5, 3, 6]);
    assert.equal(view(x, [3, -1]).shape, [3, 2]);
    assert.equal(narrow(x, 1, 1, 2).toList(), [2, 3, 5, 6]);
    assert.equal(permute(reshape(x, [1, 2, 3]), [2, 0, 1]).toList(), [1, 4, 2, 5, 3, 6]);
    assert.equal(reshape(transpose(x, 0, 1), [6]).toList(), [1, 4, 2, 5, 3, 6]);
    assert.equal(expand(tensor([[1], [2]], { device: dev }), [2, 3]).toList(), [1, 1, 1, 2, 2, 2]);
    assert.equal(cat([x, tensor([[7, 8, 9]], { dtype: 'f64', device: dev })], 0).toList(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(cat([x, x], 1).shape, [2, 6]);
    assert.equal(split(x, [1, 2], 1).map((t) => t.toList()), [[1, 4], [2, 3, 5, 6]]);
    const before = liveStorages();
    const v = transpose(x, 0, 1);
    assert.is(liveStorages(), before, 'a view allocates nothing');
    v.dispose();
  });
});

deviceTest('view-op gradients (finite differences)', (dev) => {
  tidy(() => {
    gradcheck('transpose', (t) => mul(transpose(t, 0, 1), tensor([[1, 2], [3, 4], [5, 6]], { dtype: 'f64', device: dev })), [leaf([2, 3], 1, dev)]);
    gradcheck('permute+reshape', (t) => reshape(permute(t, [2, 0, 1]), [4, 6]), [leaf([2, 3, 4], 1, dev)]);
    gradcheck('narrow', (t) => narrow(t, 1, 1, 2), [leaf([3, 4], 1, dev)]);
    gradcheck('cat', (a, b) => cat([a, b], 1), [leaf([2, 2], 1, dev), leaf([2, 3], 1, dev)]);
    gradcheck('split', (t) => mul(split(t, 2, 0)[1], 3), [leaf([5, 2], 1, dev)]);
    gradcheck('expand', (t) => expand(t, [3, 2, 4]), [leaf([2, 1], 1, dev)]);
  });
});

test('bad shapes throw errors naming the op and shapes', () => {
  tidy(() => {
    const x = tensor([[1, 2, 3], [4, 5, 6]]);
    assert.throws(() => view(transpose(x, 0, 1), [6]), /view: the tensor \[3, 2\] is not contiguous/);
    assert.throws(() => reshape(x, [4, 2]), /reshape: shape \[4, 2\] has 8 elements, the tensor \[2, 3\] has 6/);
    assert.throws(() => narrow(x, 1, 2, 2), /narrow: \[2, 4\) is outside dim 1 of size 3/);
    assert.throws(() => transpose(x, 0, 2), /transpose: dim 2 is out of range for a tensor of rank 2/);
    assert.throws(() => cat([x, tensor([1, 2])], 0), /cat: \[2\] f32 does not match \[2, 3\] f32/);
    assert.throws(() => x.item(), /item: the tensor has 6 elements/);
    assert.throws(() => tensor([1, 2, 3], { shape: [2, 2] }), /3 values do not fill shape \[2, 2\]/);
    assert.throws(() => tensor([1], { dtype: 'f8' as never }), /unknown dtype "f8"/);
  });
});

test('use after dispose is an error, not a crash', () => {
  const t = tensor([1, 2]);
  t.dispose();
  t.dispose(); // idempotent
  assert.throws(() => t.toList(), /was disposed/);
});

test('the RNG is seeded and its stream does not depend on sharding', () => {
  manualSeed(42);
  const a = tidy(() => randn([4, 6], { dtype: 'f64' }).toList());
  manualSeed(42);
  const b = tidy(() => randn([4, 6], { dtype: 'f64' }).toList());
  assert.equal(a, b);
  // Elements [12, 24) generated alone equal that slice of the full tensor.
  tidy(() => {
    const shard = zeros([12], { dtype: 'f64' });
    native.random(1, 1, shard.id, 0, 12, 42, 0, 12, 0, 1);
    assert.equal(shard.toList(), a.slice(12));
  });
  const u = tidy(() => rand([20000], { low: -1, high: 1 }).toList());
  const meanU = u.reduce((s, v) => s + v, 0) / u.length;
  assert.ok(Math.abs(meanU) < 0.02 && Math.min(...u) >= -1 && Math.max(...u) < 1);
  const n = tidy(() => randn([20000], { dtype: 'f64', mean: 2, std: 3 }).toList());
  const m = n.reduce((s, v) => s + v, 0) / n.length;
  const sd = Math.sqrt(n.reduce((s, v) => s + (v - m) ** 2, 0) / n.length);
  assert.ok(Math.abs(m - 2) < 0.1 && Math.abs(sd - 3) < 0.1, `mean ${m} std ${sd}`);
});

test('autograd: accumulation, diamonds, noGrad, retainGraph, hooks', () => {
  tidy(() => {
    const x = tensor([1, 2, 3], { dtype: 'f64', requiresGrad: true });
    let fired = 0;
    x.gradReadyHooks.push(() => fired++);
    const y = mul(x, x); // used twice below: a diamond
    const loss = sum(mul(y, y).add(y));
    loss.backward(undefined, { retainGraph: true });
    // d/dx (x^4 + x^2) = 4x^3 + 2x
    assert.equal(x.grad?.toList(), [6, 36, 114]);
    assert.is(fired, 1);
    loss.backward();
    assert.equal(x.grad?.toList(), [12, 72, 228], 'gradients accumulate');
    assert.throws(() => loss.backward(), /a second time: its saved tensors were freed/);
    assert.is(noGrad(() => mul(x, x)).gradFn, null);
    assert.throws(() => sum(tensor([1, 2])).backward(), /does not require grad/);
    assert.throws(() => mul(x, 2).backward(), /pass a gradient for a non-scalar output/);
    assert.throws(() => addInPlace(x, x), /in-place update of a tensor that requires grad/);
  });
});

test('memory is tagged, peaks reset, and long loops stay flat', () => {
  const w = tensor([0.1, 0.2, 0.3, 0.4], { requiresGrad: true, tag: 'param' });
  assert.is(memoryStats().cpu.param.current >= 16, true);
  const run = () =>
    tidy(() => {
      const h = tanh(mul(w, tensor([1, 2, 3, 4])));
      sum(mul(h, h)).backward();
      noGrad(() => addInPlace(w, w.grad as Tensor, -0.01));
    });
  run();
  const live = liveStorages();
  const current = memoryStats().cpu;
  resetPeakMemoryStats();
  for (let i = 0; i < 1000; i++) run();
  assert.is(liveStorages(), live);
  assert.equal(memoryStats().cpu.activation.current, current.activation.current);
  assert.equal(memoryStats().cpu.grad.current, current.grad.current);
  assert.ok(memoryStats().cpu.activation.peak > current.activation.current, 'peak saw the step');
  assert.ok(memoryStats().cpu.grad.current > 0, 'w.grad is tagged grad');
  w.dispose();
});

test('large freed blocks are cached and reused; zeros() from a reused block are zero', () => {
  const n = 1 << 18; // 1 MiB of f32
  const before = allocatorStats();
  tidy(() => {
    fillInPlace(zeros([n]), 7);
  });
  const afterFirst = allocatorStats();
  assert.ok(afterFirst.cachedBytes >= 4 * n, 'the freed block is kept');
  const z = zeros([n]);
  assert.is(allocatorStats().hits, afterFirst.hits + 1, 'the next allocation of that size reuses it');
  assert.ok(z.toList().every((v) => v === 0), 'a reused block handed out as zeros is zeroed');
  z.dispose();
  emptyCache();
  assert.is(allocatorStats().cachedBytes, 0);
  setCacheLimit(0);
  tidy(() => {
    zeros([n]);
  });
  assert.is(allocatorStats().cachedBytes, 0, 'a zero limit disables the cache');
  setCacheLimit(before.limit);
  assert.throws(() => setCacheLimit(-1), /setCacheLimit: bytes must be a non-negative integer/);
});

deviceTest('a channels-last leaf gets its gradient in its own layout, accumulated in place', (dev) => {
  tidy(() => {
    const x = permute(randn([2, 4, 5, 3], { dtype: 'f64', device: dev }), [0, 3, 1, 2]); // [2, 3, 4, 5] channels-last
    x.requiresGrad = true;
    sum(mul(x, x)).backward();
    sum(mul(x, x)).backward();
    const g = x.grad as Tensor;
    assert.equal(g.strides, x.strides);
    const want = x.toList().map((v) => 4 * v);
    g.toList().forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-12));
  });
});

test.run();
