/**
 * linear(x, w, b, { residual }) on CUDA: residual + x Wᵀ + b in one cuBLASLt call (the residual is C,
 * beta = 1, with the bias epilogue), nothing else queued; the pre-LN block's two residual adds go
 * into its projections (c_proj of attention and MLP), two fewer element-wise launches per layer.
 * Bounds: against f64 from the same rounded inputs, one rounding to the dtype (2^-7 relative for
 * bf16, 2^-10 for f16, 2^-22 for f32) + 1e-6 of the largest (f32 accumulation), where the unfused
 * add(residual, linear()) rounds twice; the CPU's bf16/f16 round once as well (oneDNN's product
 * adding to the residual's copy), its f32 adds separately; CUDA vs CPU within two roundings + 2^-8
 * (bf16/f16) or 1e-6 (f32) of the largest. Gradients: bit for bit the CUDA composition's (linear's
 * backward reads only g, x and W; the residual gets g), the CPU's within the same bounds. Layouts
 * cuBLASLt's C cannot take go to the separate add. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptStepCensus, perLayer } from '../../bench/gpu_census_gpt.ts';
import {
  add, type CensusEntry, censusTotals, cudaCensus, cudaIsAvailable, type DType, destroyDistributed, formatCensus, initDistributed, linear, native,
  nn, noGrad, randn, type Tensor, tidy,
} from '../../src/index.ts';
import { near } from '../helpers/close.ts';
import { linearReference } from '../helpers/linear_ref.ts';

const DEV = 'cuda:0';
const ULP: Record<string, number> = { bf16: 2 ** -7, f16: 2 ** -10, f32: 2 ** -22 };
const SLACK: Record<string, number> = { bf16: 2 ** -8, f16: 2 ** -8, f32: 1e-6 };

const count = (entries: CensusEntry[], f: (e: CensusEntry) => boolean) => entries.filter(f).reduce((n, e) => n + e.count, 0);
const isAdd = (e: CensusEntry) => e.kind === 'kernel' && /^binary/.test(e.name);

interface Run {
  y: number[];
  grads: number[][];
  entries: CensusEntry[];
}

/** residual + x Wᵀ + b forward (counted) and backward from `g`, fused (`fused`) or as add(residual, linear()). */
function run(device: 'cpu' | typeof DEV, dtype: DType, inputs: Tensor[], fused: boolean): Run {
  return tidy(() => {
    const [x, w, b, r, g] = inputs.map((t) => t.to(device).to(dtype));
    for (const t of [x, w, b, r]) t.requiresGrad_(true);
    const { result: y, entries } = cudaCensus(() => (fused ? linear(x, w, b, { residual: r }) : add(r, linear(x, w, b))));
    y.backward(g);
    return { y: y.toList(), grads: [x, w, b, r].map((t) => (t.grad as Tensor).toList()), entries };
  });
}

function inputs(M: number, K: number, N: number): Tensor[] {
  return noGrad(() => [randn([M, K]), randn([N, K]), randn([N]), randn([M, N]), randn([M, N])]);
}

if (!cudaIsAvailable()) {
  test('linear + residual on CUDA', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_linear_residual: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  const fusing = (native.cuda as { matmulAddend?: boolean }).matmulAddend === true;
  for (const dtype of ['bf16', 'f16', 'f32'] as DType[]) {
    test(`${dtype}: residual + x Wᵀ + b is one cuBLASLt call, within one rounding of f64; gradients = the composition's`, () => {
      const ins = inputs(37, 24, 40);
      const fused = run(DEV, dtype, ins, true);
      if (fusing) {
        assert.is(count(fused.entries, (e) => e.kind === 'library' && e.name === `cublasLtMatmul ${dtype} addend bias`), 1, formatCensus(fused.entries));
        assert.is(censusTotals(fused.entries).deviceOps, 1, formatCensus(fused.entries));
      }
      const want = tidy(() => {
        const [x, w, b, r] = ins.map((t) => t.to(dtype));
        const ref = linearReference(x, w, b);
        const rs = r.toList();
        return ref.map((v, i) => v + rs[i]);
      });
      near(`${dtype} output vs f64`, fused.y, want, ULP[dtype], 1e-6);
      // The composition on this device: the same backward kernels, so the same bits.
      const plain = run(DEV, dtype, ins, false);
      assert.is(count(plain.entries, isAdd), 1, formatCensus(plain.entries));
      ['x', 'weight', 'bias', 'residual'].forEach((name, i) => assert.equal(fused.grads[i], plain.grads[i], `${dtype} d${name}: fused vs composition`));
      // The CPU: bf16/f16 also round once (the product adds to the residual's copy), f32 adds separately.
      const cpu = run('cpu', dtype, ins, true);
      near(`${dtype} CPU output vs f64`, cpu.y, want, dtype === 'f32' ? 2 * ULP[dtype] : ULP[dtype], 1e-6);
      near(`${dtype} output vs the CPU`, fused.y, cpu.y, 2 * ULP[dtype], SLACK[dtype]);
      ['x', 'weight', 'bias', 'residual'].forEach((name, i) => near(`${dtype} d${name} vs the CPU`, fused.grads[i], cpu.grads[i], 2 * ULP[dtype], SLACK[dtype]));
    });
  }

  test('a residual cuBLASLt cannot take as C (a transposed view) gets the separate add; bad residuals are refused', () => {
    tidy(() => {
      const [x, w, b] = inputs(16, 8, 16).map((t) => t.to(DEV));
      const rT = randn([16, 16], { device: DEV }).transpose(0, 1);
      const { result: y, entries } = cudaCensus(() => linear(x, w, b, { residual: rT }));
      assert.is(count(entries, isAdd), 1, formatCensus(entries));
      assert.is(count(entries, (e) => e.kind === 'library' && / addend/.test(e.name)), 0, formatCensus(entries));
      assert.equal(y.toList(), add(rT, linear(x, w, b)).toList());
      assert.throws(() => linear(x, w, b, { residual: randn([16, 8], { device: DEV }) }), /linear: residual f32 \[16, 8\] must be the output's f32 \[16, 16\]/);
      assert.throws(() => linear(x, w, b, { residual: randn([16, 16], { device: DEV }).to('bf16') }), /linear: residual bf16 \[16, 16\] must be the output's f32/);
      assert.throws(() => linear(x, w, b, { residual: randn([16, 16], { device: DEV }), activation: 'gelu' }), /linear: a residual with an activation/);
    });
  });

  test('the pre-LN block adds both residuals in its projections; with dropout in training, separately', () => {
    tidy(() => {
      const block = new nn.TransformerBlock({ nEmbd: 32, nHead: 2, nLayer: 1, dtype: 'bf16' });
      nn.moduleToDevice(block, DEV);
      const x = randn([2, 8, 32], { device: DEV }).to('bf16');
      const fused = cudaCensus(() => block.forward(x));
      if (fusing) assert.is(count(fused.entries, (e) => e.kind === 'library' && / addend/.test(e.name)), 2, formatCensus(fused.entries));
      assert.is(count(fused.entries, isAdd), fusing ? 0 : 2, formatCensus(fused.entries));
      // The unfused block, spelled out: within two roundings of bf16 (one sum per add less) + 2^-8 of the largest.
      const want = tidy(() => {
        const a = add(x, block.attn.forward(block.ln_1.forward(x)));
        return add(a, block.mlp.forward(block.ln_2.forward(a))).toList();
      });
      near('block output', fused.result.toList(), want, 2 * ULP.bf16, SLACK.bf16);
      const dropped = new nn.TransformerBlock({ nEmbd: 32, nHead: 2, nLayer: 1, dtype: 'bf16', dropout: 0.1 });
      nn.moduleToDevice(dropped, DEV);
      const d = cudaCensus(() => dropped.forward(x)).entries;
      assert.is(count(d, (e) => e.kind === 'library' && / addend/.test(e.name)), 0, formatCensus(d));
      dropped.dispose();
      block.dispose();
    });
  });

  test('a GPT step: two residual adds fewer per layer, both in c_proj products (counted, so a fallback fails)', async () => {
    await initDistributed({ timeoutMs: 30_000 });
    try {
      const opts = { seq: 16, nEmbd: 64, nHead: 1 };
      const { layer } = perLayer(await gptStepCensus({ layers: 1, ...opts }), await gptStepCensus({ layers: 2, ...opts }));
      const adds = count(layer, isAdd);
      const addend = count(layer, (e) => e.kind === 'library' && / addend/.test(e.name));
      console.log(`  per layer: ${adds} element-wise binary launches, ${addend} products adding a residual`);
      if (fusing) assert.is(addend, 2, formatCensus(layer));
      // Before: 5 per layer (2 forward residual adds, 2 gradient sums, GELU's backward).
      assert.ok(adds <= (fusing ? 3 : 5), `${adds} binary launches per layer:\n${formatCensus(layer)}`);
    } finally {
      await destroyDistributed();
    }
  });
}

test.run();
