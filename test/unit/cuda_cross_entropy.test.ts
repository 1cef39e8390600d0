/**
 * Cross-entropy's CUDA kernels (native/cuda/loss.cu) against the CPU's: the forward's online max
 * and sum over 16-byte chunks, the backward's 16-byte loads and stores, and their element-by-element
 * twins for rows off 16-byte alignment. Values and gradients (of sum(loss * w)) within f64 1e-12,
 * f32 1e-5, bf16 and f16 1e-2 of the largest CPU value; a row read 16 bytes at a time and the same
 * row read element by element give the same bits, and so do two runs. Without a usable device the
 * suite prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  copyInPlace, crossEntropy, cudaIsAvailable, type DType, mul, narrow, native, noGrad, randn, sum, type Tensor, tensor, tidy,
} from '../../src/index.ts';
import type { CrossEntropyOptions } from '../../src/ops/loss.ts';
import { alignedPitch, rowPitchOf } from '../../src/ops/row_pitch.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { DEV, maxRelErr, parity, TOL } from '../helpers/cuda_parity.ts';

const FLOATS: DType[] = ['f64', 'f32', 'bf16', 'f16'];
/** GPT-2's vocabulary: rows of 100514 bytes in 16-bit floats, never 16-byte aligned when dense. */
const VOCAB = 50257;

/** Targets for `rows` rows of C classes from a fixed LCG, every fourth row (from the second) `ignore`. */
function targets(rows: number, C: number, dtype: 'i32' | 'i64', ignore = -100): Tensor {
  let s = 7 + C;
  const v = Array.from({ length: rows }, (_, r) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return r % 4 === 1 ? ignore : s % C;
  });
  return tensor(v, { dtype });
}

/** Logits of [rows, C] given by value(r, j), as `dtype` on the CPU. */
function logits(rows: number, C: number, dtype: DType, value: (r: number, j: number) => number): Tensor {
  const v = new Array<number>(rows * C);
  for (let r = 0; r < rows; r++) for (let j = 0; j < C; j++) v[r * C + j] = value(r, j);
  return tensor(v, { dtype, shape: [rows, C] });
}

/**
 * The logits as `layout` on the device, a leaf with a gradient: 'dense' rows C apart; 'padded' rows
 * at the aligned pitch (a padded matmul output: 16-byte loads, the gradient at that pitch);
 * 'shifted' the same pitch one element in (rows off 16-byte alignment: element loads).
 * Returns the leaf and the [rows, C] view cross-entropy reads.
 */
function onDevice(x: Tensor, layout: 'dense' | 'padded' | 'shifted'): { leaf: Tensor; view: Tensor } {
  const [rows, C] = x.shape;
  if (layout === 'dense') {
    const leaf = noGrad(() => x.to(DEV)).requiresGrad_(true);
    return { leaf, view: leaf };
  }
  const pitch = alignedPitch(C, x.dtype);
  const shift = layout === 'shifted' ? 1 : 0;
  const big = noGrad(() => {
    const b = randn([rows, pitch + shift], { dtype: x.dtype, device: DEV });
    copyInPlace(narrow(b, 1, shift, C), x.to(DEV));
    return b;
  }).requiresGrad_(true);
  const view = narrow(big, 1, shift, C);
  assert.is(rowPitchOf(view), pitch + shift);
  return { leaf: big, view };
}

/** Loss and the gradient of sum(loss * w) of [rows, C] logits in `layout`, on the device. */
function runOnDevice(x: Tensor, t: Tensor, w: Tensor, opts: CrossEntropyOptions, layout: 'dense' | 'padded' | 'shifted'): { loss: Tensor; grad: Tensor } {
  const { leaf, view } = onDevice(x, layout);
  const loss = crossEntropy(view, t.to(DEV), opts);
  sum(mul(loss, w.to(DEV))).backward();
  const g = leaf.grad as Tensor;
  const grad = layout === 'dense' ? g : narrow(g, 1, layout === 'shifted' ? 1 : 0, x.shape[1]).contiguous();
  return { loss, grad };
}

/** The CPU's loss and gradient; the device's in every layout within TOL of them, and bit for bit equal to each other. */
function checkLayouts(name: string, x: Tensor, t: Tensor, opts: CrossEntropyOptions = {}, tol = TOL[x.dtype]): void {
  tidy(() => {
    const xc = noGrad(() => x.clone()).requiresGrad_(true);
    const want = crossEntropy(xc, t, opts);
    const w = randn([...want.shape], { dtype: want.dtype });
    sum(mul(want, w)).backward();
    let first: { loss: Tensor; grad: Tensor } | undefined;
    for (const layout of ['dense', 'padded', 'shifted'] as const) {
      const got = runOnDevice(x, t, w, opts, layout);
      const e = maxRelErr(got.loss.toList(), want.toList());
      assert.ok(e <= tol, `${name} ${x.dtype} ${layout}: loss differs from the CPU's by ${e} (tolerance ${tol})`);
      const eg = maxRelErr(got.grad.toList(), (xc.grad as Tensor).toList());
      assert.ok(eg <= tol, `${name} ${x.dtype} ${layout}: gradient differs from the CPU's by ${eg} (tolerance ${tol})`);
      if (!first) first = got;
      else {
        assertSameBits(`${name} ${x.dtype} ${layout} vs dense: loss`, got.loss, first.loss);
        assertSameBits(`${name} ${x.dtype} ${layout} vs dense: gradient`, got.grad, first.grad);
      }
    }
  });
}

if (!cudaIsAvailable()) {
  test('CUDA cross-entropy kernels', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_cross_entropy: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of FLOATS) {
    test(`widths around a 16-byte chunk and a block (1 to 4103 columns), every reduction, i32 and i64, ${dtype}`, () => {
      // 8 and 2048 columns are whole chunks of 16-bit floats; the others leave a short last chunk, or
      // fewer chunks than threads, or a thread with one chunk more than its neighbours.
      for (const [i, C] of [1, 7, 8, 9, 100, 255, 2048, 2051, 4103].entries()) {
        const idType = i % 2 === 0 ? 'i64' : 'i32';
        for (const reduction of ['mean', 'sum', 'none'] as const) {
          parity(`crossEntropy ${C} columns ${reduction} ${idType}`, (x, t) => crossEntropy(x, t, { reduction }),
            () => [randn([6, C], { dtype, requiresGrad: true, std: 3 }), targets(6, C, idType)]);
        }
      }
      parity('crossEntropy ignoreIndex 2', (x, t) => crossEntropy(x, t, { ignoreIndex: 2 }),
        () => [randn([9, 37], { dtype, requiresGrad: true }), targets(9, 3, 'i64', 2)]);
    });

    test(`rows read 16 bytes at a time, element by element and dense give the same bits, within TOL of the CPU, ${dtype}`, () => {
      const x = noGrad(() => randn([5, 1003], { dtype, std: 4 }));
      for (const reduction of ['mean', 'sum', 'none'] as const) checkLayouts(`1003 columns ${reduction}`, x, targets(5, 1003, 'i64'), { reduction });
      checkLayouts('5 columns', noGrad(() => randn([7, 5], { dtype })), targets(7, 5, 'i32'), { reduction: 'none' });
    });
  }

  for (const dtype of ['f32', 'bf16'] as DType[]) {
    test(`GPT-2's ${VOCAB} columns at the padded pitch (and off it), ${dtype}`, () => {
      checkLayouts(`${VOCAB} columns`, noGrad(() => randn([4, VOCAB], { dtype, std: 2 })), targets(4, VOCAB, 'i64'), { reduction: 'none' });
    });
  }

  for (const dtype of FLOATS) {
    test(`extreme logits: each chunk a new max, large magnitudes, -inf, all equal, ${dtype}`, () => {
      const big = dtype === 'f16' ? 6e4 : dtype === 'f64' ? 1e300 : 1e30;
      const C = 1003;
      const t = tensor([C - 1, 0, 500, 3], { dtype: 'i64' });
      const cases: [string, (r: number, j: number) => number][] = [
        // Ascending: every chunk raises the running max, so s is rescaled at each (and the rows differ in scale).
        ['ascending', (r, j) => (j - 500) * (r + 1) * 0.05],
        ['descending', (r, j) => (500 - j) * (r + 1) * 0.05],
        // One huge value: the other exponentials underflow to 0; the loss at it (row 0's target) ~0, elsewhere ~big.
        ['one huge value', (r, j) => (j === (r === 0 ? C - 1 : 17 * r) ? big : (j % 7) - 3)],
        ['huge magnitudes both ways', (r, j) => (j % 2 === 0 ? big : -big) * (j % 3 === 0 ? 1 : 0.5) * (r % 2 ? 1 : -1)],
        // -inf entries: whole chunks of them first (a thread's running max stays -inf), and at a target (loss +inf).
        ['-inf entries', (r, j) => ((j < 600 && r < 2) || j % 5 === r ? Number.NEGATIVE_INFINITY : Math.sin(j + r))],
        ['all equal', (r) => r - 1.5],
      ];
      for (const [name, value] of cases) {
        const x = logits(4, C, dtype, value);
        checkLayouts(name, x, t, { reduction: 'none' });
      }
    });

    test(`a row of -inf only: NaN loss and gradient, as on the CPU, ${dtype}`, () => {
      tidy(() => {
        const x = logits(2, 19, dtype, (r, j) => (r === 0 ? Number.NEGATIVE_INFINITY : j));
        const t = tensor([4, 4], { dtype: 'i64' });
        const cpu = crossEntropy(x, t, { reduction: 'none' }).toList();
        const xg = noGrad(() => x.to(DEV)).requiresGrad_(true);
        const loss = crossEntropy(xg, t.to(DEV), { reduction: 'none' });
        const got = loss.toList();
        assert.ok(Number.isNaN(got[0]) && Number.isNaN(cpu[0]), `row of -inf: loss ${got[0]}, CPU ${cpu[0]}`);
        assert.ok(maxRelErr([got[1]], [cpu[1]]) <= TOL[dtype], `finite row: ${got[1]} vs ${cpu[1]}`);
        sum(loss).backward();
        const g = (xg.grad as Tensor).toList();
        assert.ok(g.slice(0, 19).every(Number.isNaN), 'gradient of the -inf row is NaN');
        assert.ok(g.slice(19).every(Number.isFinite), 'gradient of the finite row is finite');
      });
    });
  }

  test('ignored rows: zero gradient rows (16-byte stores and element stores), no loss', () => {
    for (const layout of ['padded', 'shifted', 'dense'] as const) {
      tidy(() => {
        const rows = 6;
        const x = noGrad(() => randn([rows, 1003], { dtype: 'bf16' }));
        const t = tensor([5, 7, 7, 0, 7, 1002], { dtype: 'i32' });
        const { loss, grad } = runOnDevice(x, t, randn([], { dtype: 'bf16' }), { ignoreIndex: 7 }, layout);
        const g = grad.toList();
        for (const r of [1, 2, 4]) assert.ok(g.slice(r * 1003, (r + 1) * 1003).every((v) => Object.is(v, 0)), `${layout}: row ${r} is ignored, its gradient all +0`);
        for (const r of [0, 3, 5]) assert.ok(g.slice(r * 1003, (r + 1) * 1003).some((v) => v !== 0), `${layout}: row ${r} has a gradient`);
        const want = crossEntropy(x, t, { ignoreIndex: 7 }).item();
        assert.ok(maxRelErr([loss.item()], [want]) <= TOL.bf16, `${layout}: mean over the 3 rows not ignored`);
      });
    }
  });

  test('two runs give the same bits (forward and backward, aligned and not)', () => {
    for (const [dtype, C] of [['bf16', VOCAB], ['f32', 1003], ['f64', 333]] as [DType, number][]) {
      tidy(() => {
        const x = noGrad(() => randn([3, C], { dtype, std: 3 }));
        const t = targets(3, C, 'i64');
        const w = randn([3], { dtype });
        for (const layout of ['padded', 'dense'] as const) {
          const a = runOnDevice(x, t, w, { reduction: 'none' }, layout);
          const b = runOnDevice(x, t, w, { reduction: 'none' }, layout);
          assertSameBits(`${dtype} ${C} ${layout}: loss`, b.loss, a.loss);
          assertSameBits(`${dtype} ${C} ${layout}: gradient`, b.grad, a.grad);
        }
      });
    }
  });
}

test.run();
