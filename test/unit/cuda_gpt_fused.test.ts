/**
 * A GPT training run on CUDA through the fused paths equals the CPU run: head dim 64 (the fused
 * attention: SIMT in f32, tensor cores in bf16), 40 tokens (more than one key tile), embedding
 * and cross-entropy with their indices kept on the device, 3 AdamW steps from the same seed and
 * batches. f32: every step's loss within 1e-5 relative; bf16 weights (f32 masters): within 2e-2.
 * Without a usable device it prints one SKIP line with the reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import { AdamW, crossEntropy, cudaIsAvailable, type DType, manualSeed, native, nn, noGrad, rand, type Tensor, tidy } from '../../src/index.ts';

const DEV = 'cuda:0';
const [B, T, V] = [2, 40, 64];

/** Losses of `steps` AdamW steps on `device`. */
function run(device: 'cpu' | typeof DEV, dtype: DType, steps: number): number[] {
  manualSeed(4321);
  // Width 64 in one head: head dim 64 as at width 128 in two, half the emulated threads per layer.
  const model = new GPT(gptConfig('tiny', { nCtx: T, nEmbd: 64, nHead: 1, dropout: 0, dtype }));
  if (device !== 'cpu') nn.moduleToDevice(model, device);
  const optimizer = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    tidy(() => {
      const ids = noGrad(() => rand([B, T]).mul(V).to('i32'));
      const targets = noGrad(() => rand([B, T]).mul(V).to('i64'));
      const onDev = (t: Tensor) => (device === 'cpu' ? t : t.to(device));
      const loss = crossEntropy(model.forward(onDev(ids)).to('f32').reshape([B * T, V]), onDev(targets).reshape([B * T]));
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      losses.push(loss.item());
    });
  }
  model.dispose();
  return losses;
}

if (!cudaIsAvailable()) {
  test('CUDA GPT through the fused paths', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_gpt_fused: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const [dtype, tol] of [['f32', 1e-5], ['bf16', 2e-2]] as [DType, number][]) {
    test(`GPT head dim 64, 3 AdamW steps in ${dtype}: CUDA losses within ${tol} of the CPU`, () => {
      const cpu = run('cpu', dtype, 3);
      const gpu = run(DEV, dtype, 3);
      cpu.forEach((l, i) => assert.ok(Math.abs(gpu[i] - l) <= tol * Math.abs(l), `step ${i}: loss ${gpu[i]} on CUDA, ${l} on the CPU`));
    });
  }
}

test.run();
