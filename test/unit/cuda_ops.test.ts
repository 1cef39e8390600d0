/**
 * The op suite on CUDA: every op with a CUDA kernel runs on 'cuda:0' from the same inputs as on
 * the CPU, and its values and gradients (of sum(f(x) * w), w random) must match the CPU's, whose
 * own tests check them against finite differences and plain loops. Tolerances, relative to the
 * largest CPU value: f64 1e-12, f32 1e-5 (2e-5 where a reduction order differs), bf16 1e-2.
 * Without a usable device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  AdamW, add, cast, cat, clipGradNorm, contiguous, crossEntropy, cudaAllocatorStats, cudaIsAvailable, type DType, div, dropout, embedding, exp, gelu,
  hasOverflow, layerNorm, linear, log, logSoftmax, manualSeed, matmul, mean, memoryStats, mul, native, neg, noGrad, ones, pow, rand, randn, relu,SGD, 
  sigmoid, softmax, sqrt, sub, sum, type Tensor, tanh, tensor, tidy,
} from '../../src/index.ts';
import { DEV, maxRelErr, parity } from '../helpers/cuda_parity.ts';

const r = (shape: number[], dtype: DType, grad = true) => randn(shape, { dtype, requiresGrad: grad });
const pos = (shape: number[], dtype: DType) => noGrad(() => add(mul(exp(randn(shape, { dtype })), 0.5), 0.1)).requiresGrad_(true);

if (!cudaIsAvailable()) {
  test('CUDA op suite', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_ops: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of ['f64', 'f32'] as DType[]) {
    test(`element-wise ops with broadcasting, ${dtype}`, () => {
      parity('add', add, () => [r([3, 4], dtype), r([4], dtype)]);
      parity('sub', sub, () => [r([2, 1, 5], dtype), r([3, 1], dtype)]);
      parity('mul', mul, () => [r([4, 3], dtype), r([4, 1], dtype)]);
      parity('div', div, () => [r([3, 4], dtype), pos([4], dtype)]);
      parity('pow', (x) => pow(x, 3), () => [r([17], dtype)]);
      parity('scalars', (x) => add(mul(x, 3), 2).div(4).sub(1), () => [r([9], dtype)]);
      parity('neg', neg, () => [r([5, 7], dtype)]);
      parity('exp', exp, () => [r([5, 7], dtype)]);
      parity('log', log, () => [pos([5, 7], dtype)]);
      parity('sqrt', sqrt, () => [pos([5, 7], dtype)]);
      parity('relu', relu, () => [r([1000], dtype)]);
      parity('gelu', gelu, () => [r([1000], dtype)]);
      parity('tanh', tanh, () => [r([1000], dtype)]);
      parity('sigmoid', sigmoid, () => [r([1000], dtype)]);
      parity('transposed operand', (a, b) => add(a.transpose(0, 1), b), () => [r([6, 5], dtype), r([5, 6], dtype)]);
    });

    test(`reductions, ${dtype}`, () => {
      parity('sum all', (x) => sum(x), () => [r([300, 70], dtype)], dtype === 'f32' ? 2e-5 : undefined);
      parity('sum dims', (x) => sum(x, [0, 2]), () => [r([3, 4, 5], dtype)]);
      parity('mean keepDim', (x) => mean(x, 1, true), () => [r([3, 40, 5], dtype)]);
      parity('sum last', (x) => sum(x, -1), () => [r([7, 1000], dtype)], dtype === 'f32' ? 2e-5 : undefined);
      // Few outputs over a long axis: the chunked path (partials in fixed row chunks).
      parity('sum long dim 0', (x) => sum(x, 0), () => [r([3000, 7], dtype)], dtype === 'f32' ? 2e-5 : undefined);
      parity('mean long middle', (x) => mean(x, 1), () => [r([2, 1000, 3], dtype)], dtype === 'f32' ? 2e-5 : undefined);
    });

    test(`softmax and log-softmax (last dim, other dim, causal, scaled), ${dtype}`, () => {
      parity('softmax', (x) => softmax(x), () => [r([6, 33], dtype)]);
      parity('softmax dim 0', (x) => softmax(x, 0), () => [r([6, 33], dtype)]);
      parity('logSoftmax', (x) => logSoftmax(x), () => [r([4, 1000], dtype)]);
      parity('causal scaled', (x) => softmax(x, -1, { scale: 0.5, causal: true }), () => [r([2, 5, 5], dtype)]);
      parity('causal log', (x) => logSoftmax(x, -1, { causal: true }), () => [r([2, 4, 4], dtype)]);
    });

    test(`matmul through cuBLASLt (2-D, batched, transposed, broadcast, linear with bias), ${dtype}`, () => {
      parity('matmul', matmul, () => [r([7, 5], dtype), r([5, 9], dtype)]);
      parity('batched', matmul, () => [r([3, 4, 6], dtype), r([3, 6, 2], dtype)]);
      parity('transposed A', (a, b) => matmul(a.transpose(0, 1), b), () => [r([5, 7], dtype), r([5, 3], dtype)]);
      parity('transposed B', (a, b) => matmul(a, b.transpose(0, 1)), () => [r([4, 5], dtype), r([6, 5], dtype)]);
      parity('broadcast B', matmul, () => [r([2, 3, 4, 5], dtype), r([5, 6], dtype)]);
      parity('broadcast A', matmul, () => [r([4, 5], dtype), r([3, 5, 2], dtype)]);
      parity('linear', (x, w, b) => linear(x, w, b), () => [r([2, 3, 8], dtype), r([4, 8], dtype), r([4], dtype)]);
      parity('large', matmul, () => [r([130, 257], dtype), r([257, 66], dtype)], dtype === 'f32' ? 2e-5 : undefined);
    });

    test(`layer norm, embedding and cross-entropy, ${dtype}`, () => {
      parity('layerNorm affine', (x, w, b) => layerNorm(x, 48, w, b), () => [r([3, 5, 48], dtype), r([48], dtype), r([48], dtype)]);
      parity('layerNorm plain', (x) => layerNorm(x, [4, 6]), () => [r([7, 4, 6], dtype)]);
      parity('layerNorm many rows', (x, w, b) => layerNorm(x, 16, w, b), () => [r([3000, 16], dtype), r([16], dtype), r([16], dtype)], dtype === 'f32' ? 2e-5 : undefined);
      const ids = () => tensor([3, 0, 3, 9, 1, 3, 0], { dtype: 'i64', shape: [7] });
      parity('embedding', (i, w) => embedding(i, w), () => [ids(), r([10, 6], dtype)]);
      parity('embedding i32', (i, w) => embedding(i, w), () => [tensor([[1, 1], [4, 2]], { dtype: 'i32' }), r([5, 3], dtype)]);
      const targets = () => tensor([2, 0, -100, 7, 7, 1], { dtype: 'i64' });
      parity('crossEntropy mean', (x, t) => crossEntropy(x, t), () => [r([6, 8], dtype), targets()]);
      parity('crossEntropy sum', (x, t) => crossEntropy(x, t, { reduction: 'sum' }), () => [r([6, 8], dtype), targets()]);
      parity('crossEntropy none', (x, t) => crossEntropy(x, t, { reduction: 'none' }), () => [r([6, 8], dtype), targets()]);
      tidy(() => {
        const x = randn([2, 3], { device: DEV });
        // Device-side checks: the error comes at the next synchronization (here: reading the value).
        assert.throws(() => crossEntropy(x, tensor([0, 5], { dtype: 'i64', device: DEV })).item(), /crossEntropy: target 5 at position \[1\] is out of range for C = 3/);
        assert.throws(() => embedding(tensor([7], { dtype: 'i64', device: DEV }), x).toList(), /embedding: id 7 at position \[0\]/);
      });
    });

    test(`views, copies and cat, ${dtype}`, () => {
      parity('contiguous of permute', (x) => contiguous(x.permute([2, 0, 1])), () => [r([3, 4, 5], dtype)]);
      parity('narrow', (x) => x.narrow(1, 1, 2).mul(2), () => [r([3, 5], dtype)]);
      parity('cat', (a, b) => cat([a, b], 1), () => [r([2, 3], dtype), r([2, 4], dtype)]);
    });
  }

  test('bf16: casts, element-wise, softmax and matmul (tensor cores, f32 accumulation)', () => {
    const b16 = (shape: number[]) => () => [noGrad(() => randn(shape).to('bf16')).requiresGrad_(true)];
    parity('cast round trip', (x) => cast(cast(x, 'bf16'), 'f32'), () => [r([100], 'f32')], 0);
    parity('gelu bf16', gelu, b16([256]));
    parity('softmax bf16', (x) => softmax(x), b16([8, 64]));
    const mm = () => [noGrad(() => randn([32, 64]).to('bf16')).requiresGrad_(true), noGrad(() => randn([64, 48]).to('bf16')).requiresGrad_(true)];
    parity('matmul bf16', matmul, mm);
  });

  test('random tensors and dropout masks on CUDA hold the CPU values exactly (same seed)', () => {
    tidy(() => {
      for (const dtype of ['f32', 'f64', 'bf16'] as DType[]) {
        const draw = (device: 'cpu' | typeof DEV) => {
          manualSeed(77);
          return [rand([1001], { dtype, device, low: -2, high: 3 }), randn([513], { dtype, device }), dropout(ones([999], { dtype, device }), 0.3)];
        };
        const cpu = draw('cpu');
        const gpu = draw(DEV);
        cpu.forEach((c, i) => assert.equal(gpu[i].toList(), c.toList(), `${dtype} draw ${i}`));
      }
    });
  });

  test('AdamW and SGD steps on CUDA parameters equal the CPU steps (f32, and bf16 with f32 masters)', () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      for (const make of [
        (ps: Tensor[]) => new AdamW(ps, { lr: 1e-2, weightDecay: 0.1 }),
        (ps: Tensor[]) => new SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 }),
      ]) {
        tidy(() => {
          const cpu = [randn([37]).to(dtype), randn([5, 3]).to(dtype)].map((p) => p.requiresGrad_(true));
          const gpu = cpu.map((p) => noGrad(() => p.to(DEV)).requiresGrad_(true));
          const oc = make(cpu);
          const og = make(gpu);
          for (let step = 0; step < 3; step++) {
            cpu.forEach((p, i) => {
              const g = randn([...p.shape]).to(dtype);
              p.grad = g;
              gpu[i].grad = g.to(DEV);
            });
            oc.step();
            og.step();
          }
          cpu.forEach((p, i) => {
            const e = maxRelErr(gpu[i].toList(), p.toList());
            assert.ok(e <= (dtype === 'bf16' ? 1e-2 : 1e-6), `${oc.constructor.name} ${dtype}: weights differ by ${e}`);
          });
        });
      }
    }
  });

  test('gradient norm and overflow check on CUDA tensors', () => {
    tidy(() => {
      const cpu = [randn([1000]), randn([77, 3])].map((p) => p.requiresGrad_(true));
      const gpu = cpu.map((p) => noGrad(() => p.to(DEV)).requiresGrad_(true));
      cpu.forEach((p, i) => {
        p.grad = randn([...p.shape]);
        gpu[i].grad = p.grad.to(DEV);
      });
      const nc = clipGradNorm(cpu, 1);
      const ng = clipGradNorm(gpu, 1);
      assert.ok(Math.abs(ng - nc) <= 1e-12 * nc, `norms ${ng} and ${nc}`);
      assert.ok(maxRelErr((gpu[0].grad as Tensor).toList(), (cpu[0].grad as Tensor).toList()) <= 1e-6);
      assert.is(hasOverflow(gpu.map((p) => p.grad)), false);
      assert.is(hasOverflow([tensor([1, Number.POSITIVE_INFINITY, 2], { device: DEV })]), true);
      assert.is(hasOverflow([tensor([1, Number.NaN], { device: DEV, dtype: 'bf16' })]), true);
    });
  });

  test('device memory is tagged per device and blocks are reused from the cache', () => {
    tidy(() => {
      const before = memoryStats()[DEV]?.param.current ?? 0;
      const p = randn([1 << 20], { device: DEV }).requiresGrad_(true);
      const t = tensor([0], { device: DEV, tag: 'param' });
      assert.is(memoryStats()[DEV].param.current, before + 4);
      t.dispose();
      p.dispose();
      const s0 = cudaAllocatorStats(DEV);
      const q = randn([1 << 20], { device: DEV });
      assert.is(cudaAllocatorStats(DEV).hits, s0.hits + 1);
      q.dispose();
    });
  });

  test('mixed devices are refused, naming the op', () => {
    tidy(() => {
      const x = randn([2, 3], { device: DEV });
      assert.throws(() => add(x, randn([2, 3])), /add: operands on different devices \(f32 \[2, 3\] on cuda:0, f32 \[2, 3\] on cpu\)/);
      assert.throws(() => x.matmul(randn([3, 2])), /matmul: operands on different devices/);
    });
  });
}

test.run();
