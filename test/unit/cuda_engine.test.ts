/**
 * The engine on a GPU (initialize() with device 'cuda:0') equals the engine on the CPU: GPT tiny,
 * ZeRO stages 0-3, f32 and bf16, 5 steps with AdamW and gradient clipping, one process (its
 * collectives staged through host buffers). f32: every loss within 1e-5 relative, final weights
 * within 1e-4 x max(1, each tensor's largest value) (the kernels differ from the CPU's in summation
 * order only). bf16: losses within 2e-2 relative and weights within 2e-2: cuBLASLt and oneDNN
 * sum each matmul in another order before its one bf16 rounding (one bf16 ulp is 2^-8), which five
 * steps compound; linear + GELU rounds once on both (the epilogue, and the CPU's same steps). The
 * attention key biases (the middle third of c_attn.bias) are checked apart, within 3e-2: their true
 * gradient is zero, so AdamW turns their rounding noise into steps of about lr each way and two
 * devices can part by 2 x lr x 5 steps. Emulated: losses and every weight equal (0 in both dtypes;
 * 2.0e-2 at the key biases, 7.8e-3 elsewhere, while the CPU rounded the pre-activation first).
 * Without a device: one SKIP line.
 * Always: device placement (explicit, MESHTRAIN_DEVICE, default) and its errors, and the CPU
 * engine run of the same harness against plain AdamW (1e-5).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { engineDevice } from '../../src/engine/placement.ts';
import { cudaDeviceCount, cudaIsAvailable, destroyDistributed, initDistributed, native } from '../../src/index.ts';
import { engineRun, referenceRun, worstLoss, worstWeight } from '../dist/fixtures/engine_device.ts';
import { cpuTwins } from '../helpers/cpu_twins.ts';

// A world of one for initialize(), only while this file's tests run: uvu loads every file first, and a
// world left initialized would break the files that start their own.
test.before(async () => {
  await initDistributed({ timeoutMs: 30_000 });
});
test.after(async () => {
  await destroyDistributed();
});
const STEPS = 5;

/** The attention key biases (c_attn.bias's middle third) apart from every other weight. */
function splitKeyBias(weights: Record<string, number[]>): { rest: Record<string, number[]>; key: Record<string, number[]> } {
  const rest: Record<string, number[]> = {};
  const key: Record<string, number[]> = {};
  for (const [name, w] of Object.entries(weights)) {
    const n = w.length / 3;
    if (!/attn\.c_attn\.bias$/.test(name)) rest[name] = w;
    else [rest[name], key[name]] = [[...w.slice(0, n), ...w.slice(2 * n)], w.slice(n, 2 * n)];
  }
  return { rest, key };
}

test('placement: explicit device, MESHTRAIN_DEVICE, default by LOCAL_RANK; unavailable devices are refused by name', () => {
  const n = native.cuda ? cudaDeviceCount() : 0;
  assert.is(engineDevice('cpu', {}), 'cpu');
  assert.is(engineDevice(undefined, { MESHTRAIN_DEVICE: 'cpu', LOCAL_RANK: '1' }), 'cpu');
  assert.is(engineDevice(undefined, { LOCAL_RANK: '3' }), n === 0 ? 'cpu' : `cuda:${3 % n}`);
  assert.throws(() => engineDevice('gpu', {}), /initialize: device: unknown device "gpu"/);
  assert.throws(() => engineDevice(undefined, { MESHTRAIN_DEVICE: 'cuda:x' }), /MESHTRAIN_DEVICE: unknown device/);
  assert.throws(() => engineDevice(`cuda:${n}`, {}), new RegExp(`initialize: device: cuda:${n} is not available \\(${n} CUDA device`));
});

// CPU only: under cuda_emu.test.ts (CPU twins off) npm test has run it in this same file already.
if (cpuTwins) test('the harness on the CPU: initialize() stages 0 and 3 in one process equal plain AdamW with clipping (1e-5)', async () => {
  const ref = referenceRun('f32', 3, 1);
  for (const stage of [0, 3] as const) {
    const got = await engineRun({ device: 'cpu', dtype: 'f32', stage, steps: 3 });
    assert.ok(worstLoss(got.losses, ref.losses) <= 1e-5, `stage ${stage}: losses ${got.losses} vs ${ref.losses}`);
    const w = worstWeight(got.weights, ref.weights);
    assert.ok(w.rel <= 1e-5, `stage ${stage}: ${w.name} differs by ${w.rel}`);
  }
});

if (!cudaIsAvailable()) {
  test('engine on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_engine (cuda:0 runs): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of ['f32', 'bf16'] as const) {
    const tol = dtype === 'f32' ? { loss: 1e-5, weight: 1e-4, keyBias: 1e-4 } : { loss: 2e-2, weight: 2e-2, keyBias: 3e-2 };
    test(`engine on cuda:0 equals the CPU engine, ZeRO stages 0-3, ${dtype}, ${STEPS} steps`, async () => {
      for (const stage of [0, 1, 2, 3] as const) {
        const cpu = await engineRun({ device: 'cpu', dtype, stage, steps: STEPS });
        const gpu = await engineRun({ device: 'cuda:0', dtype, stage, steps: STEPS });
        const l = worstLoss(gpu.losses, cpu.losses);
        assert.ok(l <= tol.loss, `stage ${stage} ${dtype}: losses differ by ${l} (cuda ${gpu.losses}, cpu ${cpu.losses})`);
        const [g, c] = [splitKeyBias(gpu.weights), splitKeyBias(cpu.weights)];
        const w = worstWeight(g.rest, c.rest);
        const kb = worstWeight(g.key, c.key);
        console.log(`  stage ${stage} ${dtype}: losses ${l.toExponential(2)}, weights ${w.rel.toExponential(2)} (${w.name}), key biases ${kb.rel.toExponential(2)}`);
        assert.ok(w.rel <= tol.weight, `stage ${stage} ${dtype}: ${w.name} differs by ${w.rel}`);
        assert.ok(kb.rel <= tol.keyBias, `stage ${stage} ${dtype}: the key biases of ${kb.name} differ by ${kb.rel}`);
        assert.ok(gpu.memory.optim > 0 && gpu.memory.param > 0, `stage ${stage}: optimizer state and parameters on cuda:0 (${JSON.stringify(gpu.memory)})`);
      }
    });
  }
}

test.run();
