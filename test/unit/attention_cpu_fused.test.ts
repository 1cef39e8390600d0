/**
 * scaledDotProductAttention on the fused CPU kernels (native/cpu/attention.cc, taken with
 * MESHTRAIN_ATTENTION_CPU=fused) against the composed ops (matmul, scaled causal softmax, matmul),
 * values and gradients of sum(out * w): f64 within 1e-12, f32 within 1e-5 of the largest value (at
 * least 1), bf16 within 1e-2 of f32 composed ops on the same rounded inputs. The shapes qkvAttention
 * never makes: Tq != Tk both ways, ranks 2, 3 and 5, head dims 1 and 48, T over several 32-row
 * tiles, transposed and narrowed views; finite differences (f64). An addon built before the CPU
 * kernels prints one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type DType, manualSeed, mul, native, noGrad, randn, scaledDotProductAttention, sum, type Tensor, tidy, transpose } from '../../src/index.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';
import { withEnv } from '../helpers/env.ts';
import { gradcheck } from '../helpers/gradcheck.ts';

const TOL: Record<string, number> = { f64: 1e-12, f32: 1e-5, bf16: 1e-2 };
manualSeed(11);

function fusedCpu<T>(fn: () => T): T {
  return withEnv({ MESHTRAIN_ATTENTION_CPU: 'fused' }, fn);
}

type View = (x: Tensor) => Tensor;
const same: View = (x) => x;

/** Fused CPU kernels vs the composed ops: output and the three input gradients. */
function check(name: string, shapes: number[][], causal: boolean, dtype: DType, view: View = same, scale?: number): void {
  tidy(() => {
    const base = shapes.map((s) => randn(s).to(dtype));
    const outShape = noGrad(() => {
      const [q, , v] = base.map(view);
      return [...q.shape.slice(0, -1), v.shape[v.ndim - 1]];
    });
    const w = randn(outShape).to(dtype);
    const run = (d: DType) => {
      const leaves = base.map((x) => noGrad(() => x.to(d)).requiresGrad_(true));
      const [q, k, v] = leaves.map(view);
      const y = scaledDotProductAttention(q, k, v, { causal, scale });
      sum(mul(y, noGrad(() => w.to(d)))).backward();
      return { y, grads: leaves.map((l) => l.grad as Tensor) };
    };
    const got = fusedCpu(() => run(dtype));
    const want = run(dtype === 'bf16' ? 'f32' : dtype);
    assert.is(got.y.gradFn?.name, 'scaledDotProductAttention', `${name}: the fused kernels ran`);
    assert.is.not(want.y.gradFn?.name, 'scaledDotProductAttention', `${name}: the reference is the composed ops`);
    const ey = maxRelErr(got.y.toList() as number[], want.y.toList() as number[], 1);
    assert.ok(ey <= TOL[dtype], `${name} ${dtype}: output differs by ${ey} (tolerance ${TOL[dtype]})`);
    got.grads.forEach((g, i) => {
      const e = maxRelErr(g.toList() as number[], want.grads[i].toList() as number[], 1);
      assert.ok(e <= TOL[dtype], `${name} ${dtype}: gradient of input ${i} differs by ${e} (tolerance ${TOL[dtype]})`);
    });
  });
}

if (typeof native.attentionBackward !== 'function') {
  test('fused CPU attention', () => {
    console.log('SKIP test/unit/attention_cpu_fused: this addon has no CPU attention kernels (rebuild it)');
  });
} else {
  for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
    test(`fused CPU kernels = composed ops, ${dtype}: Tq != Tk, ranks, head dims, views`, () => {
      for (const causal of [true, false]) {
        check(`Tq 7 < Tk 40, causal ${causal}`, [[2, 2, 7, 32], [2, 2, 40, 32], [2, 2, 40, 32]], causal, dtype);
        check(`Tq 40 > Tk 7, causal ${causal}`, [[2, 2, 40, 32], [2, 2, 7, 32], [2, 2, 7, 32]], causal, dtype);
        check(`T 97, causal ${causal}`, [[1, 2, 97, 16], [1, 2, 97, 16], [1, 2, 97, 16]], causal, dtype);
      }
      check('rank 2 [T, D]', [[21, 32], [21, 32], [21, 32]], false, dtype);
      check('rank 3 [heads, T, D]', [[4, 19, 64], [4, 19, 64], [4, 19, 64]], true, dtype);
      check('rank 5', [[2, 2, 3, 9, 8], [2, 2, 3, 9, 8], [2, 2, 3, 9, 8]], true, dtype);
      check('head dim 48, scale 0.3', [[1, 3, 45, 48], [1, 3, 45, 48], [1, 3, 45, 48]], true, dtype, same, 0.3);
      check('head dim 1', [[2, 1, 6, 1], [2, 1, 6, 1], [2, 1, 6, 1]], true, dtype);
      // [B, T, H, D] storage seen as [B, H, T, D], and a narrowed head dim (no unit-stride rows to merge).
      check('transposed heads', [[2, 33, 3, 32], [2, 33, 3, 32], [2, 33, 3, 32]], true, dtype, (x) => transpose(x, 1, 2));
      check('narrowed head dim', [[2, 2, 21, 35], [2, 2, 21, 35], [2, 2, 21, 35]], false, dtype, (x) => x.narrow(-1, 2, 32));
    });
  }

  test('fused CPU attention gradients match finite differences (f64)', () => {
    fusedCpu(() =>
      tidy(() => {
        const leaf = (s: number[]) => randn(s, { dtype: 'f64' }).requiresGrad_(true);
        const sdpa = (causal: boolean) => (q: Tensor, k: Tensor, v: Tensor) => scaledDotProductAttention(q, k, v, { causal });
        gradcheck('fused CPU causal', sdpa(true), [leaf([1, 2, 3, 4]), leaf([1, 2, 3, 4]), leaf([1, 2, 3, 4])]);
        gradcheck('fused CPU, Tq 2 < Tk 3', sdpa(false), [leaf([1, 1, 2, 5]), leaf([1, 1, 3, 5]), leaf([1, 1, 3, 5])]);
        gradcheck('fused CPU causal, Tq 3 > Tk 2', sdpa(true), [leaf([1, 1, 3, 5]), leaf([1, 1, 2, 5]), leaf([1, 1, 2, 5])]);
      }),
    );
  });
}

test.run();
