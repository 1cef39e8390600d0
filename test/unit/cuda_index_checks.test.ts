/**
 * Embedding and cross-entropy on CUDA keep their indices on the device: the range check writes a
 * device flag read at the next synchronization (which then throws the op's message), the
 * embedding backward groups positions with a device sort, and 'mean' divides by a device count.
 * Values and gradients equal the CPU's (f64 1e-12, f32 1e-5, bf16 1e-2 of the largest value);
 * bad indices give the same message as on the CPU, one synchronization later. Without a usable
 * device the suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  crossEntropy, cudaIsAvailable, cudaSynchronize, type DType, embedding, mul, native, noGrad, randn, sum, type Tensor, tensor, tidy,
} from '../../src/index.ts';
import { pendingDeviceChecks } from '../../src/tensor/device_checks.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';

const DEV = 'cuda:0';
const TOL: Record<string, number> = { f64: 1e-12, f32: 1e-5, bf16: 1e-2 };

/** Integer ids in [0, hi) of `shape` from a fixed LCG (the same on every run). */
function ids(hi: number, shape: number[], dtype: 'i32' | 'i64'): Tensor {
  let s = 12345;
  const n = shape.reduce((a, b) => a * b, 1);
  const v = Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % hi;
  });
  return tensor(v, { dtype, shape });
}

/** f(ids, x) on the CPU and on CUDA: output and the gradient of x. */
function parity(name: string, f: (ids: Tensor, x: Tensor) => Tensor, ids: Tensor, x: Tensor): void {
  tidy(() => {
    const xc = noGrad(() => x.to('cpu')).requiresGrad_(true);
    const xg = noGrad(() => x.to(DEV)).requiresGrad_(true);
    const a = f(ids, xc);
    const b = f(ids.to(DEV), xg);
    const t = TOL[x.dtype];
    const e = maxRelErr(b.toList(), a.toList());
    assert.ok(e <= t, `${name} ${x.dtype}: output differs by ${e}`);
    const w = randn([...a.shape], { dtype: a.dtype });
    sum(mul(a, w)).backward();
    sum(mul(b, w.to(DEV))).backward();
    const eg = maxRelErr(xg.grad?.toList() ?? [], xc.grad?.toList() ?? []);
    assert.ok(eg <= t, `${name} ${x.dtype}: gradient differs by ${eg}`);
  });
}

if (!cudaIsAvailable()) {
  test('CUDA device-side index checks', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_index_checks: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
    test(`embedding on the device sort equals the CPU (repeated ids, i32 and i64), ${dtype}`, () => {
      parity('embedding small', embedding, tensor([3, 0, 3, 9, 1, 3, 0], { dtype: 'i64' }), randn([10, 6], { dtype }));
      parity('embedding i32 2-d', embedding, tensor([[1, 1], [4, 2]], { dtype: 'i32' }), randn([5, 3], { dtype }));
      // Many repeats of few ids, and a vocabulary larger than the ids: the sort's buckets and gaps.
      parity('embedding 4096 ids', embedding, ids(50, [16, 256], 'i64'), randn([1000, 32], { dtype }));
      parity('embedding no ids', embedding, tensor([], { dtype: 'i64', shape: [0] }), randn([7, 4], { dtype }));
    });

    test(`cross-entropy with a device count (mean, sum, none; ignored rows), ${dtype}`, () => {
      const t = tensor([2, 0, -100, 7, 7, 1], { dtype: 'i64' });
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        parity(`crossEntropy ${reduction}`, (ids, x) => crossEntropy(x, ids, { reduction }), t, randn([6, 8], { dtype }));
      }
      parity('crossEntropy large', (ids, x) => crossEntropy(x, ids), ids(300, [512], 'i32'), randn([512, 300], { dtype }));
      tidy(() => {
        const all = crossEntropy(randn([2, 3], { dtype, device: DEV }), tensor([-100, -100], { dtype: 'i64', device: DEV }));
        assert.ok(Number.isNaN(all.item()), 'every target ignored: mean is NaN, as PyTorch');
      });
    });
  }

  test('a bad index is reported at the next synchronization with the CPU message', () => {
    tidy(() => {
      const x = randn([2, 3], { device: DEV });
      const loss = crossEntropy(x, tensor([0, 5], { dtype: 'i64', device: DEV }));
      assert.ok(pendingDeviceChecks() >= 1, 'the check waits for a synchronization');
      assert.throws(() => loss.item(), /crossEntropy: target 5 at position \[1\] is out of range for C = 3/);
      assert.is(pendingDeviceChecks(), 0);
      const e = embedding(tensor([[1, 0], [7, 0]], { dtype: 'i32', device: DEV }), x);
      assert.throws(() => e.to('cpu'), /embedding: id 7 at position \[1, 0\] of ids \[2, 2\] is out of range for V = 2/);
      embedding(tensor([-1], { dtype: 'i64', device: DEV }), x);
      assert.throws(() => cudaSynchronize(DEV), /embedding: id -1 at position \[0\]/);
      // Good indices leave nothing behind, and the next step runs normally.
      assert.is(crossEntropy(x, tensor([0, 2], { dtype: 'i64', device: DEV })).toList().length, 1);
      assert.is(pendingDeviceChecks(), 0);
    });
  });
}

test.run();
