// Pipeline checkpoints with the plain optimizer (zero_optimization.stage 0; fixtures/pipeline_plain_checkpoint.ts):
// GPT-tiny on pp 2 and dp 2 × pp 2, AdamW with WarmupLR, fp32 and bf16 (fp32 masters). N = 2 steps,
// save, a fresh engine loads, N more steps: losses, weights and the optimizer state (moments, masters,
// step counts) equal 2N uninterrupted steps bit for bit, and the learning rate and global step
// count come back. A truncated data file is refused on every rank, naming the file, and so is
// AdamW state loaded by an SGD engine. dp 2 × pp 2 and
// loading at other layouts: pipeline_plain_checkpoint_layout.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { launch, resume } from './plain_checkpoint_runs.ts';

test('pp 2, fp32 and bf16: N steps + save + load + N steps equals 2N steps bit for bit; a truncated file is refused on every rank', async () => {
  for (const dtype of ['f32', 'bf16']) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-plain-'));
    try {
      await resume({ dp: 1, pp: 2, tp: 1 }, dtype, dir);
      if (dtype === 'bf16') assert.ok(openCheckpoint(path.join(dir, 'ck'), 'global_step2').tensors.has('optimizer.wte.weight.master'), 'bf16: fp32 masters saved');
      if (dtype === 'f32') {
        // Another optimizer's state: refused on every rank while reading, naming both.
        const sgd = [...(await launch({ dp: 1, pp: 2, tp: 1 }, 'f32', dir, 'refuse-sgd')).matchAll(/^\[rank (\d+)\] ERROR (.*)$/gm)].map((m) => m[2]);
        assert.is(sgd.length, 2, `${sgd}`);
        for (const e of sgd) assert.match(e, /holds Adam\/AdamW optimizer state, this pipeline engine runs SGD/);
        await refuseTruncated(dir);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

/** Cuts the largest data file short: every rank refuses (one all-reduce), nothing loads, an error names the file. */
async function refuseTruncated(dir: string): Promise<void> {
  const tagDir = path.join(dir, 'ck', 'global_step2');
  const size = (f: string) => fs.statSync(path.join(tagDir, f)).size;
  const victim = fs.readdirSync(tagDir).filter((f) => f.endsWith('.bin')).sort((x, y) => size(y) - size(x))[0];
  fs.truncateSync(path.join(tagDir, victim), Math.floor(size(victim) / 2));
  const out = await launch({ dp: 1, pp: 2, tp: 1 }, 'f32', dir, 'refuse');
  const errs = [...out.matchAll(/^\[rank (\d+)\] ERROR (.*)$/gm)].map((m) => m[2]);
  assert.is(errs.length, 2, out);
  assert.ok(errs.every((e) => e !== 'none'), `refused: ${errs}`);
  assert.ok(errs.some((e) => e.includes(victim)), `an error names ${victim}: ${errs}`);
}

test.run();
