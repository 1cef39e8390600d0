/**
 * The padded row pitch of odd-width products on CUDA (src/ops/row_pitch.ts): a linear whose rows
 * are not a multiple of 16 bytes writes them at N rounded up to 16 bytes and returns a strided
 * view; cross-entropy, reshape/view and linear's backward consume it in place. Proven against
 * the same computation with the pitch off (MESHTRAIN_PAD_LD=0), bit for bit on the emulated device
 * (the same kernels in the same order read the same values, only the leading dimensions differ;
 * there fresh memory is NaN-filled, so an op reading a padding column would show as a NaN), and
 * on a GPU within TOL (cuBLASLt may choose another kernel for an aligned pitch). Without a
 * usable device the device cases print one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import {
  AdamW, add, cast, cat, censusTotals, crossEntropy, cudaCensus, cudaIsAvailable, type DType, gelu, layerNorm, linear, logSoftmax, manualSeed, matmul,
  memoryStats, mul, narrow, native, nn, noGrad, type RowPitchMode, randn, rowPitchMode, softmax, sum, type Tensor, tensor, tidy, transpose,withRowPitchMode, 
} from '../../src/index.ts';
import { alignedPitch, rowPitchOf } from '../../src/ops/row_pitch.ts';
import { kernelsSay } from '../../src/tensor/backend.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { maxRelErr, TOL } from '../helpers/cuda_parity.ts';

const DEV = 'cuda:0';
/**
 * The emulated device runs one summation order whatever the leading dimension: bit for bit there.
 * On a GPU cuBLASLt may pick another kernel for an aligned pitch: within TOL of the dense run
 * (relative to its largest value; the structure, pitches and copies are checked exactly).
 */
const EXACT = 'cudaEmuChecks' in native;
/** AdamW moves a weight by at most ~2 lr a step whatever its gradient: 3 steps at lr 3e-3 (GPU only). */
const WEIGHT_TOL = 2 * 3 * 3e-3;

function assertSame(what: string, got: Tensor, want: Tensor, tol = TOL[want.dtype]): void {
  if (EXACT) {
    assertSameBits(what, got, want);
    return;
  }
  const err = maxRelErr(got.to('cpu').contiguous().toList() as number[], want.to('cpu').contiguous().toList() as number[]);
  assert.ok(err <= tol, `${what}: max relative error ${err} > ${tol}`);
}

test('rowPitchOf and alignedPitch: rows evenly spaced or not, 16 bytes per dtype', () => {
  const t = (shape: number[], strides: number[]) => ({ ndim: shape.length, shape, strides }) as unknown as Tensor;
  assert.is(rowPitchOf(t([2, 3, 67], [3 * 72, 72, 1])), 72);
  assert.is(rowPitchOf(t([6, 67], [67, 1])), 67);
  assert.is(rowPitchOf(t([1, 3, 67], [999, 72, 1])), 72, 'size-1 dims have any stride');
  assert.is(rowPitchOf(t([2, 3, 67], [300, 72, 1])), -1, 'a gap between the matrices');
  assert.is(rowPitchOf(t([3, 67], [1, 3])), -1, 'a transpose');
  assert.is(rowPitchOf(t([3, 67], [0, 1])), -1, 'broadcast rows');
  assert.is(rowPitchOf(t([67], [1])), 67);
  assert.equal([alignedPitch(50257, 'bf16'), alignedPitch(50257, 'f16'), alignedPitch(50257, 'f32'), alignedPitch(50257, 'f64')], [50264, 50264, 50260, 50258]);
  assert.is(alignedPitch(64, 'bf16'), 64);
});

test('withRowPitchMode sets the mode for its call and restores it, also when the call throws (CPU)', () => {
  const before = rowPitchMode();
  assert.is(withRowPitchMode('off', () => rowPitchMode()), 'off');
  assert.is(rowPitchMode(), before);
  assert.throws(() => withRowPitchMode('all', () => { throw new Error('planted'); }), /planted/);
  assert.is(rowPitchMode(), before);
  assert.throws(() => withRowPitchMode('sometimes' as RowPitchMode, () => 1), /MESHTRAIN_PAD_LD must be 0, 1 \(auto\) or all, got "sometimes"/);
  assert.is(rowPitchMode(), before);
});

test('view of rows at a pitch (a narrow of the last dim) is a view; one across the gap still throws (CPU)', () => {
  tidy(() => {
    const base = randn([2, 3, 8]);
    const rows = narrow(base, 2, 0, 5); // [2, 3, 5] with strides [24, 8, 1], as a padded product's
    const v = rows.view([6, 5]);
    assert.equal(v.strides, [8, 1]);
    assert.is(v.storage, base.storage);
    assert.equal(Array.from(v.toArray() as Float32Array), Array.from(rows.contiguous().toArray() as Float32Array));
    assert.throws(() => rows.view([2, 15]), /cannot be viewed as \[2, 15\] without a copy; use reshape\(\)/);
  });
});

/** The pitch and 16-byte rounding per dtype: [dtype, N, padded pitch]. */
const WIDTHS: [DType, number, number][] = [['f32', 67, 68], ['bf16', 67, 72], ['f16', 13, 16], ['f64', 67, 68]];

/** Values of f(linear(x, w)) and the gradients of sum(f(...) * r) for x, w, under `mode`. */
function opRun(mode: RowPitchMode, dtype: DType, N: number, f: (y: Tensor) => Tensor, expectPitch: number): Tensor[] {
  return withRowPitchMode(mode, () => {
    manualSeed(7);
    const x = randn([2, 5, 24], { dtype, device: DEV }).requiresGrad_(true);
    const w = randn([N, 24], { dtype, device: DEV }).requiresGrad_(true);
    const y = linear(x, w);
    assert.is(rowPitchOf(y), expectPitch, `${mode}: linear's rows ${expectPitch} apart`);
    const out = f(y);
    const r = noGrad(() => randn([...out.shape], { dtype: out.dtype, device: DEV }));
    sum(mul(out, r)).backward();
    return [out, x.grad as Tensor, w.grad as Tensor];
  });
}

/** Ops over a padded product: each must give the dense run's values and gradients bit for bit. */
const OPS: [string, (y: Tensor) => Tensor][] = [
  ['view [B*T, N] and back', (y) => y.view([10, y.shape[2]]).view([2, 5, y.shape[2]])],
  ['reshape', (y) => y.reshape([10, y.shape[2]])],
  ['add bias-like row', (y) => add(y, noGrad(() => randn([y.shape[2]], { dtype: y.dtype, device: DEV })))],
  ['gelu', (y) => gelu(y)],
  ['softmax', (y) => softmax(y, -1)],
  ['logSoftmax', (y) => logSoftmax(y, -1)],
  ['layerNorm', (y) => layerNorm(y, y.shape[2])],
  ['sum over rows', (y) => sum(y, [0, 1])],
  ['cast to f32', (y) => cast(y, 'f32')],
  ['transpose', (y) => transpose(y, 1, 2).contiguous()],
  ['narrow', (y) => narrow(y, 2, 1, 5)],
  ['cat', (y) => cat([y, y], 1)],
  ['as matmul A (ld = pitch)', (y) => matmul(y, noGrad(() => randn([y.shape[2], 8], { dtype: y.dtype, device: DEV })))],
  ['as matmul B', (y) => matmul(noGrad(() => randn([2, 3, 5], { dtype: y.dtype, device: DEV })), y)],
  ['linear of it', (y) => linear(y, noGrad(() => randn([8, y.shape[2]], { dtype: y.dtype, device: DEV })))],
];

if (!cudaIsAvailable()) {
  test('padded row pitch on CUDA', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_row_pitch: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else if (!kernelsSay(DEV, 'matmulOutLd') || !kernelsSay(DEV, 'crossEntropyLd')) {
  test('padded row pitch on CUDA', () => {
    console.log('SKIP test/unit/cuda_row_pitch: the addon predates the padded row pitch (matmul outLd, crossEntropy xLd/dxLd): rebuild it');
  });
} else {
  for (const [dtype, N, pitch] of WIDTHS) {
    test(`linear [10, ${N}] ${dtype}: rows ${pitch} apart, its values, .contiguous(), toArray and the memory tag`, () => {
      tidy(() => {
        const run = (mode: RowPitchMode) =>
          withRowPitchMode(mode, () => {
            manualSeed(3);
            const x = randn([10, 24], { dtype, device: DEV });
            const w = randn([N, 24], { dtype, device: DEV });
            // f32 and f64 take a bias epilogue; a misaligned bias view goes through the separate bias kernel.
            const bAll = randn([N + 1], { dtype, device: DEV });
            const before = memoryStats()[DEV].activation.current;
            const y = linear(x, w, narrow(bAll, 0, 0, N));
            const grown = memoryStats()[DEV].activation.current - before;
            return { y, grown, y2: linear(x, w, narrow(bAll, 0, 1, N)) };
          });
        const dense = run('off');
        const padded = run('all');
        assert.equal(padded.y.strides, [pitch, 1]);
        assert.equal(dense.y.strides, [N, 1]);
        const item = { f64: 8, f32: 4 }[dtype as string] ?? 2;
        assert.ok(padded.grown >= 10 * pitch * item && dense.grown < 10 * pitch * item, `activation grew ${padded.grown} vs ${dense.grown} bytes`);
        assertSame('y', padded.y, dense.y);
        assertSame('y, misaligned bias', padded.y2, dense.y2);
        assert.ok(padded.y.contiguous().isContiguous);
        assert.equal(Array.from(padded.y.toArray() as Float32Array), Array.from(dense.y.toArray() as Float32Array));
      });
    });

    test(`ops over a padded ${dtype} product equal the dense run (values and gradients)`, () => {
      for (const [name, f] of OPS) {
        tidy(() => {
          const want = opRun('off', dtype, N, f, N);
          const got = opRun('all', dtype, N, f, pitch);
          for (const [i, what] of ['value', 'dx', 'dw'].entries()) assertSame(`${name} ${dtype}: ${what}`, got[i], want[i]);
        });
      }
    });

    test(`crossEntropy over padded ${dtype} logits (linear with a bias): in place, gradient at the same pitch, equal to dense`, () => {
      tidy(() => {
        const run = (mode: RowPitchMode) =>
          withRowPitchMode(mode, () => {
            manualSeed(5);
            const x = randn([2, 5, 24], { dtype, device: DEV }).requiresGrad_(true);
            const w = randn([N, 24], { dtype, device: DEV }).requiresGrad_(true);
            const b = randn([N], { dtype, device: DEV }).requiresGrad_(true);
            const t = tensor([0, N - 1, 3, -100, 1, 2, 5, 7, 11, 4], { dtype: 'i64', device: DEV });
            // A first pass leaves .grad tensors; the checked one adds into them (linear's gradient destinations).
            crossEntropy(linear(x, w, b).view([10, N]), t).backward();
            const loss = crossEntropy(linear(x, w, b).view([10, N]), t);
            // The real kernel runs; the spy only notes the pitches it is given (args 15 and 17: logits, gradient).
            const kern = native.cuda as Record<string, (...a: unknown[]) => unknown>;
            const real = kern.crossEntropyBackward;
            let pitches: unknown[] = [];
            kern.crossEntropyBackward = (...a: unknown[]) => {
              pitches = a.length > 15 ? [a[15], a[17]] : [N, N];
              return real(...a);
            };
            try {
              loss.backward();
            } finally {
              kern.crossEntropyBackward = real;
            }
            return { loss, dx: x.grad as Tensor, dw: w.grad as Tensor, db: b.grad as Tensor, pitches };
          });
        const dense = run('off');
        const padded = run('all');
        assertSame('loss', padded.loss, dense.loss);
        assertSame('dx', padded.dx, dense.dx);
        assertSame('dw', padded.dw, dense.dw);
        assertSame('db', padded.db, dense.db);
        assert.equal(dense.pitches, [N, N]);
        assert.equal(padded.pitches, [pitch, pitch], 'logits read and their gradient written at the padded pitch');
      });
    });
  }

  test('backward products are dense: a parameter gradient [24, 67] f32 gets no pitch and no extra copy', () => {
    const run = (mode: RowPitchMode) =>
      withRowPitchMode(mode, () =>
        tidy(() => {
          manualSeed(9);
          const a = randn([10, 24], { device: DEV }).requiresGrad_(true);
          const b = randn([24, 67], { device: DEV }).requiresGrad_(true);
          const y = matmul(a, b);
          const l = sum(y); // outside the census: sum copies its strided input
          const { entries } = cudaCensus(() => l.backward());
          const copies = entries.filter((e) => e.site.startsWith('cuda/copy.cu')).reduce((n, e) => n + e.count, 0);
          const g = b.grad as Tensor;
          return { strides: y.strides, copies, dense: g.isContiguous, grad: Array.from(g.toArray() as Float32Array) };
        }),
      );
    const dense = run('off');
    const padded = run('all');
    assert.equal(padded.strides, [68, 1], 'the forward product is padded');
    assert.is(padded.copies, dense.copies, 'no copy of a padded gradient into .grad');
    assert.ok(padded.dense);
    assert.equal(padded.grad, dense.grad);
  });

  /** Losses and final weights of 3 AdamW steps of a GPT with an odd vocabulary under `mode`. */
  function gptRun(mode: RowPitchMode, dtype: DType, V: number): { losses: Tensor[]; weights: Tensor[] } {
    return withRowPitchMode(mode, () => {
      manualSeed(11);
      const [B, T] = [2, 16];
      const model = nn.moduleToDevice(new GPT(gptConfig('tiny', { vocabSize: V, nCtx: T, dropout: 0, dtype })), DEV);
      const optimizer = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
      const losses: Tensor[] = [];
      for (let s = 0; s < 3; s++) {
        const ids = tensor(Array.from({ length: B * T }, (_, i) => (i * 31 + s * 7) % V), { dtype: 'i32', shape: [B, T], device: DEV });
        const targets = tensor(Array.from({ length: B * T }, (_, i) => (i * 17 + s * 3 + 1) % V), { dtype: 'i64', device: DEV });
        losses.push(
          tidy(() => {
            const l = crossEntropy(model.forward(ids).view([B * T, V]), targets);
            l.backward();
            optimizer.step();
            optimizer.zeroGrad();
            return l;
          }),
        );
      }
      return { losses, weights: model.parameters().map((p) => p.detach()) };
    });
  }

  for (const [dtype, V] of [['bf16', 67], ['f32', 1031]] as [DType, number][]) {
    test(`GPT tiny, vocab ${V}, ${dtype}: 3 AdamW steps with the padded pitch equal the dense run`, () => {
      const dense = gptRun('off', dtype, V);
      const padded = gptRun('all', dtype, V);
      dense.losses.forEach((l, i) => assertSame(`step ${i} loss`, padded.losses[i], l));
      dense.weights.forEach((w, i) => assertSame(`parameter ${i}`, padded.weights[i], w, WEIGHT_TOL));
    });
  }

  test('census: the padded GPT step copies nothing more than the dense one (no copy of the logits)', () => {
    const [B, T, V] = [2, 16, 67];
    const census = (mode: RowPitchMode, extra: (logits: Tensor) => void) =>
      withRowPitchMode(mode, () => {
        manualSeed(11);
        const model = nn.moduleToDevice(new GPT(gptConfig('tiny', { vocabSize: V, nCtx: T, dropout: 0, dtype: 'bf16' })), DEV);
        const ids = tensor(Array.from({ length: B * T }, (_, i) => (i * 31) % V), { dtype: 'i32', shape: [B, T], device: DEV });
        const targets = tensor(Array.from({ length: B * T }, (_, i) => (i * 17 + 1) % V), { dtype: 'i64', device: DEV });
        const step = () =>
          tidy(() => {
            const logits = model.forward(ids);
            extra(logits);
            crossEntropy(logits.view([B * T, V]), targets).backward();
          });
        step();
        const { entries } = cudaCensus(step);
        model.dispose();
        const copies = entries.filter((e) => e.site.startsWith('cuda/copy.cu'));
        return { copies: copies.reduce((n, e) => n + e.count, 0), bytes: copies.reduce((n, e) => n + e.bytes, 0), ops: censusTotals(entries).deviceOps };
      });
    const dense = census('off', () => {});
    const padded = census('all', () => {});
    assert.equal(padded, dense, 'the same copies, bytes and device ops');
    // The census does see a copy of the logits where one is made (its bytes: rows * V * 2 read + written).
    const forced = census('all', (l) => l.contiguous());
    assert.is(forced.copies, padded.copies + 1);
    assert.is(forced.bytes - padded.bytes, B * T * V * 2 * 2);
  });
}

test.run();
