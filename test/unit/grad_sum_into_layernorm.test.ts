/**
 * Layer norm's backward adds x's gradient into the one the engine holds for x (grad_into.ts's
 * offer for a produced tensor used twice: the pre-LN residual, where x feeds ln_1 and the
 * residual add), its kernels' dx add mode (layerNormDxInto) instead of the engine's add. With
 * destinations on vs off (setGradInto(false)): f64 and f32 bit for bit (the term rounded, then the
 * sum in the dtype, no product fused into it), bf16 within 2^-7 relative + 2^-7 of the largest
 * (the sum rounded once instead of twice). Held gradients another handle reads (the caller's, at
 * the root) are not written: layer norm returns held + its own as a new tensor. Rows 16 and 40 wide (layer norm's warp-row and
 * one-pass kernels), 1100 wide on CUDA (the wide-row kernels). On cuda:0 one element-wise launch
 * fewer, and a GPT step none left per layer. Per device (CPU, and cuda:0 under MT_TEST_DEVICES).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptStepCensus, perLayer } from '../../bench/gpu_census_gpt.ts';
import { setGradInto, sumsWrittenInto } from '../../src/autograd/grad_into.ts';
import {
  type CensusEntry, cudaCensus, type Device, type DType, destroyDistributed, initDistributed, layerNorm, linear, manualSeed, mul, native,
  randn, tidy,
} from '../../src/index.ts';
import { kernelsSay } from '../../src/tensor/backend.ts';
import { closeScaled } from '../helpers/close.ts';
import { deviceTest } from '../helpers/devices.ts';

const ULP: Record<string, number> = { f64: 0, f32: 0, bf16: 2 ** -7 };
const SLACK: Record<string, number> = { f64: 0, f32: 0, bf16: 2 ** -7 };

const binaries = (es: CensusEntry[]) => es.filter((e) => e.kind === 'kernel' && /^binary/.test(e.name)).reduce((n, e) => n + e.count, 0);

interface Run {
  grads: number[][];
  sums: number;
  binary: number;
}

/**
 * h = 2x; y = 1.5 (h + layerNorm(h) W): the residual delivers h's first gradient, layer norm the
 * second, added in place. `atRoot`: y = h + layerNorm(h) W, so h's first gradient is the caller's
 * (shared: layer norm returns the sum as a new tensor).
 */
function run(on: boolean, dev: Device, dtype: DType, cols: number, atRoot = false): Run {
  const prev = setGradInto(on);
  try {
    return tidy(() => {
      manualSeed(5);
      const leaf = (shape: number[]) => randn(shape, { device: dev }).to(dtype).requiresGrad_(true);
      const [x, w, lw, lb] = [leaf([24, cols]), leaf([cols, cols]), leaf([cols]), leaf([cols])];
      const h = mul(x, 2);
      const r = linear(layerNorm(h, [cols], lw, lb), w, null, { residual: h });
      const y = atRoot ? r : mul(r, 1.5);
      const g = randn([...y.shape], { device: dev }).to(dtype);
      const before = sumsWrittenInto();
      let binary = 0;
      if (dev !== 'cpu') binary = binaries(cudaCensus(() => y.backward(g)).entries);
      else y.backward(g);
      return { grads: [x, w, lw, lb].map((t) => t.grad?.toList() ?? []), sums: sumsWrittenInto() - before, binary };
    });
  } finally {
    setGradInto(prev);
  }
}

function close(label: string, got: number[], want: number[], dtype: DType): void {
  closeScaled(label, got, want, ULP[dtype], SLACK[dtype]);
}

for (const dtype of ['f64', 'f32', 'bf16'] as DType[]) {
  deviceTest(`grad_sum_into_layernorm: ${dtype}, layer norm adds x's second gradient into the held one`, (dev) => {
    if (!kernelsSay(dev, 'layerNormDxInto')) {
      console.log(`SKIP grad_sum_into_layernorm on ${dev}: the addon has no layer-norm dx add mode`);
      return;
    }
    for (const atRoot of [false, true])
      for (const cols of dev === 'cpu' ? [16, 40] : [16, 40, 1100]) {
        const at = `${cols} cols${atRoot ? ', the held gradient the caller\'s' : ''}`;
        const on = run(true, dev, dtype, cols, atRoot);
        const off = run(false, dev, dtype, cols, atRoot);
        assert.ok(on.sums >= 1, `${at}: layer norm wrote x's sum (${on.sums} sums written)`);
        assert.is(off.sums, 0, 'none with destinations off');
        if (dev !== 'cpu') assert.is(on.binary, off.binary - 1, `${at}: element-wise launches ${on.binary} vs ${off.binary}`);
        ['dx', 'dw', 'dlw', 'dlb'].forEach((name, i) => close(`${dtype} ${at} ${name}`, on.grads[i], off.grads[i], dtype));
      }
  });
}

deviceTest('grad_sum_into_layernorm: a GPT step has no element-wise binary launch left per layer', async (dev) => {
  if (dev === 'cpu' || !kernelsSay(dev, 'layerNormDxInto') || typeof (native.cuda as { linearGeluGrad?: unknown }).linearGeluGrad !== 'function') return;
  await initDistributed({ timeoutMs: 30_000 });
  try {
    const opts = { seq: 16, nEmbd: 64, nHead: 1 };
    const { layer } = perLayer(await gptStepCensus({ layers: 1, ...opts }), await gptStepCensus({ layers: 2, ...opts }));
    // Before: 2 residual gradient sums (and, before DGELU, GELU's backward).
    assert.is(binaries(layer), 0, `per layer:\n${layer.map((e) => `${e.kind} ${e.name} x${e.count}`).join('\n')}`);
  } finally {
    await destroyDistributed();
  }
});

test.run();
