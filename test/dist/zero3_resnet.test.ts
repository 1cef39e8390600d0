// ZeRO stage 3 with a small ResNet-style convnet (BatchNorm, a strided block with a projection
// shortcut) on 2 and 4 real ranks vs single-process training, including an eval forward along
// another path between steps (the traced order changes: prefetch falls back, then re-traces).
// Also: a misspelled option is refused with the suggestion, and conv2d on a partitioned weight
// outside its module fails naming it. Cases, tolerances and memory checks: zero3_check.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { check, run } from './zero3_check.ts';

test('zero3: a small ResNet on 2 ranks equals one process (and the trace changes); misuse fails clearly', async () => {
  const r = await run('conv', 2, 3);
  check(r);
  const m = /^\[rank 0\] MISC (.*)$/m.exec(r.out);
  assert.ok(m, r.out);
  const misc = JSON.parse(m![1]) as { option: string; op: string; forward: string; afterError: string };
  assert.match(misc.option, 'unknown key "prefetchBucketSze" (did you mean "prefetchBucketSize"?)');
  // conv2d on a partitioned weight outside its module's forward: the error names the parameter and its module.
  assert.match(misc.op, 'parameter "block.conv1.weight" [8, 8, 3, 3] is partitioned');
  assert.match(misc.op, 'forward and backward of "block.conv1"');
  assert.match(misc.forward, 'conv2d');
  const [bytes, want, prefetched] = misc.afterError.split(' ').map(Number);
  assert.is(bytes, want, 'after a forward that threw, the next forwards leave only the partitions and persistent parameters');
  assert.ok(prefetched > 0, `after a forward that threw, tracing and prefetch resume (${prefetched})`);
});

test('zero3: a small ResNet on 4 ranks equals one process', async () => {
  check(await run('conv', 4, 3));
});

test.run();
