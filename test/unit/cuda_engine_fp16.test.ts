/**
 * fp16 (DeepSpeed's `fp16: {enabled: true}`) through initialize() in one process: GPT tiny built in
 * f16, a dynamic loss scale from 2^20 (overflowing steps 1, 2 and 5 of 6 are skipped, the scale
 * grows after two clean steps), AdamW with fp32 masters and clipping (fixtures/engine_device.ts).
 * - Always: the engine on the CPU, ZeRO stages 0 and 3, equals one process doing the same by hand
 *   bit for bit (losses, loss-scale trace, every weight).
 * - On cuda:0: the engine at ZeRO 0-3 equals the CPU engine: the same loss-scale trace (so the same
 *   skipped steps), losses within 2.5e-3 relative and weights within 2 lr + 2^-9 x max(1, each
 *   tensor's largest value): AdamW's first step moves a weight by lr times its gradient's sign, so a
 *   gradient at the rounding-noise level whose sign the two devices round apart leaves that weight
 *   2 lr apart (the H200 after stop 20's fused residual adds and DGELU epilogue: 5.83e-3 at
 *   h.1.mlp.c_fc.weight, ZeRO 0; losses 1.7e-6), plus 2 f16 ulps at 1 (the bound was 4e-3 before).
 *   The device's matmuls run cuBLASLt in f16 with f32 accumulation and round once to f16, as the CPU's f32 products do, but in another summation
 *   order, and its reductions sum in another order too; a value that lands on the other side of an
 *   f16 rounding boundary is off by one ulp (2^-11 relative), which Adam can carry into a weight.
 *   linear + GELU rounds once on both (cuBLASLt's epilogue; the CPU sums in f32 through GELU too).
 *   Measured on the emulated device: losses and weights equal (0; 5.97e-3 at h.1.mlp.c_proj.weight
 *   while the CPU rounded the pre-activation before GELU). The largest such noise lands on
 *   h.0.attn.c_attn.bias's key third, whose true gradient is exactly zero: rounding noise is all
 *   Adam sees there, and the optimizer unscales in f32, so it is not flushed to zero.
 *   Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, destroyDistributed, initDistributed, native } from '../../src/index.ts';
import { engineRun, LR, referenceRun, worstLoss, worstWeight } from '../dist/fixtures/engine_device.ts';
import { cpuTwins } from '../helpers/cpu_twins.ts';

// A world of one for initialize(), only while this file's tests run (uvu imports every file first).
test.before(async () => {
  await initDistributed({ timeoutMs: 30_000 });
});
test.after(async () => {
  await destroyDistributed();
});
const STEPS = 6;
const SKIPPING = [1048576, 524288, 262144, 262144, 524288, 262144];
const WEIGHT_TOL = 2 * LR + 2 ** -9;

// CPU only: under cuda_emu.test.ts (CPU twins off) npm test has run it in this same file already.
if (cpuTwins) test('fp16 engine on the CPU, stages 0 and 3: equals the same steps by hand bit for bit (overflowing steps skipped, scale grows)', async () => {
  const ref = referenceRun('f16', STEPS, 1);
  assert.equal(ref.scales, SKIPPING, 'the reference overflows at steps 1, 2 and 5 and grows the scale after two clean steps');
  for (const stage of [0, 3] as const) {
    const got = await engineRun({ device: 'cpu', dtype: 'f16', stage, steps: STEPS });
    assert.equal(got.scales, ref.scales, `stage ${stage}: loss-scale trace`);
    assert.equal(got.losses, ref.losses, `stage ${stage}: losses`);
    const w = worstWeight(got.weights, ref.weights);
    assert.is(w.rel, 0, `stage ${stage}: ${w.name} differs by ${w.rel}`);
  }
});

if (!cudaIsAvailable()) {
  test('fp16 engine on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_engine_fp16 (cuda:0 runs): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test(`fp16 engine on cuda:0 equals the CPU engine, ZeRO stages 0-3, ${STEPS} steps`, async () => {
    const runs: (() => void)[] = [];
    for (const stage of [0, 1, 2, 3] as const) {
      const cpu = await engineRun({ device: 'cpu', dtype: 'f16', stage, steps: STEPS });
      const gpu = await engineRun({ device: 'cuda:0', dtype: 'f16', stage, steps: STEPS });
      assert.equal(gpu.scales, cpu.scales, `stage ${stage}: the same loss-scale trace (skipped steps)`);
      const l = worstLoss(gpu.losses, cpu.losses);
      const w = worstWeight(gpu.weights, cpu.weights);
      console.log(`  stage ${stage}: losses ${l.toExponential(2)}, weights ${w.rel.toExponential(2)} (${w.name})`);
      // Every stage is measured before any assertion: a failure then shows them all.
      runs.push(() => {
        assert.ok(l <= 2.5e-3, `stage ${stage}: losses differ by ${l} (cuda ${gpu.losses}, cpu ${cpu.losses})`);
        assert.ok(w.rel <= WEIGHT_TOL, `stage ${stage}: ${w.name} differs by ${w.rel} (bound ${WEIGHT_TOL})`);
        assert.ok(gpu.memory.optim > 0 && gpu.memory.param > 0, `stage ${stage}: optimizer state and parameters on cuda:0 (${JSON.stringify(gpu.memory)})`);
      });
    }
    for (const check of runs) check();
  });
}

test.run();
