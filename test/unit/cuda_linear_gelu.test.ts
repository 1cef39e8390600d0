/**
 * linear(x, w, b, { activation: 'gelu' }) on CUDA: bf16/f16 product, bias and GELU (tanh form) in
 * one cuBLASLt call (GELU_AUX_BIAS with a graph, GELU_BIAS without), nothing else queued; the
 * pre-activation it writes feeds one GELU-backward kernel. Bounds, against f64 from the same
 * rounded inputs: the pre-activation within one rounding to the dtype (2^-7 relative for bf16,
 * 2^-10 for f16) + 1e-6 of the largest (f32 accumulation), the output within one rounding + 1e-5
 * of the largest (GELU in f32 on the f32 sum). The gradients equal the unfused path's within one
 * rounding of the dtype per element + 2^-8 of the largest (the same kernels on a pre-activation
 * that may differ by one rounding), and the CPU's (f32 references) likewise. Fallbacks: N not a
 * multiple of 8 and an unaligned bias take the unfused path (one more rounding: 2 roundings relative +
 * one of the largest). f32 is never fused by linear(); the
 * binding's f32 epilogue is measured (printed) against f64 for the record. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  censusTotals, cudaCensus, cudaIsAvailable, type DType, formatCensus, gelu, linear, native, noGrad, randn, type Tensor, tidy,
} from '../../src/index.ts';
import { dtypeCode } from '../../src/tensor/dtype.ts';
import { near, worst } from '../helpers/close.ts';
import { linearReference } from '../helpers/linear_ref.ts';

const DEV = 'cuda:0';
const ULP: Record<string, number> = { bf16: 2 ** -7, f16: 2 ** -10, f32: 2 ** -22 };

const geluOf = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

/** The binding called directly: out = gelu(x Wᵀ + b), aux = x Wᵀ + b (x [M, K], w [N, K], contiguous). */
function direct(dtype: DType, x: Tensor, w: Tensor, b: Tensor): { done: boolean; out: Tensor; aux: Tensor } {
  const [M, K] = x.shape;
  const N = w.shape[0];
  const out = randn([M, N], { device: DEV }).to(dtype);
  const aux = randn([M, N], { device: DEV }).to(dtype);
  const done = (native.cuda as unknown as { linearGelu: (...a: unknown[]) => boolean }).linearGelu(
    dtypeCode(dtype), x.id, x.offset, [0, K, 1], w.id, w.offset, [0, 1, K], b.id, b.offset, out.id, 0, aux.id, 0, M, N, K,
  );
  return { done, out, aux };
}

const libraryCalls = (entries: ReturnType<typeof cudaCensus>['entries'], name: string) =>
  entries.filter((e) => e.kind === 'library' && e.name === name).reduce((n, e) => n + e.count, 0);

if (!cudaIsAvailable()) {
  test('linear + GELU on CUDA', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_linear_gelu: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  const fusing = typeof (native.cuda as { linearGelu?: unknown }).linearGelu === 'function';
  for (const dtype of ['bf16', 'f16'] as DType[]) {
    test(`${dtype}: forward is one cuBLASLt call (GELU_AUX_BIAS), values vs f64; backward equals the unfused path`, () => {
      tidy(() => {
        const x = randn([37, 24], { device: DEV }).to(dtype).requiresGrad_(true);
        const w = randn([40, 24], { device: DEV }).to(dtype).requiresGrad_(true);
        const b = randn([40], { device: DEV }).to(dtype).requiresGrad_(true);
        const g = randn([37, 40], { device: DEV }).to(dtype);
        const { result: y, entries } = cudaCensus(() => linear(x, w, b, { activation: 'gelu' }));
        const pre = linearReference(x, w, b);
        near(`${dtype} output`, y.toList(), pre.map(geluOf), ULP[dtype], 1e-5);
        if (fusing) {
          assert.is(libraryCalls(entries, `cublasLtMatmul ${dtype} gelu_aux_bias`), 1, formatCensus(entries));
          assert.is(censusTotals(entries).deviceOps, 1, formatCensus(entries));
          // The pre-activation the epilogue writes for backward (GELU's input), from the binding itself.
          const d = direct(dtype, x, w, b);
          assert.ok(d.done, 'the binding fused what linear() fused');
          near(`${dtype} pre-activation`, d.aux.toList(), pre, ULP[dtype], 1e-6);
          // Another plan may serve it (other pointers' alignments): the same values within one rounding.
          near(`${dtype} binding vs linear()`, d.out.toList(), y.toList(), ULP[dtype], 1e-6);
        }
        const grads = (t: Tensor[]) => t.map((p) => p.grad?.toList() ?? []);
        const back = cudaCensus(() => y.backward(g)).entries;
        const fused = grads([x, w, b]);
        for (const p of [x, w, b]) p.grad = null;
        const unfused = gelu(linear(x, w, b));
        const plainBack = cudaCensus(() => unfused.backward(g)).entries;
        const plain = grads([x, w, b]);
        // The same backward: one GELU-backward kernel, then linear's products.
        const geluBack = (es: typeof back) => es.filter((e) => e.kind === 'kernel' && /elementwise\.cu/.test(e.site)).reduce((n, e) => n + e.count, 0);
        assert.is(geluBack(back), 1, formatCensus(back));
        assert.is(censusTotals(back).deviceOps, censusTotals(plainBack).deviceOps, `${formatCensus(back)}\nunfused:\n${formatCensus(plainBack)}`);
        ['x', 'w', 'b'].forEach((n, i) => near(`${dtype} ${n} grad vs unfused`, fused[i], plain[i], ULP[dtype], 2 ** -8));
        // And vs the CPU running the same bf16 values (f32 math there too).
        const cpu = [x, w, b].map((p) => p.to('cpu').detach().requiresGrad_(true));
        gelu(linear(cpu[0], cpu[1], cpu[2])).backward(g.to('cpu'));
        ['x', 'w', 'b'].forEach((n, i) => near(`${dtype} ${n} grad vs CPU`, fused[i], cpu[i].grad?.toList() ?? [], ULP[dtype], 2 ** -7));
      });
    });

    test(`${dtype}: without a graph one call (GELU_BIAS), no pre-activation; fallbacks are unfused and right`, () => {
      noGrad(() => tidy(() => {
        const x = randn([9, 16], { device: DEV }).to(dtype);
        const w = randn([32, 16], { device: DEV }).to(dtype);
        const b = randn([32], { device: DEV }).to(dtype);
        const { result: y, entries } = cudaCensus(() => linear(x, w, b, { activation: 'gelu' }));
        near(`${dtype} no grad`, y.toList(), linearReference(x, w, b).map(geluOf), ULP[dtype], 1e-5);
        if (fusing) {
          assert.is(libraryCalls(entries, `cublasLtMatmul ${dtype} gelu_bias`), 1, formatCensus(entries));
          assert.is(censusTotals(entries).deviceOps, 1, formatCensus(entries));
        }
        // No bias: GELU alone in the epilogue.
        const nb = cudaCensus(() => linear(x, w, null, { activation: 'gelu' }));
        near(`${dtype} no bias`, nb.result.toList(), linearReference(x, w, null).map(geluOf), ULP[dtype], 1e-5);
        if (fusing) assert.is(libraryCalls(nb.entries, `cublasLtMatmul ${dtype} gelu`), 1, formatCensus(nb.entries));
        // N 20 (not a multiple of 8) and a bias off the 16-byte grid: the product, then GELU's own pass
        // (the pre-activation rounded first: one more rounding, up to GELU's slope times half an ulp).
        const w20 = randn([20, 16], { device: DEV }).to(dtype);
        const b20 = randn([20], { device: DEV }).to(dtype);
        const r20 = cudaCensus(() => linear(x, w20, b20, { activation: 'gelu' }));
        near(`${dtype} N 20`, r20.result.toList(), linearReference(x, w20, b20).map(geluOf), 2 * ULP[dtype], ULP[dtype]);
        assert.ok(r20.entries.every((e) => !/gelu/.test(e.name)), formatCensus(r20.entries));
        const big = randn([33], { device: DEV }).to(dtype);
        const b1 = big.narrow(0, 1, 32);
        const r1 = cudaCensus(() => linear(x, w, b1, { activation: 'gelu' }));
        near(`${dtype} unaligned bias`, r1.result.toList(), linearReference(x, w, b1).map(geluOf), 2 * ULP[dtype], ULP[dtype]);
        if (fusing) assert.ok(r1.entries.every((e) => !/cublasLtMatmul .* gelu/.test(e.name)), formatCensus(r1.entries));
      }));
    });
  }

  test('f32: linear() keeps GELU unfused (CPU values within f32 rounding); the f32 epilogue itself, measured', () => {
    noGrad(() => tidy(() => {
      const x = randn([17, 32], { device: DEV });
      const w = randn([24, 32], { device: DEV });
      const b = randn([24], { device: DEV });
      const { result: y, entries } = cudaCensus(() => linear(x, w, b, { activation: 'gelu' }));
      assert.ok(entries.every((e) => !/gelu/.test(e.name)), formatCensus(entries));
      const want = linearReference(x, w, b).map(geluOf);
      near('f32 unfused', y.toList(), want, 4 * ULP.f32, 1e-6);
      if (!fusing) return;
      const { done, out, aux } = direct('f32', x, w, b);
      if (!done) {
        console.log('  f32 GELU_AUX_BIAS: cuBLASLt has no kernel here (linear() does not ask for one)');
        return;
      }
      const err = worst(out.toList(), want, 0, 1);
      console.log(`  f32 GELU_AUX_BIAS epilogue vs f64: largest error ${err.toExponential(2)} of the largest output (unfused: ${worst(y.toList(), want, 0, 1).toExponential(2)})`);
      near('f32 epilogue pre-activation', aux.toList(), linearReference(x, w, b), 4 * ULP.f32, 1e-6);
      assert.ok(err < 1e-3, `the f32 GELU epilogue is off by ${err} of the largest value`);
    }));
  });
}

test.run();
