// Pipeline × data parallelism on 4 ranks (pp 2 × dp 2, DeviceMesh): 1F1B with gradients averaged
// over dp once per step, with ZeRO stages 1 and 2 over the dp group (gradients handed to ZeRO once,
// after the last micro-batch) and with ZeRO stage 3 (parameters gathered per module, each
// micro-batch's gradients reduce-scattered, the tied embedding/head shards summed across the two
// stages), also under ZB-H1 (each W action's deferred weight gradients reduce-scattered like a
// backward's); clipping by the norm over every stage; each equal to one process training on all 8
// micro-batches (tolerances in pipeline_common.ts). Plain dp and ZeRO-1/2: the dp collectives of each
// batch of 4 micro-batches all come after its last pipeline send/recv and number the same as with 1
// micro-batch (plain dp: one all-reduce per parameter, plus the loss), i.e. gradients are reduced once per step.
import { test } from 'uvu';
import { checkDpOncePerStep, checkTraining, type Result, runPipeline } from './pipeline_common.ts';

let results: Result[] | null = null;
const run = async () => (results ??= await runPipeline(2, 2, ['1f1b', 'zero1', 'zero2', 'zero3', 'zero3-zb']));

for (const what of ['1f1b', 'zero1', 'zero2', 'zero3', 'zero3-zb']) {
  test(`pipeline pp=2 x dp=2 ${what}: losses, norms and weights equal one process; tied weights identical`, async () => {
    checkTraining(await run(), what, 4);
    if (what === '1f1b' || what === 'zero1' || what === 'zero2') checkDpOncePerStep(await run(), what);
  });
}

test.run();
