/**
 * A single-device training run on CUDA equals the CPU run: GPT tiny from the same seed, the same
 * batches, AdamW, a few steps. f32: every step's loss within 1e-5 relative and the final weights
 * within 1e-4 of each tensor's largest value plus 2e-5 absolute; bf16 weights (f32 masters):
 * losses within 2e-2. Without a usable device it prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import { AdamW, crossEntropy, cudaIsAvailable, type DType, manualSeed, native, nn, noGrad, rand, type Tensor, tidy } from '../../src/index.ts';

const DEV = 'cuda:0';

/** The largest difference beyond `absTol`, relative to the largest |want|. */
function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>, absTol = 0): number {
  let scale = 1e-30;
  let err = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]) - absTol);
  return Number.isNaN(err) ? Number.POSITIVE_INFINITY : err / scale;
}

/** Losses of `steps` AdamW steps of GPT tiny on `device`, and the final weights by name. */
function run(device: 'cpu' | typeof DEV, dtype: DType, steps: number): { losses: number[]; weights: Map<string, number[]> } {
  manualSeed(1234);
  const model = new GPT(gptConfig('tiny', { dropout: 0, dtype }));
  if (device !== 'cpu') nn.moduleToDevice(model, device);
  const optimizer = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    tidy(() => {
      // Token ids drawn on the CPU (the same for both runs), then moved.
      const ids = noGrad(() => rand([4, 16]).mul(64).to('i32'));
      const targets = noGrad(() => rand([4, 16]).mul(64).to('i64'));
      const onDev = (t: Tensor) => (device === 'cpu' ? t : t.to(device));
      const loss = crossEntropy(model.forward(onDev(ids)).to('f32').reshape([64, 64]), onDev(targets).reshape([64]));
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      losses.push(loss.item());
    });
  }
  const weights = new Map(model.namedParameters().map(([name, p]) => [name, p.toList()] as [string, number[]]));
  model.dispose();
  return { losses, weights };
}

if (!cudaIsAvailable()) {
  test('CUDA training parity', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_train: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('GPT tiny, 5 AdamW steps in f32: CUDA equals the CPU', () => {
    const cpu = run('cpu', 'f32', 5);
    const gpu = run(DEV, 'f32', 5);
    cpu.losses.forEach((l, i) => assert.ok(Math.abs(gpu.losses[i] - l) <= 1e-5 * Math.abs(l), `step ${i}: loss ${gpu.losses[i]} on CUDA, ${l} on the CPU`));
    // Plus 2e-5 absolute: the attention's key bias has a mathematically zero gradient (softmax
    // ignores a constant per row), so each device's is rounding noise (~1e-12) that AdamW (eps 1e-8)
    // turns into steps of up to lr * |g| / eps, different on each device (seen: 4.5e-6 after 5 steps).
    for (const [name, w] of cpu.weights) {
      const e = maxRelErr(gpu.weights.get(name) as number[], w, 2e-5);
      assert.ok(e <= 1e-4, `${name}: weights differ by ${e} (relative, beyond 2e-5 absolute)`);
    }
  });

  test('GPT tiny, 5 AdamW steps with bf16 weights: CUDA losses within 2e-2 of the CPU', () => {
    const cpu = run('cpu', 'bf16', 5);
    const gpu = run(DEV, 'bf16', 5);
    cpu.losses.forEach((l, i) => assert.ok(Math.abs(gpu.losses[i] - l) <= 2e-2 * Math.abs(l), `step ${i}: loss ${gpu.losses[i]} on CUDA, ${l} on the CPU`));
  });
}

test.run();
