// parallelize() on CUDA tensors: 2 ranks share cuda:0 as one tp group; GPT-tiny parallelized with
// gptTensorParallelPlan and moved there (nn.moduleToDevice), trained 4 AdamW steps with vocab-parallel
// cross-entropy, plain tensor parallel and sequence parallel (then with global-norm clipping at 0.05),
// against one CPU process (fixtures/cuda_tp.ts). f32 tolerances: losses and gradient norms within 1e-5
// relative, weights within 1e-4 of max(1, |w|), the attention key bias (true gradient zero) 1e-3;
// the emulated device measures losses equal, norms 2.5e-7, weights 6.3e-6. Every parameter,
// gradient, logit and loss stays on the device. The fixture runs on the CPU too (weights within
// 5e-5, tp_gpt's bound); the cuda:0 half prints one SKIP line without a device.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { cpuTwins } from '../helpers/cpu_twins.ts';
import { expectExit, runLauncher } from './helpers.ts';

type Results = Record<string, { lossRel: number; normRel: number; weightAbs: number; worst: string; keyBiasAbs: number; onDevice: boolean }>;

async function run(device: string, weightTol: number): Promise<void> {
  const r = await runLauncher(['--num_procs', '2'], 'cuda_tp.ts', [device], { timeoutMs: 120_000 });
  expectExit(r, 0, `cuda_tp on ${device}`);
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const results = JSON.parse((m as RegExpExecArray)[1]) as Results;
  assert.equal(Object.keys(results), ['tensorParallel', 'sequenceParallel', 'sequenceParallelClipped']);
  for (const [name, c] of Object.entries(results)) {
    assert.ok(c.onDevice, `${name}: parameters, gradients, logits and loss on ${device}`);
    assert.ok(c.lossRel <= 1e-5, `${name}: losses within 1e-5 relative (got ${c.lossRel})`);
    assert.ok(c.normRel <= 1e-5, `${name}: gradient norms within 1e-5 relative (got ${c.normRel})`);
    assert.ok(c.weightAbs <= weightTol, `${name}: weights within ${weightTol} (got ${c.weightAbs} at ${c.worst})`);
    assert.ok(c.keyBiasAbs <= 1e-3, `${name}: attention key bias within 1e-3 (got ${c.keyBiasAbs})`);
  }
}

if (cpuTwins) {
  test('parallelize() on 2 CPU ranks through the same fixture equals one process', async () => {
    await run('cpu', 5e-5);
  });
}

if (!cudaIsAvailable()) {
  test('parallelize() on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_tensor_parallel (cuda:0): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('parallelize() on 2 ranks sharing cuda:0: tensor and sequence parallel, vocab-parallel loss, clipping, equal one CPU process', async () => {
    await run('cuda:0', 1e-4);
  });
}

test.run();
