import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  add, crossEntropy, dropout, embedding, exp, getRngState, layerNorm, liveStorages, logSoftmax, manualSeed, mul, narrow, ones, randn, scaledDotProductAttention,
  softmax, sum, type Tensor, tensor, tidy, transpose,
} from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf, maxAbsDiff } from '../helpers/gradcheck.ts';

/** Rows of the last dim of a row-major list. */
function rowsOf(v: number[], cols: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < v.length; i += cols) out.push(v.slice(i, i + cols));
  return out;
}

function refSoftmax(row: number[], log = false): number[] {
  const m = Math.max(...row);
  const s = row.reduce((a, x) => a + Math.exp(x - m), 0);
  return row.map((x) => (log ? x - m - Math.log(s) : Math.exp(x - m) / s));
}

function refLayerNorm(row: number[], w: number[] | null, b: number[] | null, eps: number): number[] {
  const mu = row.reduce((a, x) => a + x, 0) / row.length;
  const v = row.reduce((a, x) => a + (x - mu) ** 2, 0) / row.length;
  return row.map((x, j) => ((x - mu) / Math.sqrt(v + eps)) * (w ? w[j] : 1) + (b ? b[j] : 0));
}

const ids = (v: number[][] | number[], dtype: 'i32' | 'i64' = 'i32', device: Device = 'cpu') => tensor(v as number[], { dtype, device });

deviceTest('softmax and logSoftmax match a plain loop, stably, over any dim (f64, f32)', (dev) => {
  tidy(() => {
    const v = [1, 2, 3, 4, 5, -1, 0, 2, 1000, 1001, 1002, 999, -3, 0.5, 7, 2];
    for (const dtype of ['f64', 'f32'] as const) {
      const tol = dtype === 'f64' ? 1e-12 : 1e-5;
      const x = tensor(v, { dtype, shape: [4, 4], device: dev });
      const want = rowsOf(v, 4).flatMap((r) => refSoftmax(r));
      assert.ok(maxAbsDiff(softmax(x).toList(), want) < tol, `softmax ${dtype}`);
      const wantLog = rowsOf(v, 4).flatMap((r) => refSoftmax(r, true));
      assert.ok(maxAbsDiff(logSoftmax(x).toList(), wantLog) < tol * 100, `logSoftmax ${dtype}`);
      // dim 0 equals the softmax of the transpose, transposed back.
      const byCol = softmax(x, 0);
      assert.equal(byCol.shape, [4, 4]);
      const t = softmax(transpose(x, 0, 1).contiguous()).toList();
      const want0 = byCol.toList().map((_, i) => t[(i % 4) * 4 + Math.floor(i / 4)]);
      assert.ok(maxAbsDiff(byCol.toList(), want0) < tol);
    }
  });
});

deviceTest('softmax with scale and a causal mask matches a plain loop; bf16 computes in float', (dev) => {
  tidy(() => {
    const x = randn([2, 3, 4], { dtype: 'f64', device: dev });
    const v = x.toList();
    const got = softmax(x, -1, { scale: 0.5, causal: true }).toList();
    const gotLog = logSoftmax(x, -1, { scale: 0.5, causal: true }).toList();
    rowsOf(v, 4).forEach((row, r) => {
      const n = (r % 3) + 1; // query r % 3 sees keys 0..r % 3
      const p = refSoftmax(row.slice(0, n).map((a) => a * 0.5));
      for (let j = 0; j < 4; j++) {
        assert.ok(Math.abs(got[r * 4 + j] - (j < n ? p[j] : 0)) < 1e-12);
        if (j < n) assert.ok(Math.abs(gotLog[r * 4 + j] - Math.log(p[j])) < 1e-12);
        else assert.is(gotLog[r * 4 + j], -Infinity);
      }
    });
    const xb = randn([8, 33], { std: 3, device: dev });
    const diff = maxAbsDiff(softmax(xb.to('bf16')).toList(), softmax(xb.to('bf16').to('f32')).toList());
    assert.ok(diff < 1e-2, `bf16 softmax off by ${diff}`);
  });
});

deviceTest('f32 softmax and crossEntropy (vectorized exp): accurate on wide rows, -inf gives 0, NaN propagates', (dev) => {
  tidy(() => {
    const x = randn([4, 1000], { dtype: 'f64', std: 20, device: dev });
    const want = softmax(x).toList();
    const got = softmax(x.to('f32')).toList();
    // Relative to each probability: 1e-5 covers rounding the inputs to f32 (|x| up to ~80).
    assert.ok(got.every((v, i) => Math.abs(v - want[i]) <= 1e-5 * want[i] + 1e-30), 'softmax f32 vs f64');
    const t = ids([3, 999, 0, 500], 'i32', dev);
    const ce = crossEntropy(x.to('f32'), t, { reduction: 'none' }).toList();
    const ce64 = crossEntropy(x, t, { reduction: 'none' }).toList();
    assert.ok(maxAbsDiff(ce, ce64) < 1e-4 * Math.max(...ce64.map(Math.abs)));
    const special = tensor([0, -Infinity, 1, -200, Number.NaN, 0, 1, 2], { shape: [2, 4], device: dev });
    const p = softmax(special).toList();
    assert.is(p[1], 0);
    assert.is(p[3], 0);
    assert.ok(Math.abs(p[0] + p[2] - 1) < 1e-6);
    assert.ok(p.slice(4).every(Number.isNaN), 'a NaN logit makes its row NaN');
    assert.ok(Number.isNaN(crossEntropy(special, ids([0, 1], 'i32', dev)).item()));
  });
});

deviceTest('softmax / logSoftmax gradients (finite differences, f64)', (dev) => {
  tidy(() => {
    gradcheck('softmax', (x) => softmax(x), [leaf([3, 5], 1, dev)]);
    gradcheck('softmax dim 1', (x) => softmax(x, 1), [leaf([2, 3, 4], 1, dev)]);
    gradcheck('logSoftmax', (x) => logSoftmax(x), [leaf([3, 5], 1, dev)]);
    gradcheck('logSoftmax dim 0', (x) => logSoftmax(x, 0), [leaf([3, 4], 1, dev)]);
    gradcheck('causal scaled softmax', (x) => softmax(x, -1, { scale: 0.7, causal: true }), [leaf([2, 4, 4], 1, dev)]);
    // Masked log-probabilities are -inf; exp() maps them to 0 so the weighted sum stays finite.
    gradcheck('causal scaled logSoftmax', (x) => exp(logSoftmax(x, -1, { scale: 1.3, causal: true })), [leaf([3, 5], 1, dev)]);
    gradcheck('causal logSoftmax, visible part', (x) => narrow(logSoftmax(x, -1, { causal: true }), 2, 0, 1), [leaf([2, 3, 4], 1, dev)]);
    gradcheck('softmax of a strided view', (x) => softmax(transpose(x, 0, 1)), [leaf([4, 3], 1, dev)]);
  });
});

deviceTest('layerNorm matches a plain loop (f64, f32, bf16), with and without affine', (dev) => {
  tidy(() => {
    const x = randn([5, 6], { dtype: 'f64', mean: 3, std: 2, device: dev });
    const w = randn([6], { dtype: 'f64', device: dev });
    const b = randn([6], { dtype: 'f64', device: dev });
    const rows = rowsOf(x.toList(), 6);
    const want = rows.flatMap((r) => refLayerNorm(r, w.toList(), b.toList(), 1e-5));
    assert.ok(maxAbsDiff(layerNorm(x, [6], w, b).toList(), want) < 1e-12);
    const plain = rows.flatMap((r) => refLayerNorm(r, null, null, 0.1));
    assert.ok(maxAbsDiff(layerNorm(x, 6, null, null, 0.1).toList(), plain) < 1e-12);
    // Two normalized dims: rows of 2 * 3.
    const x3 = x.reshape([5, 2, 3]);
    const w3 = w.reshape([2, 3]);
    const b3 = b.reshape([2, 3]);
    assert.ok(maxAbsDiff(layerNorm(x3, [2, 3], w3, b3).toList(), want) < 1e-12);
    assert.ok(maxAbsDiff(layerNorm(x.to('f32'), [6], w.to('f32'), b.to('f32')).toList(), want) < 1e-5);
    assert.ok(maxAbsDiff(layerNorm(x.to('bf16'), [6], w.to('bf16'), b.to('bf16')).toList(), want) < 0.1);
  });
});

deviceTest('layerNorm gradients for x, weight and bias (finite differences, f64)', (dev) => {
  tidy(() => {
    gradcheck('layerNorm', (x, w, b) => layerNorm(x, [5], w, b), [leaf([3, 5], 1, dev), leaf([5], 1, dev), leaf([5], 1, dev)]);
    gradcheck('layerNorm 2 dims', (x, w, b) => layerNorm(x, [2, 3], w, b), [leaf([2, 2, 2, 3], 1, dev), leaf([2, 3], 1, dev), leaf([2, 3], 1, dev)]);
    gradcheck('layerNorm no affine', (x) => layerNorm(x, [4]), [leaf([3, 4], 3, dev)]);
    gradcheck('layerNorm weight only', (x, w) => layerNorm(x, [4], w, null), [leaf([6, 4], 1, dev), leaf([4], 1, dev)]);
    // Large enough for the parallel path (per-thread partial sums of dweight and dbias).
    const big = leaf([300, 64], 1, dev);
    const w = leaf([64], 1, dev);
    const bb = leaf([64], 1, dev);
    const g = randn([300, 64], { dtype: 'f64', device: dev });
    sum(mul(layerNorm(big, [64], w, bb), g)).backward();
    // dbias is the column sum of g; dweight the column sum of g * xhat.
    const gl = g.toList();
    const colSum = Array.from({ length: 64 }, (_, j) => gl.reduce((a, v, i) => (i % 64 === j ? a + v : a), 0));
    assert.ok(maxAbsDiff((bb.grad as Tensor).toList(), colSum) < 1e-10);
    const xhat = layerNorm(big, [64]).toList();
    const wSum = Array.from({ length: 64 }, (_, j) => gl.reduce((a, v, i) => (i % 64 === j ? a + v * xhat[i] : a), 0));
    assert.ok(maxAbsDiff((w.grad as Tensor).toList(), wSum) < 1e-10);
  });
});

deviceTest('embedding gathers rows and scatter-adds its gradient', (dev) => {
  tidy(() => {
    const w = randn([5, 3], { dtype: 'f64', device: dev });
    const wl = w.toList();
    for (const dtype of ['i32', 'i64'] as const) {
      const i = ids([[4, 0, 4], [2, 2, 1]], dtype, dev);
      const out = embedding(i, w);
      assert.equal(out.shape, [2, 3, 3]);
      const want = [4, 0, 4, 2, 2, 1].flatMap((r) => wl.slice(r * 3, r * 3 + 3));
      assert.equal(out.toList(), want);
    }
    gradcheck('embedding', (wt) => embedding(ids([[1, 3, 1], [0, 1, 4]], 'i32', dev), wt), [leaf([5, 4], 1, dev)]);
    gradcheck('embedding of strided ids', (wt) => embedding(transpose(ids([[1, 3], [1, 0]], 'i64', dev), 0, 1), wt), [leaf([4, 2], 1, dev)]);
    // Repeated ids sum; unused rows get 0. Large enough for the parallel path.
    const big = randn([1000, 64], { requiresGrad: true, device: dev });
    const many = tensor(Array.from({ length: 4096 }, (_, k) => (k * 7) % 999), { dtype: 'i32', device: dev });
    sum(embedding(many, big)).backward();
    const g = (big.grad as Tensor).toList();
    const counts = new Array(1000).fill(0);
    for (let k = 0; k < 4096; k++) counts[(k * 7) % 999]++;
    assert.ok(maxAbsDiff(g, counts.flatMap((c) => new Array(64).fill(c))) === 0);
    // bf16 tables work too.
    assert.equal(embedding(ids([1], 'i32', dev), w.to('bf16')).toList(), w.to('bf16').toList().slice(3, 6));
  });
});

function refCrossEntropy(logits: number[], C: number, targets: number[], ignore: number): (number | null)[] {
  return rowsOf(logits, C).map((row, r) => (targets[r] === ignore ? null : -refSoftmax(row, true)[targets[r]]));
}

deviceTest('crossEntropy matches a plain loop for mean, sum and none, with ignoreIndex', (dev) => {
  tidy(() => {
    const x = randn([6, 5], { dtype: 'f64', std: 3, device: dev });
    const t = [0, 4, -100, 2, 2, -100];
    const per = refCrossEntropy(x.toList(), 5, t, -100);
    const kept = per.filter((v): v is number => v !== null);
    const total = kept.reduce((a, v) => a + v, 0);
    const tt = ids(t, 'i64', dev);
    assert.ok(Math.abs(crossEntropy(x, tt).item() - total / kept.length) < 1e-12);
    assert.ok(Math.abs(crossEntropy(x, tt, { reduction: 'sum' }).item() - total) < 1e-12);
    const none = crossEntropy(x, tt, { reduction: 'none' });
    assert.equal(none.shape, [6]);
    assert.ok(maxAbsDiff(none.toList(), per.map((v) => v ?? 0)) < 1e-12);
    // A custom ignore value, [B, T, C] logits, f32.
    const t2 = [3, 1, 1, 0, 3, 2];
    const per2 = refCrossEntropy(x.toList(), 5, t2, 3);
    const kept2 = per2.filter((v): v is number => v !== null);
    const got = crossEntropy(x.reshape([2, 3, 5]).to('f32'), ids([[3, 1, 1], [0, 3, 2]], 'i32', dev), { ignoreIndex: 3 }).item();
    assert.ok(Math.abs(got - kept2.reduce((a, v) => a + v, 0) / kept2.length) < 1e-5);
    assert.ok(Math.abs(crossEntropy(x.to('bf16'), tt).item() - total / kept.length) < 0.05);
  });
});

deviceTest('crossEntropy gradients (finite differences, f64) and the all-ignored case', (dev) => {
  tidy(() => {
    const t = ids([1, -100, 3, 0], 'i32', dev);
    gradcheck('crossEntropy mean', (x) => crossEntropy(x, t), [leaf([4, 5], 2, dev)]);
    gradcheck('crossEntropy sum', (x) => crossEntropy(x, t, { reduction: 'sum' }), [leaf([4, 5], 2, dev)]);
    gradcheck('crossEntropy none', (x) => crossEntropy(x, t, { reduction: 'none' }), [leaf([4, 5], 2, dev)]);
    gradcheck('crossEntropy [B, T, C]', (x) => crossEntropy(x, ids([[1, 0], [2, 2]], 'i64', dev)), [leaf([2, 2, 3], 1, dev)]);
    const x = leaf([2, 3], 1, dev);
    const loss = crossEntropy(x, ids([-100, -100], 'i32', dev));
    assert.ok(Number.isNaN(loss.item()), 'mean over no targets is NaN, as in PyTorch');
    loss.backward();
    assert.equal((x.grad as Tensor).toList(), [0, 0, 0, 0, 0, 0]);
    assert.is(crossEntropy(x, ids([-100, -100], 'i32', dev), { reduction: 'sum' }).item(), 0);
  });
});

deviceTest('dropout: drops about p, scales by 1/(1-p), replays with the same seed, slices agree', (dev) => {
  tidy(() => {
    const x = ones([200, 500], { device: dev });
    manualSeed(7);
    const a = dropout(x, 0.3).toList();
    const zeros = a.filter((v) => v === 0).length / a.length;
    assert.ok(Math.abs(zeros - 0.3) < 0.01, `dropped ${zeros}`);
    assert.ok(a.every((v) => v === 0 || Math.abs(v - 1 / 0.7) < 1e-6));
    manualSeed(7);
    assert.equal(dropout(x, 0.3).toList(), a);
    manualSeed(8);
    assert.not.equal(dropout(x, 0.3).toList(), a);
    // A shard of rows 40..59 generates exactly its slice of the full mask, and advances the
    // generator by the full size.
    manualSeed(7);
    const part = dropout(narrow(x, 0, 40, 20), 0.3, true, { shard: { start: 40 * 500, total: x.numel } });
    assert.equal(part.toList(), a.slice(40 * 500, 60 * 500));
    assert.is(getRngState().offset, x.numel);
    // A strided view gets its mask in its own (logical) order.
    manualSeed(3);
    const m = dropout(ones([4, 6], { device: dev }), 0.5).toList();
    manualSeed(3);
    const xt = transpose(randn([6, 4], { dtype: 'f32', device: dev }), 0, 1);
    manualSeed(3);
    const dt = dropout(xt, 0.5).toList();
    const xl = xt.contiguous().toList();
    assert.equal(dt, xl.map((v, i) => Math.fround(v * m[i])));
    // Identity when not training or p = 0.
    assert.is(dropout(x, 0.5, false), x);
    assert.is(dropout(x, 0), x);
  });
});

deviceTest('dropout backward multiplies by the same mask (finite differences, f64)', (dev) => {
  tidy(() => {
    const x = leaf([50], 1, dev);
    manualSeed(11);
    const y = dropout(x, 0.4);
    const ratio = y.toList().map((v, i) => v / x.toList()[i]);
    sum(y).backward();
    assert.ok(maxAbsDiff((x.grad as Tensor).toList(), ratio) < 1e-12);
    // The same seed before each evaluation keeps the mask fixed for finite differences.
    gradcheck('dropout', (t) => {
      manualSeed(5);
      return dropout(t, 0.25);
    }, [leaf([3, 4], 1, dev)]);
  });
});

/** softmax(q kᵀ scale + mask) v, one (b, h) at a time. */
function refAttention(q: number[], k: number[], v: number[], BH: number, T: number, D: number, scale: number, causal: boolean): number[] {
  const out: number[] = [];
  for (let bh = 0; bh < BH; bh++) {
    for (let i = 0; i < T; i++) {
      const s: number[] = [];
      for (let j = 0; j < (causal ? i + 1 : T); j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(bh * T + i) * D + d] * k[(bh * T + j) * D + d];
        s.push(dot * scale);
      }
      const p = refSoftmax(s);
      for (let d = 0; d < D; d++) out.push(p.reduce((a, pj, j) => a + pj * v[(bh * T + j) * D + d], 0));
    }
  }
  return out;
}

deviceTest('scaledDotProductAttention matches a plain loop (causal and not, custom scale)', (dev) => {
  tidy(() => {
    const [B, H, T, D] = [2, 3, 5, 4];
    const q = randn([B, H, T, D], { dtype: 'f64', device: dev });
    const k = randn([B, H, T, D], { dtype: 'f64', device: dev });
    const v = randn([B, H, T, D], { dtype: 'f64', device: dev });
    for (const causal of [true, false]) {
      const want = refAttention(q.toList(), k.toList(), v.toList(), B * H, T, D, 0.5, causal);
      const got = scaledDotProductAttention(q, k, v, { causal });
      assert.equal(got.shape, [B, H, T, D]);
      assert.ok(maxAbsDiff(got.toList(), want) < 1e-12, `causal ${causal}`);
    }
    const want = refAttention(q.toList(), k.toList(), v.toList(), B * H, T, D, 0.9, true);
    assert.ok(maxAbsDiff(scaledDotProductAttention(q, k, v, { causal: true, scale: 0.9 }).toList(), want) < 1e-12);
    const f32 = scaledDotProductAttention(q.to('f32'), k.to('f32'), v.to('f32'), { causal: true, scale: 0.9 });
    assert.ok(maxAbsDiff(f32.toList(), want) < 1e-5);
  });
});

deviceTest('scaledDotProductAttention gradients for q, k, v (finite differences, f64)', (dev) => {
  tidy(() => {
    const attn = (causal: boolean) => (q: Tensor, k: Tensor, v: Tensor) => scaledDotProductAttention(q, k, v, { causal });
    gradcheck('attention causal', attn(true), [leaf([1, 2, 4, 3], 1, dev), leaf([1, 2, 4, 3], 1, dev), leaf([1, 2, 4, 3], 1, dev)]);
    gradcheck('attention', attn(false), [leaf([2, 1, 3, 2], 1, dev), leaf([2, 1, 3, 2], 1, dev), leaf([2, 1, 3, 2], 1, dev)]);
    // Strided heads, as after splitting a fused qkv projection.
    gradcheck('attention strided', (x) => {
      const qkv = transpose(x.reshape([1, 4, 3, 2, 2]), 1, 3); // [1, 2, 3(qkv), 4, 2]
      const [q, k, v] = [0, 1, 2].map((i) => narrow(qkv, 2, i, 1).reshape([1, 2, 4, 2]));
      return scaledDotProductAttention(q, k, v, { causal: true });
    }, [leaf([1, 4, 12], 1, dev)]);
  });
});

test('forward and backward of every op leave no storage behind', () => {
  const w = randn([10, 6], { requiresGrad: true });
  const lnW = randn([6], { requiresGrad: true });
  const lnB = randn([6], { requiresGrad: true });
  const step = () =>
    tidy(() => {
      const x = embedding(ids([[1, 2, 3], [4, 5, 9]]), w); // [2, 3, 6]
      const h = dropout(layerNorm(x, [6], lnW, lnB), 0.1);
      const q = h.reshape([2, 1, 3, 6]);
      const a = scaledDotProductAttention(q, q, q, { causal: true }).reshape([2, 3, 6]);
      const logits = add(logSoftmax(a, 1), softmax(transpose(a, 1, 2), 2).reshape([2, 3, 6]));
      crossEntropy(logits, ids([[0, 5, -100], [2, 2, 1]])).backward();
    });
  step();
  const before = liveStorages();
  for (let i = 0; i < 10; i++) step();
  assert.is(liveStorages(), before);
  for (const t of [w, lnW, lnB]) {
    t.grad?.dispose();
    t.dispose();
  }
});

test('bad inputs throw errors naming the op, shapes and values', () => {
  tidy(() => {
    const x = randn([2, 3]);
    assert.throws(() => softmax(x, 2), /softmax: dim 2 is out of range/);
    assert.throws(() => softmax(ids([1, 2])), /softmax: x must be floating point .* got i32 \[2\]/);
    assert.throws(() => logSoftmax(x, 0, { causal: true }), /logSoftmax: a causal mask needs .* dim -1/);
    assert.throws(() => softmax(x, -1, { scale: Number.NaN }), /softmax: scale must be a finite number/);
    assert.throws(() => layerNorm(x, [4]), /layerNorm: normalizedShape \[4\] does not match the last dims of x \[2, 3\]/);
    assert.throws(() => layerNorm(x, [3], randn([4])), /layerNorm: weight \[4\] must have the normalized shape \[3\]/);
    assert.throws(() => layerNorm(x, [3], randn([3], { dtype: 'f64' })), /layerNorm: weight is f64, x is f32/);
    assert.throws(() => layerNorm(x, [3], null, null, 0), /layerNorm: eps must be a finite number > 0, got 0/);
    assert.throws(() => layerNorm(x, [3], null, null, Number.POSITIVE_INFINITY), /layerNorm: eps/);
    assert.throws(() => embedding(tensor([0, 1]), x), /embedding: ids must be an i32 or i64 tensor of indices, got f32 \[2\]/);
    assert.throws(() => embedding(ids([0, 1]), randn([4])), /embedding: weight must be \[V, D\], got \[4\]/);
    assert.throws(() => embedding(ids([[0, 1], [2, -1]]), randn([5, 2])), /embedding: id -1 at position \[1, 1\] .* V = 5/);
    assert.throws(() => embedding(ids([0, 5], 'i64'), randn([5, 2])), /embedding: id 5 at position \[1\] .* V = 5/);
    assert.throws(() => crossEntropy(x, ids([0, 3])), /crossEntropy: target 3 at position \[1\] is out of range for C = 3 classes/);
    assert.throws(() => crossEntropy(x, ids([-5, 0])), /crossEntropy: target -5 at position \[0\]/);
    assert.throws(() => crossEntropy(x, ids([0, 1, 2])), /crossEntropy: targets \[3\] must have the shape of logits \[2, 3\]/);
    assert.throws(() => crossEntropy(x, tensor([0, 1])), /crossEntropy: targets must be an i32 or i64 tensor/);
    assert.throws(() => crossEntropy(x, ids([0, 1]), { reduction: 'avg' as 'mean' }), /crossEntropy: reduction must be/);
    assert.throws(() => dropout(x, 1), /dropout: p must be a number in \[0, 1\), got 1/);
    assert.throws(() => dropout(x, -0.1), /dropout: p must be/);
    assert.throws(() => dropout(x, Number.NaN), /dropout: p must be/);
    assert.throws(() => dropout(x, 0.5, true, { shard: { start: 5, total: 6 } }), /dropout: shard \{start: 5, total: 6\} does not hold x \[2, 3\]/);
    const q = randn([1, 2, 3, 4]);
    assert.throws(() => scaledDotProductAttention(q, randn([1, 2, 3, 5]), q), /scaledDotProductAttention: q and k head dims differ/);
    assert.throws(() => scaledDotProductAttention(q, q, randn([1, 2, 4, 4])), /scaledDotProductAttention: k and v lengths differ/);
    assert.throws(() => scaledDotProductAttention(q, q, q.to('f64')), /scaledDotProductAttention: q, k, v must share one dtype/);
    assert.throws(() => scaledDotProductAttention(q, q, q, { scale: Number.POSITIVE_INFINITY }), /scaledDotProductAttention: scale must be a finite number/);
  });
});

test.run();
