// matmul and linear on f16 (DeepSpeed's fp16 mode), values and gradients against float64 products
// of the same f16 values, per device. CUDA runs cuBLASLt in f16 with f32 accumulation; the CPU
// computes in f32 on the f16 values; both round each product to f16 once. Tolerance per element,
// with U = 2^-11 (half an f16 ulp, relative) and S = sum over k of |a_ik * b_kj|:
//   |got - exact| <= U * (|exact| + P) * (1 + 2U) + K * 2^-23 * S + 2^-24
// where P is the sum of |intermediate results rounded to f16 before the last rounding| (0 for a
// plain product; the product before CUDA's bias add; each batch's product in a gradient summed
// over a broadcast batch), K * 2^-23 * S bounds f32 accumulation (an f32 ulp per addition: tensor
// cores may truncate), 2^-24 is f16's subnormal step. The rounding term dominates: measured up to
// 0.99 of the bound on the CPU and the emulated device. Rounding to bf16 instead breaks it (checked).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { linear, matmul, memoryStats, randn, sum, type Tensor, tensor, tidy, transpose } from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { deviceTest } from '../helpers/devices.ts';

const U = 2 ** -11;

/** The exact product of f16 values and what the bound needs, per output element. */
interface Exact {
  value: number[];
  /** S: sum of |a_ik * b_kj|. */
  abs: number[];
  /** P: sum of |partials rounded to f16 before the final rounding|. */
  parts: number[];
  k: number;
}

/**
 * [batch, M, K] @ [batch or 1, K, N] over logical (row-major) values; `sumBatch` sums the batch
 * (a gradient of a broadcast operand), each batch's product counting as a rounded partial.
 */
function exact(a: number[], b: number[], batch: number, bBatch: number, M: number, K: number, N: number, sumBatch = false): Exact {
  const size = sumBatch ? M * N : batch * M * N;
  const r: Exact = { value: new Array(size).fill(0), abs: new Array(size).fill(0), parts: new Array(size).fill(0), k: K };
  for (let s = 0; s < batch; s++) {
    const bo = bBatch === 1 ? 0 : s * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const t = a[s * M * K + i * K + k] * b[bo + k * N + j];
          acc += t;
          abs += Math.abs(t);
        }
        const o = sumBatch ? i * N + j : s * M * N + i * N + j;
        r.value[o] += acc;
        r.abs[o] += abs;
        if (sumBatch && batch > 1) r.parts[o] += Math.abs(acc);
      }
    }
  }
  return r;
}

/** The largest |got - exact| over its bound (<= 1 passes). */
function ratio(got: Tensor, want: Exact): number {
  assert.is(got.dtype, 'f16');
  const g = got.toList() as number[];
  let worst = 0;
  g.forEach((v, i) => {
    const bound = U * (Math.abs(want.value[i]) + want.parts[i]) * (1 + 2 * U) + want.k * 2 ** -23 * want.abs[i] + 2 ** -24;
    worst = Math.max(worst, Number.isFinite(v) ? Math.abs(v - want.value[i]) / bound : Number.POSITIVE_INFINITY);
  });
  return worst;
}

function within(name: string, got: Tensor, want: Exact): void {
  const r = ratio(got, want);
  assert.ok(r <= 1, `${name}: ${r.toFixed(3)} x the f16 bound`);
}

/** An f16 leaf of N(0, 1) values, and those values (exactly) as numbers. */
function leaf16(shape: number[], dev: Device): [Tensor, number[]] {
  const t = randn(shape, { device: dev }).to('f16').requiresGrad_();
  return [t, t.toList() as number[]];
}

/** An f16 upstream gradient (no grad) and its values. */
function grad16(shape: number[], dev: Device): [Tensor, number[]] {
  const t = randn(shape, { device: dev }).to('f16');
  return [t, t.toList() as number[]];
}

/** Row-major [..., R, C] values transposed to [..., C, R]. */
function tr(v: number[], batch: number, R: number, C: number): number[] {
  const out: number[] = [];
  for (let s = 0; s < batch; s++) for (let c = 0; c < C; c++) for (let r = 0; r < R; r++) out.push(v[s * R * C + r * C + c]);
  return out;
}

deviceTest('f16 matmul values and gradients: 2-D with K = 256, f32 accumulation and one rounding', (dev) => {
  tidy(() => {
    const [M, K, N] = [17, 256, 9];
    const [a, av] = leaf16([M, K], dev);
    const [b, bv] = leaf16([K, N], dev);
    const y = matmul(a, b);
    assert.equal(y.shape, [M, N]);
    within('y', y, exact(av, bv, 1, 1, M, K, N));
    const [g, gv] = grad16([M, N], dev);
    y.backward(g);
    within('dA = g Bᵀ', a.grad as Tensor, exact(gv, tr(bv, 1, K, N), 1, 1, M, N, K));
    within('dB = Aᵀ g', b.grad as Tensor, exact(tr(av, 1, M, K), gv, 1, 1, K, M, N));
    // The bound has teeth: the same values rounded to bf16 (8 bits) are far outside it.
    assert.ok(ratio(y.to('bf16').to('f16'), exact(av, bv, 1, 1, M, K, N)) > 1.5, 'bf16 rounding breaks the f16 bound');
  });
});

deviceTest('f16 matmul: transposed views, batched, and a 2-D right operand broadcast over the batch', (dev) => {
  tidy(() => {
    // aᵀ @ bᵀ as strided views of [K, M] and [N, K].
    const [at, atv] = leaf16([48, 7], dev);
    const [bt, btv] = leaf16([5, 48], dev);
    const y = matmul(transpose(at, 0, 1), transpose(bt, 0, 1));
    within('aᵀ bᵀ', y, exact(tr(atv, 1, 48, 7), tr(btv, 1, 5, 48), 1, 1, 7, 48, 5));
    const [g, gv] = grad16([7, 5], dev);
    y.backward(g);
    // d(at) = (g bt)ᵀ-shaped: at.grad[k, i] = sum_j g[i, j] bt[j, k].
    within('d(aᵀ)', at.grad as Tensor, exact(tr(btv, 1, 5, 48), tr(gv, 1, 7, 5), 1, 1, 48, 5, 7));
    within('d(bᵀ)', bt.grad as Tensor, exact(tr(gv, 1, 7, 5), tr(atv, 1, 48, 7), 1, 1, 5, 7, 48));

    const [x, xv] = leaf16([2, 3, 5, 64], dev);
    const [w, wv] = leaf16([2, 3, 64, 7], dev);
    const z = matmul(x, w);
    within('batched', z, exact(xv, wv, 6, 6, 5, 64, 7));
    const [gz, gzv] = grad16([2, 3, 5, 7], dev);
    z.backward(gz);
    within('batched dA', x.grad as Tensor, exact(gzv, tr(wv, 6, 64, 7), 6, 6, 5, 7, 64));
    within('batched dB', w.grad as Tensor, exact(tr(xv, 6, 5, 64), gzv, 6, 6, 64, 5, 7));

    const [p, pv] = leaf16([3, 5, 64], dev);
    const [q, qv] = leaf16([64, 6], dev);
    const u = matmul(p, q);
    within('broadcast', u, exact(pv, qv, 3, 1, 5, 64, 6));
    const [gu, guv] = grad16([3, 5, 6], dev);
    u.backward(gu);
    within('broadcast dA', p.grad as Tensor, exact(guv, tr(qv, 1, 64, 6), 3, 1, 5, 6, 64));
    within('broadcast dB (summed over the batch)', q.grad as Tensor, exact(tr(pv, 3, 5, 64), guv, 3, 3, 64, 5, 6, true));
  });
});

deviceTest('f16 linear values and gradients: x [2, 3, 128], weight [10, 128], f16 bias', (dev) => {
  tidy(() => {
    const [B, T, I, O] = [2, 3, 128, 10];
    const [x, xv] = leaf16([B, T, I], dev);
    const [w, wv] = leaf16([O, I], dev);
    const [bias, biasv] = leaf16([O], dev);
    const y = linear(x, w, bias);
    assert.equal(y.shape, [B, T, O]);
    const p = exact(xv, tr(wv, 1, O, I), 1, 1, B * T, I, O);
    // The bias is added to the product (f32 on the CPU, after an f16 rounding on CUDA).
    const want: Exact = { ...p, value: p.value.map((v, i) => v + biasv[i % O]), parts: p.value.map(Math.abs) };
    within('y', y, want);
    const [g, gv] = grad16([B, T, O], dev);
    y.backward(g);
    within('dx = g W', x.grad as Tensor, exact(gv, wv, 1, 1, B * T, O, I));
    within('dW = gᵀ x', w.grad as Tensor, exact(tr(gv, 1, B * T, O), xv, 1, 1, O, B * T, I));
    within('dbias = sum of g', bias.grad as Tensor, exact(new Array(B * T).fill(1), gv, 1, 1, 1, B * T, O));
    const nob = linear(x.detach(), w.detach());
    within('no bias', nob, p);
  });
});

deviceTest('f16 products beyond 65504 are Infinity (what the fp16 loss scaler detects), 65280 stays exact', (dev) => {
  tidy(() => {
    const a = tensor([300, 300, -300, 300], { shape: [2, 2], device: dev }).to('f16');
    const b = tensor([300, 1, 300, 1], { shape: [2, 2], device: dev }).to('f16');
    assert.equal(matmul(a, b).toList(), [Number.POSITIVE_INFINITY, 600, 0, 0]);
    const c = tensor([255, 256], { shape: [1, 2], device: dev }).to('f16');
    assert.equal(matmul(c, tensor([256, 0], { shape: [2, 1], device: dev }).to('f16')).toList(), [65280]);
    assert.equal(linear(c, tensor([-256, -256], { shape: [1, 2], device: dev }).to('f16')).toList(), [Number.NEGATIVE_INFINITY]);
  });
});

test('an f16 matmul on the CPU keeps no f32 copies for backward: between forward and backward only its f16 output is held', () => {
  tidy(() => {
    const a = randn([64, 512]).to('f16').requiresGrad_();
    const b = randn([512, 512]).to('f16').requiresGrad_(); // its f32 copy: 1 MiB
    const before = memoryStats().cpu?.activation.current ?? 0;
    const y = matmul(a, b);
    const held = (memoryStats().cpu?.activation.current ?? 0) - before;
    assert.ok(held <= 2 * y.numel * 2, `held ${held} bytes after forward, output ${y.numel * 2}`);
    sum(y.to('f32')).backward();
    assert.is(b.grad?.dtype, 'f16');
  });
});

test('f16 matmul still refuses mixed dtypes and bad shapes, naming them', () => {
  tidy(() => {
    assert.throws(() => matmul(randn([2, 3]).to('f16'), randn([3, 2])), /matmul: needs two f32, bf16, f16 or f64 tensors of one dtype, got f16 and f32/);
    assert.throws(() => matmul(randn([2, 3]).to('f16'), randn([2, 2]).to('f16')), /matmul: inner dims differ: \[2, 3\] @ \[2, 2\]/);
  });
});

test.run();
