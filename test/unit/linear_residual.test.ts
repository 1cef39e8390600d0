/**
 * linear(x, w, b, { residual }) on the CPU: bf16/f16 form residual + x Wᵀ + b in f32 and round once
 * (the output starts as the residual's copy, oneDNN's product adds to it), as cuBLASLt's C does on
 * CUDA: within one rounding (2^-7 relative for bf16, 2^-10 for f16) + 1e-6 of the largest of f64
 * from the same rounded inputs, where add(residual, linear()) is allowed two. f32 and f64 are that
 * composition bit for bit. Gradients: bit for bit the composition's (the residual gets g).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { add, type DType, linear, noGrad, randn, type Tensor, tidy } from '../../src/index.ts';
import { linearReference } from '../helpers/linear_ref.ts';

const ULP: Record<string, number> = { bf16: 2 ** -7, f16: 2 ** -10 };

/** Output and the gradients of x, w, b and the residual from `g`, fused or as add(residual, linear()). */
function run(dtype: DType, ins: Tensor[], fused: boolean): { y: number[]; grads: number[][] } {
  return tidy(() => {
    const [x, w, b, r, g] = ins.map((t) => t.to(dtype));
    for (const t of [x, w, b, r]) t.requiresGrad_(true);
    const y = fused ? linear(x, w, b, { residual: r }) : add(r, linear(x, w, b));
    y.backward(g);
    return { y: y.toList(), grads: [x, w, b, r].map((t) => (t.grad as Tensor).toList()) };
  });
}

for (const dtype of ['bf16', 'f16', 'f32', 'f64'] as DType[]) {
  test(`${dtype} on the CPU: ${ULP[dtype] ? 'one rounding of the f32 sum' : 'the separate add, bit for bit'}; gradients = the composition's`, () => {
    const ins = noGrad(() => [randn([19, 24]), randn([40, 24]), randn([40]), randn([19, 40]), randn([19, 40])]);
    const fused = run(dtype, ins, true);
    const plain = run(dtype, ins, false);
    ['x', 'weight', 'bias', 'residual'].forEach((name, i) => assert.equal(fused.grads[i], plain.grads[i], `${dtype} d${name}`));
    if (!ULP[dtype]) {
      assert.equal(fused.y, plain.y);
      return;
    }
    const want = tidy(() => {
      const [x, w, b, r] = ins.map((t) => t.to(dtype));
      const rs = r.toList();
      return linearReference(x, w, b).map((v, i) => v + rs[i]);
    });
    let scale = 0;
    for (const v of want) scale = Math.max(scale, Math.abs(v));
    const worst = (got: number[]) => Math.max(...got.map((v, i) => Math.abs(v - want[i]) / (ULP[dtype] * Math.abs(want[i]) + 1e-6 * scale)));
    assert.ok(worst(fused.y) <= 1, `${dtype}: ${worst(fused.y).toFixed(3)} x one rounding`);
    // The separate add rounds twice: somewhere beyond one rounding (so the bound above tells the two apart).
    assert.ok(worst(plain.y) > 1, `${dtype}: the composition stayed within one rounding (${worst(plain.y).toFixed(3)})`);
  });
}

test('a residual of another shape or dtype, or with an activation, is refused naming both', () => {
  tidy(() => {
    const [x, w, b] = [randn([4, 8]), randn([6, 8]), randn([6])];
    assert.throws(() => linear(x, w, b, { residual: randn([4, 8]) }), /linear: residual f32 \[4, 8\] must be the output's f32 \[4, 6\]/);
    assert.throws(() => linear(x, w, b, { residual: randn([4, 6]).to('bf16') }), /linear: residual bf16 \[4, 6\] must be the output's f32 \[4, 6\]/);
    assert.throws(() => linear(x, w, b, { residual: randn([4, 6]), activation: 'gelu' }), /linear: a residual with an activation/);
  });
});

test.run();
