import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { linear, matmul, randn, type Tensor, tensor, tidy, transpose } from '../../src/index.ts';
import { deviceTest } from '../helpers/devices.ts';
import { gradcheck, leaf } from '../helpers/gradcheck.ts';

/** A plain-loop reference: [..., M, K] @ [..., K, N] with the batch of `a` (b may be 2-D). */
function reference(a: Tensor, b: Tensor): number[] {
  const av = a.toList();
  const bv = b.toList();
  const [M, K] = a.shape.slice(-2);
  const N = b.shape[b.ndim - 1];
  const batch = a.numel / (M * K);
  const bBatch = b.numel / (K * N);
  const out: number[] = [];
  for (let s = 0; s < batch; s++) {
    const bo = bBatch === 1 ? 0 : s * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += av[s * M * K + i * K + k] * bv[bo + k * N + j];
        out.push(acc);
      }
    }
  }
  return out;
}

function close(got: number[], want: number[], tol: number): void {
  const scale = Math.max(1, ...want.map(Math.abs));
  got.forEach((g, i) => {
    if (!(Math.abs(g - want[i]) <= tol * scale)) throw new Error(`element ${i}: ${g} vs ${want[i]}`);
  });
}

deviceTest('matmul values against a plain loop: f64, f32, bf16, transposed, batched, broadcast', (dev) => {
  tidy(() => {
    const a = randn([5, 7], { dtype: 'f64', device: dev });
    const b = randn([7, 3], { dtype: 'f64', device: dev });
    close(matmul(a, b).toList(), reference(a, b), 1e-13);
    close(matmul(a.to('f32'), b.to('f32')).toList(), reference(a, b), 1e-5);
    // bf16 inputs round to 8 significant bits; the product accumulates in f32.
    close(matmul(a.to('bf16'), b.to('bf16')).toList(), reference(a.to('bf16').to('f64'), b.to('bf16').to('f64')), 1e-2);
    // Transposed operands are strided views, not copies.
    const at = transpose(randn([7, 5], { dtype: 'f64', device: dev }), 0, 1);
    const bt = transpose(randn([3, 7], { dtype: 'f64', device: dev }), 0, 1);
    close(matmul(at, bt).toList(), reference(at.contiguous(), bt.contiguous()), 1e-13);
    const x = randn([2, 3, 4, 5], { dtype: 'f64', device: dev });
    const y = randn([2, 3, 5, 6], { dtype: 'f64', device: dev });
    assert.equal(matmul(x, y).shape, [2, 3, 4, 6]);
    close(matmul(x, y).toList(), reference(x, y), 1e-13);
    const w = randn([5, 2], { dtype: 'f64', device: dev });
    close(matmul(x, w).toList(), reference(x, w), 1e-13); // 2-D right operand broadcasts over the batch
  });
});

deviceTest('matmul and linear gradients (finite differences)', (dev) => {
  tidy(() => {
    gradcheck('matmul 2-D', matmul, [leaf([3, 4], 1, dev), leaf([4, 2], 1, dev)]);
    gradcheck('matmul batched', matmul, [leaf([2, 3, 4], 1, dev), leaf([2, 4, 2], 1, dev)]);
    gradcheck('matmul broadcast', matmul, [leaf([2, 3, 4], 1, dev), leaf([4, 5], 1, dev)]);
    gradcheck('matmul transposed', (a, b) => matmul(transpose(a, 0, 1), b), [leaf([4, 3], 1, dev), leaf([4, 2], 1, dev)]);
    gradcheck('linear', (x, w, b) => linear(x, w, b), [leaf([2, 3, 4], 1, dev), leaf([5, 4], 1, dev), leaf([5], 1, dev)]);
    gradcheck('linear no bias', (x, w) => linear(x, w), [leaf([3, 4], 1, dev), leaf([2, 4], 1, dev)]);
  });
});

deviceTest('linear equals x @ Wᵀ + b', (dev) => {
  tidy(() => {
    const x = randn([4, 6], { dtype: 'f64', device: dev });
    const w = randn([3, 6], { dtype: 'f64', device: dev });
    const b = tensor([0.5, -1, 2], { dtype: 'f64', device: dev });
    const want = reference(x, transpose(w, 0, 1).contiguous()).map((v, i) => v + b.toList()[i % 3]);
    close(linear(x, w, b).toList(), want, 1e-13);
  });
});

test('bad operands throw errors naming the op and shapes', () => {
  tidy(() => {
    assert.throws(() => matmul(randn([2, 3]), randn([4, 2])), /matmul: inner dims differ: \[2, 3\] @ \[4, 2\]/);
    assert.throws(() => matmul(randn([2, 3]), randn([3, 2], { dtype: 'f64' })), /matmul: needs two f32, bf16, f16 or f64 tensors of one dtype/);
    assert.throws(() => matmul(randn([3]), randn([3, 2])), /matmul: needs tensors of rank >= 2/);
    assert.throws(() => matmul(randn([2, 2, 3]), randn([3, 3, 4])), /matmul: batch dims of \[2, 2, 3\] and \[3, 3, 4\] do not broadcast/);
    assert.throws(() => linear(randn([2, 3]), randn([4, 5])), /linear: x \[2, 3\] has 3 features, weight \[4, 5\] expects 5/);
    assert.throws(() => linear(randn([2, 3]), randn([4, 3]), randn([5])), /linear: bias \[5\] should be \[4\]/);
  });
});

test.run();
