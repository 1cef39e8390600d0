/**
 * A gradient handed to several inputs (add's backward returns the same tensor for both) is shared
 * by handle, not copied (src/autograd/engine.ts): gradients through residual connections equal
 * the analytic ones computed in the same order (exact in f32), leaves reached several ways
 * accumulate every contribution, and on a device the backward of x + f(x) queues no copy kernel.
 * Per device (CPU, and cuda:0 under MT_TEST_DEVICES).
 */

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, cudaCensus, manualSeed, mul, randn, sum, tensor } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';

const f = Math.fround;

// A leaf's contributions are added into .grad one at a time, in the order their nodes run (as in
// PyTorch): x's comes from add (c) before mul's (c*w), so the second pass gives (once + c) + c*w,
// which rounds differently from once + once for some inputs.
deviceTest('residual x + x*w: dx = c + c*w and dw = c*x exactly, twice (accumulated)', (dev) => {
  manualSeed(11);
  const x = randn([3, 5], { requiresGrad: true, device: dev });
  const w = randn([3, 5], { requiresGrad: true, device: dev });
  const c = randn([3, 5], { device: dev });
  for (let pass = 1; pass <= 2; pass++) {
    sum(mul(add(x, mul(x, w)), c)).backward();
    const [xv, wv, cv] = [x, w, c].map((t) => t.toArray() as Float32Array);
    const gx = x.grad?.toArray() as Float32Array;
    const gw = w.grad?.toArray() as Float32Array;
    for (let i = 0; i < 15; i++) {
      const once = f(cv[i] + f(cv[i] * wv[i]));
      assert.is(gx[i], pass === 1 ? once : f(f(once + cv[i]) + f(cv[i] * wv[i])), `dx[${i}] pass ${pass}`);
      const dw = f(cv[i] * xv[i]);
      assert.is(gw[i], pass === 1 ? dw : f(dw + dw), `dw[${i}] pass ${pass}`);
    }
  }
});

deviceTest('a chain of residual adds: y = ((x + a) + a) + x, every path delivered', (dev) => {
  const x = tensor([1, 2, 3], { requiresGrad: true, device: dev });
  const a = tensor([4, 5, 6], { requiresGrad: true, device: dev });
  const y = add(add(add(x, a), a), x);
  sum(mul(y, tensor([1, 10, 100], { device: dev }))).backward();
  assert.equal(Array.from(x.grad?.toArray() as Float32Array), [2, 20, 200]);
  assert.equal(Array.from(a.grad?.toArray() as Float32Array), [2, 20, 200]);
});

deviceTest('on a device, the residual in x + f(x) adds no copy to the backward of f(x)', (dev) => {
  if (dev === 'cpu') return;
  const x = randn([4, 8], { requiresGrad: true, device: dev });
  const w = randn([4, 8], { device: dev });
  const c = randn([4, 8], { device: dev });
  sum(mul(mul(x, w), c)).backward(); // x.grad exists: the passes below accumulate into it in place
  const copies = (residual: boolean) => {
    const loss = sum(mul(residual ? add(x, mul(x, w)) : mul(x, w), c));
    const { entries } = cudaCensus(() => loss.backward());
    return entries.filter((e) => e.site.startsWith('cuda/copy.cu') && !e.name.startsWith('fill')).reduce((n, e) => n + e.count, 0);
  };
  assert.is(copies(true), copies(false));
});

test.run();
