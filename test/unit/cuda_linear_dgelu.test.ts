/**
 * GELU's backward inside the next product (grad_through.ts): for linear(linear(x, w1, b1, { activation:
 * 'gelu' }), w2, b2) in bf16/f16 on CUDA, the second linear's input-gradient product applies GELU's
 * derivative at the saved pre-activation in its epilogue (cuBLASLt's DGELU), and no GELU-backward
 * kernel runs. Bounds: the binding against f64 from the same rounded inputs (g, W, the pre-activation)
 * within one rounding to the dtype + 2^-14 of its product (the epilogue's derivative is not exact)
 * + 1e-6 of the largest;
 * the gradients of x, w1, b1 against the unfused path's (offers off: the product rounded, then the
 * GELU-backward kernel, one more rounding) within one rounding per element + 2^-8 of the largest,
 * against the CPU's within two; w2's and b2's bit for bit (the same products). Where it cannot apply
 * (GELU's output used twice, N not a multiple of 8, f32) the offer is not taken and the values are
 * the unfused path's. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptStepCensus, perLayer } from '../../bench/gpu_census_gpt.ts';
import {
  activationGradsApplied, add, type CensusEntry, cudaCensus, cudaIsAvailable, type DType, destroyDistributed, formatCensus, initDistributed,
  linear, manualSeed, native, randn, setActivationGradOffers, sum, type Tensor, tidy,
} from '../../src/index.ts';
import { dtypeCode } from '../../src/tensor/dtype.ts';
import { near } from '../helpers/close.ts';

const DEV = 'cuda:0';
const ULP: Record<string, number> = { bf16: 2 ** -7, f16: 2 ** -10 };
/**
 * GELU's derivative as cuBLASLt's DGELU epilogue evaluates it, absolute error allowed beyond one
 * rounding of the result: the H200 (CUDA 13) is not the f32 derivative rounded once (f16 results came
 * out 3x past one rounding + 1e-6 of the largest); the error they imply is 1.3e-5 (f16), 3.4e-6
 * (bf16) of the product. A wrong derivative (GELU itself, a term missing) is off by 0.1 or more.
 */
const DERIV_ERR = 2 ** -14;
const EMULATED = 'cudaEmuChecks' in native;

const C = Math.sqrt(2 / Math.PI);
/** GELU's (tanh form) derivative. */
function geluGrad(v: number): number {
  const t = Math.tanh(C * (v + 0.044715 * v * v * v));
  return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * C * (1 + 3 * 0.044715 * v * v);
}

const count = (entries: CensusEntry[], f: (e: CensusEntry) => boolean) => entries.filter(f).reduce((n, e) => n + e.count, 0);
const isBinary = (e: CensusEntry) => e.kind === 'kernel' && /^binary/.test(e.name);
const isDgelu = (e: CensusEntry) => e.kind === 'library' && / dgelu$/.test(e.name);

interface Mlp {
  x: Tensor;
  w1: Tensor;
  b1: Tensor;
  w2: Tensor;
  b2: Tensor;
  g: Tensor;
}

function mlp(dtype: DType, M: number, C0: number, H: number): Mlp {
  manualSeed(M * 1000 + C0 * 10 + H); // the same data whichever files ran before in this process
  const p = (shape: number[], s: number) => randn(shape, { device: DEV }).mul(s).to(dtype).requiresGrad_(true);
  return { x: p([M, C0], 1), w1: p([H, C0], 0.3), b1: p([H], 0.3), w2: p([C0, H], 0.3), b2: p([C0], 0.3), g: randn([M, C0], { device: DEV }).to(dtype) };
}

/** Gradients of x, w1, b1, w2, b2 after backward of linear(gelu-linear(x)) (h used once more when `twice`), and its census. */
function run(m: Mlp, twice = false): { grads: number[][]; entries: CensusEntry[]; applied: number } {
  const ps = [m.x, m.w1, m.b1, m.w2, m.b2];
  for (const p of ps) p.grad = null;
  return tidy(() => {
    const h = linear(m.x, m.w1, m.b1, { activation: 'gelu' });
    let y = linear(h, m.w2, m.b2);
    if (twice) y = add(y, sum(h).mul(0.01));
    const before = activationGradsApplied();
    const { entries } = cudaCensus(() => y.backward(m.g));
    return { grads: ps.map((p) => p.grad?.toList() ?? []), entries, applied: activationGradsApplied() - before };
  });
}

function offersOff<T>(f: () => T): T {
  const prev = setActivationGradOffers(false);
  try {
    return f();
  } finally {
    setActivationGradOffers(prev);
  }
}

if (!cudaIsAvailable()) {
  test('GELU backward in the next product', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_linear_dgelu: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  const fusing = typeof (native.cuda as { linearGeluGrad?: unknown }).linearGeluGrad === 'function';

  for (const dtype of ['bf16', 'f16'] as DType[]) {
    test(`${dtype}: the binding is (A @ B) * gelu'(aux), vs f64`, () => {
      if (!fusing) return;
      tidy(() => {
        const [M, K, N] = [21, 40, 48];
        manualSeed(M + K + N);
        const a = randn([M, K], { device: DEV }).to(dtype);
        const b = randn([K, N], { device: DEV }).mul(0.3).to(dtype);
        const aux = randn([M, N], { device: DEV }).mul(2).to(dtype);
        const out = randn([M, N], { device: DEV }).to(dtype);
        const done = (native.cuda as unknown as { linearGeluGrad: (...v: unknown[]) => boolean }).linearGeluGrad(
          dtypeCode(dtype), a.id, a.offset, [0, K, 1], b.id, b.offset, [0, N, 1], aux.id, aux.offset, out.id, 0, M, N, K,
        );
        assert.ok(done, 'cuBLASLt took DGELU');
        const [as, bs, xs] = [a.toList(), b.toList(), aux.toList()];
        const got = out.toList();
        const want = new Float64Array(M * N);
        const prod = new Float64Array(M * N);
        for (let i = 0; i < M; i++)
          for (let j = 0; j < N; j++) {
            let acc = 0;
            for (let k = 0; k < K; k++) acc += as[i * K + k] * bs[k * N + j];
            prod[i * N + j] = acc;
            want[i * N + j] = acc * geluGrad(xs[i * N + j]);
          }
        // Each element within one rounding of its value, plus DERIV_ERR times its product (the
        // derivative's own error), plus 1e-6 of the largest.
        let implied = 0; // the largest derivative error the result implies beyond one rounding
        for (let e = 0; e < want.length; e++) {
          if (prod[e] !== 0) implied = Math.max(implied, Math.max(0, Math.abs(got[e] - want[e]) - ULP[dtype] * Math.abs(want[e])) / Math.abs(prod[e]));
        }
        if (!EMULATED) console.log(`  ${dtype} DGELU: the derivative's implied error ${implied.toExponential(2)} (allowed ${DERIV_ERR.toExponential(2)})`);
        const allowance = prod.map((p) => DERIV_ERR * Math.abs(p));
        near(`${dtype} DGELU`, got, want, ULP[dtype], 1e-6, allowance, ` + ${DERIV_ERR} of each product; derivative's implied error ${implied.toExponential(2)}`);
      });
    });

    test(`${dtype}: linear -> GELU -> linear backward: one DGELU product, no GELU-backward kernel; gradients vs unfused and CPU`, () => {
      const m = mlp(dtype, 37, 24, 64);
      const fused = run(m);
      const plain = offersOff(() => run(m));
      if (fusing) {
        assert.is(fused.applied, 1, formatCensus(fused.entries));
        assert.is(count(fused.entries, isDgelu), 1, formatCensus(fused.entries));
        assert.is(count(fused.entries, isBinary), 0, formatCensus(fused.entries));
        assert.is(plain.applied, 0);
        assert.is(count(plain.entries, isBinary), 1, formatCensus(plain.entries));
        assert.is(count(plain.entries, isDgelu), 0, formatCensus(plain.entries));
      }
      // w2, b2: the same products on the same inputs.
      assert.equal(fused.grads[3], plain.grads[3], 'w2 grad bit for bit');
      assert.equal(fused.grads[4], plain.grads[4], 'b2 grad bit for bit');
      ['x', 'w1', 'b1'].forEach((n, i) => near(`${dtype} ${n} grad vs unfused`, fused.grads[i], plain.grads[i], ULP[dtype], 2 ** -8));
      // The CPU, same rounded values (its own GELU-backward pass).
      tidy(() => {
        const cpu = [m.x, m.w1, m.b1, m.w2, m.b2].map((p) => p.to('cpu').detach().requiresGrad_(true));
        linear(linear(cpu[0], cpu[1], cpu[2], { activation: 'gelu' }), cpu[3], cpu[4]).backward(m.g.to('cpu'));
        ['x', 'w1', 'b1', 'w2', 'b2'].forEach((n, i) => near(`${dtype} ${n} grad vs CPU`, fused.grads[i], cpu[i].grad?.toList() ?? [], 2 * ULP[dtype], 2 ** -7));
      });
      for (const t of Object.values(m)) t.dispose();
    });
  }

  test('not taken where it cannot apply: GELU output used twice, N not a multiple of 8, f32', () => {
    // Used twice: its gradient is a sum, so the derivative cannot go into one product.
    const m = mlp('bf16', 16, 24, 64);
    const twice = run(m, true);
    const twicePlain = offersOff(() => run(m, true));
    assert.is(twice.applied, 0, formatCensus(twice.entries));
    assert.is(count(twice.entries, isDgelu), 0, formatCensus(twice.entries));
    twice.grads.forEach((g, i) => assert.equal(g, twicePlain.grads[i], `gradient ${i}: the unfused path's`));
    // Hidden width 20: cuBLASLt's aux needs a leading dimension that is a multiple of 8 (the forward is unfused too).
    const m20 = mlp('bf16', 16, 24, 20);
    const r20 = run(m20);
    assert.is(r20.applied, 0, formatCensus(r20.entries));
    assert.is(count(r20.entries, isBinary), 1, formatCensus(r20.entries));
    r20.grads.forEach((g, i) => assert.equal(g, offersOff(() => run(m20)).grads[i], `N 20 gradient ${i}`));
    const m32 = mlp('f32' as DType, 16, 24, 64);
    const r32 = run(m32);
    assert.is(r32.applied, 0, formatCensus(r32.entries));
    assert.is(count(r32.entries, isDgelu), 0, formatCensus(r32.entries));
    for (const t of [...Object.values(m), ...Object.values(m20), ...Object.values(m32)]) t.dispose();
  });

  test('a GPT step: GELU backward in c_proj input-gradient product, one per layer (counted, so a fallback fails)', async () => {
    await initDistributed({ timeoutMs: 30_000 });
    try {
      const opts = { seq: 16, nEmbd: 64, nHead: 1 };
      const { layer } = perLayer(await gptStepCensus({ layers: 1, ...opts }), await gptStepCensus({ layers: 2, ...opts }));
      const binary = count(layer, isBinary);
      const dgelu = count(layer, isDgelu);
      console.log(`  per layer: ${binary} element-wise binary launches, ${dgelu} DGELU products`);
      if (fusing) assert.is(dgelu, 1, formatCensus(layer));
      // Before: 3 per layer (2 residual gradient sums, GELU's backward).
      assert.ok(binary <= (fusing ? 2 : 3), `${binary} binary launches per layer:\n${formatCensus(layer)}`);
    } finally {
      await destroyDistributed();
    }
  });
}

test.run();
