// Pipeline checkpoints with the plain optimizer and tensor-parallel stages (fixtures/pipeline_plain_checkpoint.ts):
// GPT-tiny as gptTensorParallelPipelineLayers on pp 2 × tp 2, AdamW with WarmupLR, fp32. N = 2 steps,
// save, a fresh engine loads, N more steps: losses, weights and the optimizer state equal 2N
// uninterrupted steps bit for bit. The checkpoint (row- and column-split tensors written as runs of
// the full tensor, each element once) loads at pp 2 without tp (gptPipelineLayers): re-saved there,
// every tensor equals the original bit for bit, and the next step's loss equals the uninterrupted
// run's third within 1e-6 relative (the tp and non-tp sums differ in order).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { reload, resume, sameCheckpoints } from './plain_checkpoint_runs.ts';

test('pp 2 x tp 2 (fp32): resumes bit for bit; loads at pp 2 without tp, re-saved equal bit for bit', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-plain-tp-'));
  try {
    const resumed = await resume({ dp: 1, pp: 2, tp: 2 }, 'f32', dir);
    const third = resumed[0].lossesA[2];
    for (const r of await reload({ dp: 1, pp: 2, tp: 1 }, 'f32', dir)) {
      assert.ok(Math.abs(r.next[0] - third) <= 1e-6 * Math.abs(third), `rank ${r.rank}: step 3 after loading without tp ${r.next[0]} vs ${third}`);
    }
    const n = sameCheckpoints(path.join(dir, 'ck'), path.join(dir, 're'), 'global_step2');
    assert.ok(n > 20, `${n} tensors compared`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
