/**
 * qkvAttention on the CPU (src/ops/attention_qkv.ts): attention over the heads of one fused qkv
 * tensor equals the composed reference (split, heads as views, scaledDotProductAttention, heads
 * merged) in values and gradients, f64 within 1e-12 and f32 within 1e-5 of the largest value, on
 * contiguous and strided qkv views; f64 gradients match finite differences; bad arguments are
 * refused with the op, the argument and the shape.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type DType, mul, noGrad, qkvAttention, randn, reshape, scaledDotProductAttention, split, sum, type Tensor, tidy, transpose } from '../../src/index.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';
import { gradcheck } from '../helpers/gradcheck.ts';

const TOL: Record<string, number> = { f64: 1e-12, f32: 1e-5 };

/** The composed reference: split qkv [..., T, 3C], heads as views, attention, heads merged. */
function reference(qkv: Tensor, H: number, causal: boolean, scale?: number): Tensor {
  const lead = qkv.shape.slice(0, -2);
  const T = qkv.shape[qkv.ndim - 2];
  const C = qkv.shape[qkv.ndim - 1] / 3;
  const heads = (t: Tensor) => transpose(reshape(t, [...lead, T, H, C / H]), -3, -2);
  const [q, k, v] = split(qkv, C, -1).map(heads);
  return reshape(transpose(scaledDotProductAttention(q, k, v, { causal, scale }), -3, -2), [...lead, T, C]);
}

function check(name: string, leafShape: number[], H: number, causal: boolean, dtype: DType, view = (x: Tensor) => x, scale?: number): void {
  tidy(() => {
    const base = randn(leafShape, { dtype });
    const outShape = noGrad(() => {
      const q = view(base);
      return [...q.shape.slice(0, -1), q.shape[q.ndim - 1] / 3];
    });
    const w = randn(outShape, { dtype });
    const run = (f: (x: Tensor) => Tensor) => {
      const leaf = noGrad(() => base.clone()).requiresGrad_(true);
      const y = f(view(leaf));
      sum(mul(y, w)).backward();
      return { y, g: leaf.grad as Tensor };
    };
    const got = run((x) => qkvAttention(x, H, { causal, scale }));
    const want = run((x) => reference(x, H, causal, scale));
    assert.equal(got.y.shape, outShape, `${name}: shape`);
    const ey = maxRelErr(got.y.toList() as number[], want.y.toList() as number[], 1);
    const eg = maxRelErr(got.g.toList() as number[], want.g.toList() as number[], 1);
    assert.ok(ey <= TOL[dtype], `${name} ${dtype}: output differs by ${ey} (tolerance ${TOL[dtype]})`);
    assert.ok(eg <= TOL[dtype], `${name} ${dtype}: gradient differs by ${eg} (tolerance ${TOL[dtype]})`);
  });
}

for (const dtype of ['f64', 'f32'] as DType[]) {
  test(`qkvAttention = the composed reference, ${dtype}: head dims, causal and not, strided views`, () => {
    for (const D of [8, 32, 64]) check(`[2, 17, 3 x 2 x ${D}]`, [2, 17, 3 * 2 * D], 2, true, dtype);
    check('not causal, custom scale', [2, 9, 3 * 3 * 16], 3, false, dtype, undefined, 0.4);
    check('T 1', [3, 1, 3 * 2 * 8], 2, true, dtype);
    check('rank 2 [T, 3C]', [11, 3 * 2 * 16], 2, true, dtype);
    check('narrowed rows', [2, 13, 3 * 2 * 16 + 5], 2, true, dtype, (x) => x.narrow(-1, 2, 3 * 2 * 16));
    check('transposed batch and time', [13, 2, 3 * 2 * 16], 2, true, dtype, (x) => transpose(x, 0, 1));
    check('rank 4, unmergeable lead', [2, 7, 2, 3 * 16], 1, true, dtype, (x) => x.permute([0, 2, 1, 3]));
    check('last dim strided', [2, 3 * 2 * 8, 6], 2, false, dtype, (x) => transpose(x, 1, 2));
  });
}

test('qkvAttention gradients match finite differences (f64)', () => {
  tidy(() => {
    const x = randn([2, 4, 3 * 2 * 4], { dtype: 'f64' }).requiresGrad_(true);
    gradcheck('qkvAttention causal', (t) => qkvAttention(t, 2, { causal: true }), [x]);
    const y = randn([1, 3, 3 * 5], { dtype: 'f64' }).requiresGrad_(true);
    gradcheck('qkvAttention', (t) => qkvAttention(t, 1, { scale: 0.7 }), [y]);
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
