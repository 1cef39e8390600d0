// engine.memoryReport() on 4 ranks: stages 1, 2 and 3 (f32 AdamW, GPT tiny) within 5% of ZeRO's
// formula plus the named buffers; and on 2 ranks, stage 2 with offload_optimizer cpu: the optim
// term in the 'cpu-offload' pool, none on the device. The 2-rank cases are in engine_memory.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { reports, stagesTest } from './memory_checks.ts';

stagesTest(4);

test('memory report: with offload_optimizer cpu the optimizer state is in the cpu-offload pool', async () => {
  const { reports: reps, stdout } = await reports(2, ['2', 'f32', 'AdamW', 'cpu']);
  for (const r of reps) {
    assert.is(r.optimLocation, 'cpu-offload');
    assert.is(r.measured.optim.current, 0, 'no optimizer state on the device');
    const pool = r.offloadPool?.optim.current ?? 0;
    assert.ok(Math.abs(pool - r.expected.optim) <= 0.05 * r.expected.optim, `pool optim ${pool} within 5% of ${r.expected.optim}`);
  }
  assert.match(stdout, /the optim term is held in the cpu-offload pool/);
});

test.run();
