/**
 * Device ops of the 2-layer bf16 GPT engine step (bench/gpu_census_gpt.ts) at ZeRO stages 2 and 3,
 * world of one: stage 2 writes gradients into its bucket (src/zero/buckets.ts) and so queues what
 * stage 1 does; stage 3 adopts each parameter's first gradient (src/autograd/grad_adopt.ts) instead
 * of copying it, one copy per parameter fewer than with setGradAdopt(false), and fills its bucket
 * with one copy per parameter (needed: the bucket is rank-major). A change that adds launches to
 * these steps fails here. Counts are structural: the same on a GPU and on the emulated device.
 * Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptStepCensus } from '../../bench/gpu_census_gpt.ts';
import { setGradAdopt } from '../../src/autograd/grad_adopt.ts';
import { censusTotals, cudaIsAvailable, destroyDistributed, formatCensus, initDistributed, native } from '../../src/index.ts';

/**
 * Device ops at 2 layers (emulated now: stage 1 96, stage 2 96, stage 3 180; GPT tiny has 28 parameter tensors).
 * The step is decided on the device (src/zero/decided_step.ts): its decision and its scalars slot's
 * write are 2 one-thread kernels, its read of the outcome an asynchronous copy in place of the host way's
 * synchronizing one, and adamMulti replaces adam: 2 more than the host-decided step's 94 and 178.
 */
const BUDGET = { stage2: 96, stage3: 180 };
const PARAMS = 28;
/**
 * The bench's model at T 16 instead of 64 and width 64 in one head instead of 128 in two (head dim
 * 64 kept, so attention takes the same kernels): counts are structural (96/96/180/208 at both, batch
 * 2 kept so batch-dependent copies would show), the emulated kernels run a fraction of the threads.
 */
const SHAPE = { layers: 2, seq: 16, nEmbd: 64, nHead: 1 };

if (!cudaIsAvailable()) {
  test('ZeRO step census', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_census_zero: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test.before(async () => {
    await initDistributed({ timeoutMs: 30_000 });
  });
  test.after(async () => {
    await destroyDistributed();
  });

  test(`ZeRO 2 (gradients written into the bucket): at most ${BUDGET.stage2} device ops, as many as stage 1`, async () => {
    const two = await gptStepCensus({ ...SHAPE, stage: 2 });
    const one = await gptStepCensus({ ...SHAPE, stage: 1 });
    const [t2, t1] = [censusTotals(two).deviceOps, censusTotals(one).deviceOps];
    console.log(`  ZeRO 2 step: ${t2} device ops (stage 1: ${t1})`);
    assert.ok(t2 <= BUDGET.stage2, formatCensus(two));
    assert.ok(t2 <= t1, `stage 2 ${t2} > stage 1 ${t1}`);
  });

  test(`ZeRO 3: at most ${BUDGET.stage3} device ops; copying first gradients costs one copy per parameter more`, async () => {
    const adopted = await gptStepCensus({ ...SHAPE, stage: 3 });
    const prev = setGradAdopt(false);
    let copied: typeof adopted;
    try {
      copied = await gptStepCensus({ ...SHAPE, stage: 3 });
    } finally {
      setGradAdopt(prev);
    }
    const [a, c] = [censusTotals(adopted).deviceOps, censusTotals(copied).deviceOps];
    console.log(`  ZeRO 3 step: ${a} device ops adopting first gradients, ${c} copying them`);
    assert.ok(a <= BUDGET.stage3, formatCensus(adopted));
    assert.is(c - a, PARAMS, 'one copy per parameter');
  });
}

test.run();
