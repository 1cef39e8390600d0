// ZeRO stage 3 with GPT tiny on 2 and 4 real ranks vs single-process training; cases, tolerances
// and memory checks are described in zero3_check.ts (the small ResNet is zero3_resnet.test.ts).
import { test } from 'uvu';
import { check, run } from './zero3_check.ts';

test('zero3: GPT tiny on 2 ranks equals one process (prefetch on/off, clipping, accumulation, SGD, checkpointing)', async () => {
  check(await run('gpt', 2, 3));
});

test('zero3: GPT tiny on 4 ranks equals one process', async () => {
  check(await run('gpt', 4, 3));
});

test.run();
