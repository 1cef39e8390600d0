// Pipeline checkpoints with the plain optimizer across layouts (fixtures/pipeline_plain_checkpoint.ts):
// GPT-tiny on dp 2 × pp 2, AdamW with WarmupLR, fp32 and bf16 (fp32 masters). N = 2 steps, save, a
// fresh engine loads, N more steps: losses, weights and the optimizer state equal 2N uninterrupted
// steps bit for bit; only dp rank 0 of each stage writes. The checkpoint loads at dp 1 × pp 2 and
// (fp32) at one process (pp 1): saved again there, every tensor (weights, moments, masters, step
// counts) equals the original's bit for bit, and training continues.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { checkReloaded, checkResumed, launchJobs, sameCheckpoints } from './plain_checkpoint_runs.ts';

test('dp 2 x pp 2, fp32 and bf16: resumes bit for bit; loads at dp 1 x pp 2 and (fp32) at one process, re-saved there equal bit for bit', async () => {
  const dirs: Record<string, string> = {};
  for (const dtype of ['f32', 'bf16']) dirs[dtype] = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-plain-'));
  const tag = 'global_step2';
  try {
    // One launch per mesh runs both dtypes' jobs (the fixture's "jobs" mode): three launches, not five.
    const resumed = await launchJobs({ dp: 2, pp: 2, tp: 1 }, ['f32', 'bf16'].map((dtype) => ({ dtype, dir: dirs[dtype], mode: 'resume' })));
    for (const [i, dtype] of ['f32', 'bf16'].entries()) {
      checkResumed({ dp: 2, pp: 2, tp: 1 }, dtype, resumed[i]);
      // dp replicas: only dp rank 0 of each stage writes weights and state (two of the four ranks write none).
      const perRank = openCheckpoint(path.join(dirs[dtype], 'ck'), tag).indexes.map((ix) => ix.entries.length);
      assert.is(perRank.filter((e) => e === 0).length, 2, `entries per rank ${perRank}`);
    }
    for (const [mesh, dtypes] of [[{ dp: 1, pp: 2, tp: 1 }, ['f32', 'bf16']], [{ dp: 1, pp: 1, tp: 1 }, ['f32']]] as const) {
      const outs = await launchJobs(mesh, dtypes.map((dtype) => ({ dtype, dir: dirs[dtype], mode: 'reload' })));
      for (const [i, dtype] of dtypes.entries()) {
        checkReloaded(mesh, outs[i]);
        const n = sameCheckpoints(path.join(dirs[dtype], 'ck'), path.join(dirs[dtype], 're'), tag);
        assert.ok(n > 20, `${n} tensors compared`);
        fs.rmSync(path.join(dirs[dtype], 're'), { recursive: true, force: true });
      }
    }
  } finally {
    for (const dir of Object.values(dirs)) fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
