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

/** Where a tensor's storage starts and what the allocator gave it. */
const blockOf = (t: Tensor): { address: number; capacity: number } => native.storageBlock(t.id);

/** Every block 64-byte aligned, and no two live blocks overlapping. */
function assertDisjointAligned(ts: Tensor[]): void {
  const blocks = ts.map(blockOf).sort((a, b) => a.address - b.address);
  blocks.forEach((b, i) => {
    assert.is(b.address % 64, 0, `block at ${b.address} is 64-byte aligned`);
    if (i > 0) assert.ok(blocks[i - 1].address + blocks[i - 1].capacity <= b.address, `live blocks at ${blocks[i - 1].address} and ${b.address} overlap`);
  });
}

test('small freed blocks are cached by size class: reused within a class only, bounded, emptied', () => {
  const limit = allocatorStats().limit;
  emptyCache();
  try {
    const a = fillInPlace(zeros([16]), 7); // 64 bytes
    const first = blockOf(a);
    assert.is(first.capacity, 64);
    a.dispose();
    const freed = allocatorStats();
    assert.is(freed.cachedBytes, 64, 'the freed small block is kept');
    const b = zeros([15]); // 60 bytes: the same class
    assert.is(blockOf(b).address, first.address, 'the freed block of that class comes back');
    assert.is(allocatorStats().hits, freed.hits + 1);
    assert.is(allocatorStats().cachedBytes, 0);
    assert.ok(b.toList().every((v) => v === 0), 'a reused block handed out as zeros is zeroed');
    b.dispose();
    const c = zeros([17]); // 68 bytes: the next class
    assert.is(blockOf(c).capacity, 128);
    assert.is.not(blockOf(c).address, first.address, 'a block of another class is not reused');
    assert.is(allocatorStats().hits, freed.hits + 1);
    assert.is(allocatorStats().misses, freed.misses + 1);
    assert.is(allocatorStats().cachedBytes, 64);
    c.dispose();
    assert.is(allocatorStats().cachedBytes, 64 + 128);

    // Classes 1/8 of a power of two apart above 512 bytes: 1000 and 1024 bytes share one.
    const d = zeros([250]);
    assert.is(blockOf(d).capacity, 1024);
    const dAt = blockOf(d).address;
    d.dispose();
    const e = zeros([256]);
    assert.is(blockOf(e).address, dAt);
    e.dispose();

    emptyCache();
    assert.is(allocatorStats().cachedBytes, 0, 'emptyCache frees small blocks too');
    const missed = allocatorStats().misses;
    zeros([16]).dispose();
    assert.is(allocatorStats().misses, missed + 1, 'after emptyCache the next allocation misses');

    setCacheLimit(100);
    emptyCache();
    const [f, g] = [zeros([16]), zeros([16])];
    f.dispose();
    g.dispose();
    assert.is(allocatorStats().cachedBytes, 64, 'the limit bounds small blocks too');
    setCacheLimit(limit);

    // A burst of one size: some blocks are kept, not all (each class's list is bounded).
    emptyCache();
    const burst = Array.from({ length: 5000 }, () => zeros([16]));
    for (const t of burst) t.dispose();
    const kept = allocatorStats().cachedBytes / 64;
    assert.ok(kept >= 256 && kept < burst.length, `kept ${kept} of ${burst.length} blocks of one class`);
  } finally {
    setCacheLimit(limit);
    emptyCache();
  }
});

test('reused small blocks never alias live ones: values intact, blocks aligned and disjoint', () => {
  const sizes = [1, 3, 15, 16, 17, 100, 128, 129, 250, 1000, 4096, 5000, 16384, 60000, 70000];
  const made: { t: Tensor; v: number }[] = [];
  let next = 1;
  const make = (n: number) => {
    const t = fillInPlace(zeros([n]), next);
    made.push({ t, v: next++ });
  };
  for (let r = 0; r < 20; r++) for (const n of sizes) make(n);
  assertDisjointAligned(made.map((m) => m.t));
  // Free every other tensor, then allocate as many again: these come from the blocks just freed.
  const hits = allocatorStats().hits;
  const freed = made.filter((_, i) => i % 2 === 1);
  for (const m of freed) m.t.dispose();
  const live = made.filter((_, i) => i % 2 === 0);
  made.length = 0;
  made.push(...live);
  for (let r = 0; r < 10; r++) for (const n of sizes) make(n);
  assert.ok(allocatorStats().hits >= hits + freed.length, 'the new tensors reuse the freed blocks');
  assertDisjointAligned(made.map((m) => m.t));
  for (const m of made) assert.ok(m.t.toList().every((x) => x === m.v), `a tensor of ${m.t.numel} keeps its value ${m.v}`);
  // Large blocks keep their alignment too (2 MiB from 2 MiB up).
  const big = [zeros([1 << 16]), zeros([1 << 20])];
  assertDisjointAligned([...made.map((m) => m.t), ...big]);
  assert.is(blockOf(big[1]).address % (2 << 20), 0);
  for (const t of [...made.map((m) => m.t), ...big]) t.dispose();
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
