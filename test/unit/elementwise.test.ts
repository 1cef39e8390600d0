import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, div, exp, gelu, liveStorages, log, mean, mul, neg, pow, relu, sigmoid, sqrt, sub, sum, tanh, tensor, tidy } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf } from '../helpers/gradcheck.ts';

deviceTest('broadcast add/sub/mul/div match a plain loop', (dev) => {
  tidy(() => {
    const a = tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'f64', device: dev });
    const b = tensor([10, 20, 30], { dtype: 'f64', device: dev });
    assert.equal(add(a, b).toList(), [11, 22, 33, 14, 25, 36]);
    assert.equal(sub(a, b).toList(), [-9, -18, -27, -6, -15, -24]);
    assert.equal(mul(a, b).toList(), [10, 40, 90, 40, 100, 180]);
    assert.equal(div(b, a).toList(), [10, 10, 10, 2.5, 4, 5]);
  });
});

deviceTest('same-shape binary ops over many 4096-element chunks (the flat path, threaded on the CPU) match a plain loop', (dev) => {
  tidy(() => {
    const n = 9 * 4096 + 17; // chunks split across threads, and a partial last one
    const av = Array.from({ length: n }, (_, i) => (i % 1000) * 0.5 - 250);
    const bv = Array.from({ length: n }, (_, i) => ((n - i) % 777) * 0.25 + 1);
    const a = tensor(av, { device: dev });
    const b = tensor(bv, { device: dev });
    const f = Math.fround;
    const check = (name: string, got: number[], want: (x: number, y: number) => number) => {
      for (let i = 0; i < n; i++) if (got[i] !== f(want(f(av[i]), f(bv[i])))) assert.unreachable(`${name}: element ${i} of ${n} is ${got[i]}`);
    };
    check('add', add(a, b).toList(), (x, y) => x + y);
    check('sub', sub(a, b).toList(), (x, y) => x - y);
    check('mul', mul(a, b).toList(), (x, y) => x * y);
    check('div', div(a, b).toList(), (x, y) => x / y);
    // Broadcast and copy paths split their long rows the same way: one row against a scalar, two
    // rows against one, a cast, and a transposed copy whose rows are long.
    const s = tensor([3], { device: dev });
    check('mul by a [1]', mul(a, s).toList(), (x) => x * 3);
    const two = tensor([...av, ...bv], { shape: [2, n], device: dev });
    const sum2 = add(two, b).toList();
    check('add row 0', sum2.slice(0, n), (x, y) => x + y);
    check('add row 1', sum2.slice(n), (_, y) => y + y);
    check('cast to f64', a.to('f64').toList(), (x) => x);
    const data = [...av, ...bv];
    const t = tensor(data, { shape: [n, 2], device: dev }).transpose(0, 1).contiguous().toList();
    for (let i = 0; i < 2 * n; i++) if (t[i] !== f(data[2 * (i % n) + Math.floor(i / n)])) assert.unreachable(`transposed copy: element ${i}`);
  });
});

deviceTest('binary gradients with broadcasting (finite differences)', (dev) => {
  tidy(() => {
    gradcheck('add', add, [leaf([2, 3], 1, dev), leaf([3], 1, dev)]);
    gradcheck('sub', sub, [leaf([2, 1, 3], 1, dev), leaf([4, 1], 1, dev)]);
    gradcheck('mul', mul, [leaf([2, 3], 1, dev), leaf([2, 1], 1, dev)]);
    const pos = tensor([1.5, 2, 2.5, 3], { dtype: 'f64', device: dev, requiresGrad: true });
    gradcheck('div', div, [leaf([3, 4], 1, dev), pos]);
  });
});

deviceTest('unary gradients (finite differences)', (dev) => {
  tidy(() => {
    const pos = () => tensor([0.5, 1.2, 2.3, 0.7, 1.9, 3.1], { dtype: 'f64', shape: [2, 3], device: dev, requiresGrad: true });
    gradcheck('neg', neg, [leaf([2, 3], 1, dev)]);
    gradcheck('exp', exp, [leaf([2, 3], 1, dev)]);
    gradcheck('log', log, [pos()]);
    gradcheck('sqrt', sqrt, [pos()]);
    gradcheck('pow', (x) => pow(x, 3), [leaf([5], 1, dev)]);
    gradcheck('relu', relu, [tensor([-1.5, -0.3, 0.4, 2.0], { dtype: 'f64', device: dev, requiresGrad: true })]);
    gradcheck('gelu', gelu, [leaf([7], 2, dev)]);
    gradcheck('tanh', tanh, [leaf([6], 1, dev)]);
    gradcheck('sigmoid', sigmoid, [leaf([6], 1, dev)]);
    gradcheck('scalar ops', (x) => add(mul(x, 3), 2).div(4).sub(1), [leaf([4], 1, dev)]);
  });
});

deviceTest('sum and mean over dims, with keepDim', (dev) => {
  tidy(() => {
    const x = tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'f64', device: dev });
    assert.equal(sum(x).toList(), [21]);
    assert.equal(sum(x, 0).toList(), [5, 7, 9]);
    assert.equal(mean(x, 1, true).shape, [2, 1]);
    assert.equal(mean(x, -1).toList(), [2, 5]);
    gradcheck('sum', (t) => sum(t, [0, 2]), [leaf([2, 3, 4], 1, dev)]);
    gradcheck('mean', (t) => mean(t, 1, true), [leaf([2, 3, 4], 1, dev)]);
  });
});

deviceTest('dtype mismatch and bad scalars throw errors naming the op and shapes', (dev) => {
  tidy(() => {
    const a = tensor([1, 2], { dtype: 'f32', device: dev });
    const b = tensor([1, 2], { dtype: 'f64', device: dev });
    assert.throws(() => add(a, b), /add: dtypes differ \(f32 \[2\] and f64 \[2\]\)/);
    assert.throws(() => mul(tensor([1, 2, 3], { device: dev }), tensor([1, 2], { device: dev })), /mul: shapes \[3\] and \[2\] cannot be broadcast/);
    assert.throws(() => add(a, Number.NaN), /add: the scalar must be a finite number/);
    assert.throws(() => div(a, 0), /division by the scalar 0/);
  });
});

test('tidy frees every intermediate across many steps', () => {
  const w = tensor([0.5, -0.25, 1], { requiresGrad: true });
  const before = liveStorages();
  for (let step = 0; step < 200; step++) {
    tidy(() => {
      const loss = sum(mul(tanh(mul(w, w)), 3));
      loss.backward();
    });
  }
  assert.is(liveStorages(), before + 1); // only w.grad was added
  w.dispose();
});

test.run();
