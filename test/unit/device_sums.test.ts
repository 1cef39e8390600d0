/**
 * DeviceSums (normPowInto accumulated into f64 slots) against the per-tensor normPow sums it
 * replaced, on the CPU: bit for bit (the same fixed-order chunk reduction, each tensor's sum
 * added in turn) for p = 1, 2, 3 and max, every float dtype, strided and empty tensors, sizes
 * across the chunk boundaries; NaN and infinity propagate; hasOverflow, hasOverflowAcross,
 * clipGradNorm and GradSquares keep their answers; bad input is refused by name.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hasOverflowAcross } from '../../src/engine/overflow.ts';
import { clipGradNorm, hasOverflow, randn, type Tensor, tensor } from '../../src/index.ts';
import { DeviceSums } from '../../src/optim/device_sums.ts';
import { normPow } from '../../src/optim/fused.ts';
import { GradSquares } from '../../src/optim/grad_squares.ts';

/** The old path: one normPow per tensor (contiguous copy first), combined on the host. */
function perTensor(ts: Tensor[], p: number): number {
  let acc = 0;
  for (const t of ts) {
    const src = t.isContiguous ? t : t.contiguous();
    const v = normPow({ dtype: src.dtype, id: src.id, off: src.offset }, src.numel, p);
    if (src !== t) src.dispose();
    acc = p === Number.POSITIVE_INFINITY ? (Number.isNaN(v) || v > acc ? v : acc) : acc + v;
  }
  return acc;
}

function viaSums(ts: Tensor[], p: number): number {
  const s = new DeviceSums('cpu');
  try {
    for (const t of ts) s.add(t, p);
    return s.read()[0];
  } finally {
    s.dispose();
  }
}

const SIZES = [0, 1, 7, 4095, 4096, 4097, 3 * 4096 + 5, 40_000];

test('equal to the per-tensor normPow sums bit for bit: p = 1, 2, 3, inf; f32, f64, bf16, f16; chunk boundaries', () => {
  for (const dtype of ['f32', 'f64', 'bf16', 'f16'] as const) {
    const ts = SIZES.map((n) => randn([n]).to(dtype));
    ts.push(randn([33, 17]).to(dtype).transpose(0, 1));   // strided
    for (const p of [1, 2, 3, Number.POSITIVE_INFINITY]) {
      const want = perTensor(ts, p);
      const got = viaSums(ts, p);
      assert.ok(Object.is(got, want), `${dtype} p=${p}: ${got} vs ${want}`);
      assert.ok(want > 0);
    }
    for (const t of ts) t.dispose();
  }
});

test('NaN and infinity propagate (sum and max), whatever comes after; a NaN slot stays NaN', () => {
  const clean = randn([5000]);
  const inf = tensor([1, Number.POSITIVE_INFINITY, 2]);
  const nan = tensor([1, Number.NaN, 2]);
  for (const p of [1, 2, Number.POSITIVE_INFINITY]) {
    assert.is(viaSums([clean, inf, clean], p), Number.POSITIVE_INFINITY, `inf p=${p}`);
    assert.ok(Number.isNaN(viaSums([clean, nan, clean], p)), `NaN p=${p}`);
    assert.ok(Number.isNaN(viaSums([nan, inf, clean], p)), `NaN then inf p=${p}`);
    assert.ok(Number.isNaN(viaSums([inf, nan], p)), `inf then NaN p=${p}`);
  }
  assert.is(viaSums([inf.to('bf16'), clean.to('f16')], 2), Number.POSITIVE_INFINITY);
  for (const t of [clean, inf, nan]) t.dispose();
});

test('slots: each accumulates on its own; copySlot; read returns every slot; bad slots, dtypes and p are refused', () => {
  const a = tensor([3, 4]);
  const b = tensor([1, 1, 1]);
  const s = new DeviceSums('cpu', 3);
  s.add(a, 2, 0);
  s.add(b, 1, 2);
  s.copySlot(0, 1);
  s.add(b, 2, 1);
  assert.equal(s.read(), [25, 28, 3]);
  assert.throws(() => s.add(a, 2, 3), /DeviceSums\.add: slot 3 is outside the 3 slot\(s\)/);
  assert.throws(() => s.add(a, 0), /DeviceSums\.add: p must be positive, got 0/);
  const ints = tensor([1, 2], { dtype: 'i32' });
  assert.throws(() => s.add(ints, 2), /DeviceSums\.add: i32 tensor of shape \[2\] is not a floating-point tensor/);
  assert.throws(() => s.allReduce([], 2, 2), /DeviceSums\.allReduce: slots 2\.\.3 are outside the 3 slot\(s\)/);
  assert.throws(() => new DeviceSums('cpu', 0), /DeviceSums: slots must be a positive integer, got 0/);
  s.dispose();
  for (const t of [a, b, ints]) t.dispose();
});

test('hasOverflow / hasOverflowAcross / clipGradNorm keep their answers', () => {
  const g = [randn([100]), randn([10, 10]).transpose(0, 1), randn([4097]).to('bf16')];
  assert.is(hasOverflow(g), false);
  assert.is(hasOverflowAcross(g, [null]), false);
  const bad = tensor([0, Number.POSITIVE_INFINITY]).to('f16');
  assert.is(hasOverflow([...g, null, undefined, bad]), true);
  assert.is(hasOverflowAcross([bad], []), true);
  assert.throws(() => hasOverflow([g[0], 3 as unknown as Tensor]), /hasOverflow: tensors\[1\] is not a Tensor/);
  // clipGradNorm's total is the square root of the same sum.
  const params = g.map((t) => {
    const p = randn([...t.shape]);
    p.grad = t;
    return p;
  });
  const want = Math.sqrt(perTensor(g, 2));
  assert.ok(Object.is(clipGradNorm(params, 1e9), want));
  const wantMax = perTensor(g, Number.POSITIVE_INFINITY);
  assert.ok(Object.is(clipGradNorm(params, 1e9, { normType: 'inf' }), wantMax));
  for (const t of [...params, ...g, bad]) t.dispose();
});

test('GradSquares: one sum for local and global (no groups), follows an in-place scaling once read', () => {
  const g = [tensor([3, 4]), tensor([12])];
  const sq = new GradSquares(g, []);
  assert.is(sq.global(), 169);
  assert.is(sq.local(), 169);
  sq.scaled(0.5);
  assert.is(sq.global(), 169 / 4);
  const unread = new GradSquares(g, []);
  unread.scaled(0.5);                 // not read yet: it will see the gradients as they are then
  assert.is(unread.local(), 169);
  for (const t of g) t.dispose();
});

test.run();
