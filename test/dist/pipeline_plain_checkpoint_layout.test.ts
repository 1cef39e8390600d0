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
import { reload, resume, sameCheckpoints } from './plain_checkpoint_runs.ts';

test('dp 2 x pp 2, fp32 and bf16: resumes bit for bit; loads at dp 1 x pp 2 and (fp32) at one process, re-saved there equal bit for bit', async () => {
  for (const dtype of ['f32', 'bf16']) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-plain-'));
    try {
      await resume({ dp: 2, pp: 2, tp: 1 }, dtype, dir);
      const tag = 'global_step2';
      // dp replicas: only dp rank 0 of each stage writes weights and state (two of the four ranks write none).
      const perRank = openCheckpoint(path.join(dir, 'ck'), tag).indexes.map((ix) => ix.entries.length);
      assert.is(perRank.filter((e) => e === 0).length, 2, `entries per rank ${perRank}`);
      for (const mesh of dtype === 'f32' ? [{ dp: 1, pp: 2, tp: 1 }, { dp: 1, pp: 1, tp: 1 }] : [{ dp: 1, pp: 2, tp: 1 }]) {
        await reload(mesh, dtype, dir);
        const n = sameCheckpoints(path.join(dir, 'ck'), path.join(dir, 're'), tag);
        assert.ok(n > 20, `${n} tensors compared`);
        fs.rmSync(path.join(dir, 're'), { recursive: true, force: true });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test.run();
