// ZeRO stage 3 with a small ResNet-style convnet (BatchNorm, a strided block with a projection
// shortcut) on 2 and 4 real ranks vs single-process training, including an eval forward along
// another path between steps (the traced order changes: prefetch falls back, then re-traces).
// Cases, tolerances and memory checks: zero3_check.ts.
import { test } from 'uvu';
import { check, run } from './zero3_check.ts';

test('zero3: a small ResNet on 2 ranks equals one process (and the trace changes)', async () => {
  check(await run('conv', 2, 3));
});

test('zero3: a small ResNet on 4 ranks equals one process', async () => {
  check(await run('conv', 4, 3));
});

test.run();
