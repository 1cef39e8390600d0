// Pipeline checkpoints between the plain optimizer and ZeRO (fixtures/pipeline_plain_checkpoint.ts):
// both write the same names (weights, `optimizer.<name>.<state>`), so pp 2 GPT-tiny (AdamW, WarmupLR,
// fp32) saved after N = 2 steps with the plain optimizer resumes under ZeRO-1, and saved under ZeRO-1
// resumes with the plain optimizer: steps 3 and 4 give the uninterrupted plain run's losses within
// 1e-6 relative (step 4 depends on the restored Adam moments and step counts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { launch, reload, resume } from './plain_checkpoint_runs.ts';

const PP2 = { dp: 1, pp: 2, tp: 1 };

test('pp 2 (fp32): a plain checkpoint resumes under ZeRO-1 and a ZeRO-1 checkpoint with the plain optimizer', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-plain-zero-'));
  try {
    const want = (await resume(PP2, 'f32', dir))[0].lossesA.slice(2);
    const close = (got: number[], what: string) => {
      assert.is(got.length, 2, what);
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-6 * Math.abs(want[i]), `${what}: step ${i + 3} loss ${v} vs uninterrupted ${want[i]}`));
    };
    for (const r of await reload(PP2, 'f32', dir, ['cpu', 'zero1'])) close(r.next, `plain -> ZeRO-1, rank ${r.rank}`);
    for (const d of ['ck', 're']) fs.rmSync(path.join(dir, d), { recursive: true, force: true });
    await launch(PP2, 'f32', dir, 'save', ['cpu', 'zero1']);
    for (const r of await reload(PP2, 'f32', dir)) close(r.next, `ZeRO-1 -> plain, rank ${r.rank}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
