// Pipeline checkpoints keep module buffers (fixtures/pipeline_buffers_checkpoint.ts): a conv +
// BatchNorm net on a 2-stage pipeline, the plain optimizer and ZeRO-1. 2 steps + save + load + 2
// steps equal 4 uninterrupted steps bit for bit: losses, weights AND running statistics
// (running_mean, running_var, num_batches_tracked). Each buffer is written once, by the stage that
// holds it (dp rank 0; tp: pipeline_buffers_checkpoint_tp.test.ts). The pp 2 checkpoint loads at
// pp 1, at another stage split and at dp 2: every buffer equals the saved one bit for bit, and
// re-saving gives the same checkpoint. Refusals: pipeline_buffers_checkpoint_refuse.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BUFFERS, buffersOnce, launch, type Mesh, results, savedBuffers } from './buffers_checkpoint_runs.ts';
import { sameCheckpoints } from './plain_checkpoint_runs.ts';

test('conv + BatchNorm on pp 2 (plain and ZeRO-1): save, load, train equals uninterrupted bit for bit (running stats too); loads at pp 1, another split and dp 2', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-buffers-'));
  try {
    for (const opt of ['zero1', 'plain']) {
      const rs = results(await launch({ dp: 1, pp: 2 }, dir, 'resume', [opt]));
      assert.is(rs.length, 2);
      for (const x of rs) {
        const at = `${opt} rank ${x.rank}`;
        assert.equal(x.buffers, BUFFERS.slice(3 * x.rank, 3 * x.rank + 3), `${at}: this stage's buffers`);
        assert.ok(x.lossesA.every((v: number, i: number) => Object.is(v, x.lossesResumed[i]) && Number.isFinite(v)), `${at}: losses ${x.lossesResumed} vs ${x.lossesA}`);
        assert.ok(x.weightsEqual, `${at}: weights equal 4 uninterrupted steps bit for bit`);
        assert.ok(x.buffersEqual, `${at}: running statistics equal 4 uninterrupted steps bit for bit`);
        assert.is(x.globalSteps, 4, at);
      }
      buffersOnce(path.join(dir, 'ck'), 'global_step2');
    }
    // The plain pp 2 checkpoint (the last one saved) at other layouts.
    const ck = path.join(dir, 'ck');
    const want = savedBuffers(ck, 'global_step2');
    assert.is(want['1.num_batches_tracked'][0], 4, 'two steps of two micro-batches tracked');
    for (const [mesh, options] of [[{ dp: 1, pp: 1 }, []], [{ dp: 1, pp: 2 }, ['split']], [{ dp: 2, pp: 1 }, []]] as [Mesh, string[]][]) {
      const at = `${JSON.stringify(mesh)} ${options}`;
      fs.rmSync(path.join(dir, 're'), { recursive: true, force: true });
      const rs = results(await launch(mesh, dir, 'reload', options));
      assert.is(rs.length, mesh.dp * mesh.pp, at);
      const held = new Set<string>();
      for (const r of rs) {
        for (const [name, v] of Object.entries(r.buffers as Record<string, number[]>)) {
          held.add(name);
          assert.ok(v.length === want[name].length && v.every((e, i) => Object.is(e, want[name][i])), `${at} rank ${r.rank}: "${name}" loaded bit for bit`);
        }
        assert.ok(r.losses.every(Number.isFinite) && r.globalSteps === 4, `${at}: trains on (${r.losses})`);
      }
      if (options.includes('split')) assert.equal(rs[0].boundaries, [0, 6, 7], `${at}: both BatchNorms on stage 0`);
      assert.equal([...held].sort(), [...BUFFERS].sort(), `${at}: every buffer held`);
      assert.ok(sameCheckpoints(ck, path.join(dir, 're'), 'global_step2') > BUFFERS.length, `${at}: re-saved bit for bit`);
      buffersOnce(path.join(dir, 're'), 'global_step2');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
