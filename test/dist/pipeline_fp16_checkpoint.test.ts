// The fp16 dynamic loss scaler's state survives a pipeline checkpoint (fixtures/pipeline_buffers_checkpoint.ts,
// f16): the conv + BatchNorm net in f16 on a 2-stage pipeline, fp16.enabled with the scale from 2^17,
// hysteresis 2, window 2. Steps 1 and 2 overflow (the first spends the hysteresis, the second halves
// the scale) and are skipped; then the engine saves. A fresh engine (its scaler back at 2^17) loads:
// its scaler state (scale, iteration, last overflow, hysteresis) equals the saved engine's, and steps
// 3 and 4 (taken at the halved scale; a scale of 2^17 overflows again) equal 4 uninterrupted steps
// bit for bit: losses, scale per step, skipped count, f16 weights and running statistics. Plain
// AdamW (fp32 masters) and ZeRO-1.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

test('pp 2 fp16, plain and ZeRO-1: the loss scale after load equals the one before save (an overflow before it), steps after it match bit for bit', async () => {
  for (const opt of ['plain', 'zero1']) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-fp16-'));
    try {
      const r = await runLauncher(['--num_procs', '2', '--no_local_rank'], 'pipeline_buffers_checkpoint.ts', ['{"dp":1,"pp":2}', 'f16', dir, 'resume', opt], { timeoutMs: 50_000 });
      expectExit(r, 0, `pipeline fp16 checkpoint ${opt}`);
      const rs = [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
      assert.is(rs.length, 2);
      for (const x of rs) {
        const at = `${opt} rank ${x.rank}`;
        assert.is(x.dtype, 'f16', at);
        assert.is(x.initialScale, 2 ** 17, at);
        assert.equal(x.scalerAtSave, { curScale: 2 ** 16, curIter: 2, lastOverflowIter: 1, curHysteresis: 1 }, `${at}: two overflows before the save`);
        assert.equal(x.scalerAfterLoad, x.scalerAtSave, `${at}: the scaler state after load is the one saved`);
        assert.is(x.skippedAtSave, 2, at);
        assert.is(x.skippedAfterLoad, 2, `${at}: skipped steps restored`);
        assert.equal(x.scalesResumed, x.scalesA, `${at}: the scale of every step`);
        assert.equal(x.scalesA, [2 ** 17, 2 ** 17, 2 ** 16, 2 ** 16], at);
        assert.is(x.skippedC, x.skippedA, at);
        assert.is(x.skippedA, 2, `${at}: steps 3 and 4 taken`);
        assert.ok(x.lossesA.every((v: number, i: number) => Object.is(v, x.lossesResumed[i]) && Number.isFinite(v)), `${at}: losses ${x.lossesResumed} vs ${x.lossesA}`);
        assert.ok(x.weightsEqual, `${at}: f16 weights bit for bit`);
        assert.ok(x.buffersEqual, `${at}: running statistics bit for bit`);
        assert.is(x.globalSteps, 4, at);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test.run();
