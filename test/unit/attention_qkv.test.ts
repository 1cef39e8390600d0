/**
 * qkvAttention on the CPU (src/ops/attention_qkv.ts), both ways: the fused kernels of
 * native/cpu/attention.cc (MESHTRAIN_ATTENTION_CPU=fused) and the composed default. Attention
 * over the heads of one fused qkv tensor equals the composed reference (split, heads as
 * views, scaledDotProductAttention = matmul, scaled causal softmax, matmul; heads merged) in values
 * and gradients: f64 within 1e-12 and f32 within 1e-5 of the largest value (at least 1); bf16/f16
 * within 1e-2 (fused) or 2e-2 (composed, which rounds the probabilities too) of an f32 reference on
 * the same rounded inputs. Contiguous and strided qkv views,
 * head dims 1 to 64, T 1 to 70 (over several 32-row tiles); f64 gradients match finite differences;
 * the fused kernels allocate no [T, T] buffer and check their operands; bad arguments
 * are refused with the op, the argument and the shape.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type DType, manualSeed, memoryStats, mul, native, noGrad, qkvAttention, randn, resetPeakMemoryStats, reshape, scaledDotProductAttention, split, sum,
  type Tensor, tidy, transpose,
} from '../../src/index.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';
import { withEnv } from '../helpers/env.ts';
import { gradcheck } from '../helpers/gradcheck.ts';

const TOL: Record<string, number> = { f64: 1e-12, f32: 1e-5, bf16: 1e-2, f16: 1e-2 };
/** The composed ops round the [T, T] probabilities to bf16/f16 before the second product: one more rounding. */
const COMPOSED_16 = 2e-2;
manualSeed(7);
const refDType = (d: DType): DType => (d === 'bf16' || d === 'f16' ? 'f32' : d);
/** An addon built before native/cpu/attention.cc: qkvAttention takes the composed ops; say what was not checked. */
const skipOld = (what: string) => console.log(`SKIP test/unit/attention_qkv: ${what} (this addon has no CPU attention kernels; rebuild it)`);
const hasFused = typeof native.attentionBackward === 'function';

/** Runs `fn` with qkvAttention on the fused CPU kernels (true) or the composed ops (false). */
function withKernels<T>(fused: boolean, fn: () => T): T {
  return withEnv({ MESHTRAIN_ATTENTION_CPU: fused ? 'fused' : undefined }, fn);
}

/** The composed reference: split qkv [..., T, 3C], heads as views, attention, heads merged. */
function reference(qkv: Tensor, H: number, causal: boolean, scale?: number): Tensor {
  const lead = qkv.shape.slice(0, -2);
  const T = qkv.shape[qkv.ndim - 2];
  const C = qkv.shape[qkv.ndim - 1] / 3;
  const heads = (t: Tensor) => transpose(reshape(t, [...lead, T, H, C / H]), -3, -2);
  const [q, k, v] = split(qkv, C, -1).map(heads);
  return reshape(transpose(scaledDotProductAttention(q, k, v, { causal, scale }), -3, -2), [...lead, T, C]);
}

function check(fused: boolean, name: string, leafShape: number[], H: number, causal: boolean, dtype: DType, view = (x: Tensor) => x, scale?: number): void {
  tidy(() => {
    const base = randn(leafShape, { dtype });
    const outShape = noGrad(() => {
      const q = view(base);
      return [...q.shape.slice(0, -1), q.shape[q.ndim - 1] / 3];
    });
    const w = randn(outShape, { dtype });
    const run = (f: (x: Tensor) => Tensor, d: DType) => {
      const leaf = noGrad(() => base.to(d)).requiresGrad_(true);
      const y = f(view(leaf));
      sum(mul(y, noGrad(() => w.to(d)))).backward();
      return { y, g: leaf.grad as Tensor };
    };
    const got = withKernels(fused, () => run((x) => qkvAttention(x, H, { causal, scale }), dtype));
    const want = run((x) => reference(x, H, causal, scale), refDType(dtype));
    assert.is(got.y.dtype, dtype);
    // Which path ran: one node over qkv (the fused kernels) or the composed ops' last reshape.
    assert.is(got.y.gradFn?.name === 'qkvAttention', fused, `${name}: fused path ${fused}`);
    assert.equal(got.y.shape, outShape, `${name}: shape`);
    const tol = !fused && (dtype === 'bf16' || dtype === 'f16') ? COMPOSED_16 : TOL[dtype];
    const ey = maxRelErr(got.y.toList() as number[], want.y.toList() as number[], 1);
    const eg = maxRelErr(got.g.toList() as number[], want.g.toList() as number[], 1);
    assert.ok(ey <= tol, `${name} ${dtype}: output differs by ${ey} (tolerance ${tol})`);
    assert.ok(eg <= tol, `${name} ${dtype}: gradient differs by ${eg} (tolerance ${tol})`);
  });
}

for (const fused of [true, false]) {
  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    test(`qkvAttention (${fused ? 'fused CPU kernels' : 'composed ops'}) = the composed reference, ${dtype}: head dims, T over tiles, strided views`, () => {
      if (fused && !hasFused) return skipOld(`the fused kernels, ${dtype}`);
      for (const D of [1, 8, 13, 32, 64]) check(fused, `[2, 17, 3 x 2 x ${D}]`, [2, 17, 3 * 2 * D], 2, true, dtype);
      for (const causal of [true, false]) check(fused, `T 70, causal ${causal}`, [1, 70, 3 * 2 * 32], 2, causal, dtype);
      check(fused, 'not causal, custom scale', [2, 9, 3 * 3 * 16], 3, false, dtype, undefined, 0.4);
      check(fused, 'T 1', [3, 1, 3 * 2 * 8], 2, true, dtype);
      check(fused, 'rank 2 [T, 3C]', [11, 3 * 2 * 16], 2, true, dtype);
      check(fused, 'narrowed rows', [2, 13, 3 * 2 * 16 + 5], 2, true, dtype, (x) => x.narrow(-1, 2, 3 * 2 * 16));
      check(fused, 'transposed batch and time', [33, 2, 3 * 2 * 16], 2, true, dtype, (x) => transpose(x, 0, 1));
      check(fused, 'rank 4, unmergeable lead', [2, 7, 2, 3 * 16], 1, true, dtype, (x) => x.permute([0, 2, 1, 3]));
      check(fused, 'last dim strided', [2, 3 * 2 * 8, 6], 2, false, dtype, (x) => transpose(x, 1, 2));
    });
  }
}

test('qkvAttention gradients match finite differences (f64, fused CPU kernels and composed ops)', () => {
  for (const fused of hasFused ? [true, false] : [false]) {
    withKernels(fused, () =>
      tidy(() => {
        const x = randn([2, 4, 3 * 2 * 4], { dtype: 'f64' }).requiresGrad_(true);
        gradcheck('qkvAttention causal', (t) => qkvAttention(t, 2, { causal: true }), [x]);
        const y = randn([1, 3, 3 * 5], { dtype: 'f64' }).requiresGrad_(true);
        gradcheck('qkvAttention', (t) => qkvAttention(t, 1, { scale: 0.7 }), [y]);
      }),
    );
  }
});

test('the fused CPU kernels never allocate the [T, T] scores (T 1024: peak activation < 1/4 of one score matrix)', () => {
  if (!hasFused) return skipOld('the [T, T] check');
  withKernels(true, () =>
    tidy(() => {
      const [T, D] = [1024, 32];
      const x = randn([1, T, 3 * D]).requiresGrad_(true);
      resetPeakMemoryStats();
      const before = memoryStats().cpu.activation.current;
      sum(qkvAttention(x, 1, { causal: true })).backward();
      const peak = memoryStats().cpu.activation.peak - before;
      assert.ok(peak < (T * T * 4) / 4, `peak activation ${peak} bytes vs one score matrix ${T * T * 4}`);
    }),
  );
});

test('the CPU kernels check their operands: bounds, strides, outputs aliasing inputs', () => {
  if (!hasFused) return skipOld('the kernel argument checks');
  tidy(() => {
    const x = randn([1, 4, 3 * 8]);
    const o = randn([1, 4, 8]);
    const lse = randn([4]);
    const s = [96, 8, 24];
    const fwd = (oId: number, oOff: number, qStrides = s) =>
      native.attentionForward(0, 1, 1, 4, 4, 8, 1, true, x.id, 0, qStrides, x.id, 8, s, x.id, 16, s, oId, oOff, [32, 8, 8], lse.id);
    assert.throws(() => fwd(o.id, 4), /outside storage/);
    assert.throws(() => fwd(x.id, 0), /scaledDotProductAttention: an output shares storage \d+ with an input/);
    assert.throws(() => fwd(o.id, 0, [96, 8, -24]), /scaledDotProductAttention: q has a negative stride/);
    fwd(o.id, 0);
  });
});

test('qkvAttention errors name the op, the argument and the shape', () => {
  tidy(() => {
    const x = randn([2, 4, 96]);
    assert.throws(() => qkvAttention(x, 5), /qkvAttention: qkv's last dim 96 \(of \[2, 4, 96\]\) is not 3 \* heads \(5\)/);
    assert.throws(() => qkvAttention(x, 1.5), /qkvAttention: heads must be a positive integer, got 1.5/);
    assert.throws(() => qkvAttention(randn([96]), 1), /qkvAttention: qkv must be \[\.\.\., T, 3 \* heads \* D\], got \[96\]/);
    assert.throws(() => qkvAttention(x.to('i32'), 1), /qkvAttention: qkv must be floating point/);
    assert.throws(() => qkvAttention(x, 2, { scale: Number.NaN }), /qkvAttention: scale must be a finite number/);
    assert.throws(() => qkvAttention(x, 2, { causal: 1 as unknown as boolean }), /qkvAttention: causal must be a boolean/);
  });
});

test.run();
