// fp16 with dynamic loss scaling through a 2-stage pipeline (fixtures/pipeline_fp16.ts): an f16
// MLP with AdamW on fp32 masters (plain and ZeRO stage 2), clipping, a DynamicLossScaler whose
// scale overflows f16 gradients on some steps. The skip decision is one for the whole model: the
// pipeline's scale trace, skipped steps, losses and final f16 weights equal one process doing the
// same by hand, bit for bit (tolerance 0; the same ops in the same order on every micro-batch).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

test('pipeline fp16: loss-scale trace, skipped steps, losses and weights equal one process (plain AdamW and ZeRO-2)', async () => {
  const r = await runLauncher(['--num_procs', '2', '--no_local_rank'], 'pipeline_fp16.ts', ['plain,zero2'], { timeoutMs: 55_000 });
  expectExit(r, 0, 'pipeline fp16 on 2 ranks');
  const rs = [...r.stdout.matchAll(/^\[rank \d\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
  assert.is(rs.length, 4);
  for (const x of rs) {
    const at = `${x.case} rank ${x.rank}`;
    assert.is(x.dtype, 'f16');
    assert.equal(x.scales, x.refScales, `${at}: scale trace`);
    assert.ok(x.skipped > 0 && x.skipped < x.globalSteps, `${at}: some steps overflowed and were skipped (${x.skipped} of ${x.globalSteps})`);
    assert.ok(new Set(x.scales).size > 1, `${at}: the scale moved both ways (${x.scales})`);
    assert.is(x.lossRel, 0, `${at}: losses ${x.losses} vs ${x.refLosses}`);
    assert.is(x.weightRel, 0, `${at}: weights bit for bit`);
  }
});

test.run();
