// Pipeline checkpoints keep module buffers with tensor-parallel stages (fixtures/pipeline_buffers_checkpoint.ts):
// the conv + BatchNorm net on pp 2 x tp 2, every layer replicated across tp (as a non-parallel layer
// of a tp stage). 2 steps + save + load + 2 steps equal 4 uninterrupted steps bit for bit (losses,
// weights, running statistics); each buffer is written once, by its stage's tp rank 0; the
// checkpoint loads at pp 1 without tp, every buffer bit for bit.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BUFFERS, buffersOnce, launch, results, savedBuffers } from './buffers_checkpoint_runs.ts';

test('pp 2 x tp 2 (layers replicated across tp): each buffer written once, by the tp rank 0 of its stage; resumes bit for bit; loads at pp 1', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-buffers-'));
  try {
    const rs = results(await launch({ dp: 1, pp: 2, tp: 2 }, dir, 'resume'));
    assert.is(rs.length, 4);
    for (const x of rs) {
      const at = `tp rank ${x.coords.tp} pp rank ${x.coords.pp}`;
      assert.equal(x.buffers, BUFFERS.slice(3 * x.coords.pp, 3 * x.coords.pp + 3), `${at}: this stage's buffers`);
      assert.ok(x.lossesA.every((v: number, i: number) => Object.is(v, x.lossesResumed[i])), `${at}: losses ${x.lossesResumed} vs ${x.lossesA}`);
      assert.ok(x.weightsEqual && x.buffersEqual, `${at}: weights and running statistics bit for bit`);
    }
    const writer = buffersOnce(path.join(dir, 'ck'), 'global_step2');
    for (const [name, rank] of Object.entries(writer)) {
      const c = rs.find((x) => x.rank === rank)?.coords;
      assert.ok(c && c.tp === 0 && c.pp === (name.startsWith('1.') ? 0 : 1), `"${name}" written by rank ${rank} (${JSON.stringify(c)}): its stage's tp rank 0`);
    }
    const want = savedBuffers(path.join(dir, 'ck'), 'global_step2');
    const [r] = results(await launch({ dp: 1, pp: 1 }, dir, 'reload'));
    for (const name of BUFFERS) assert.equal(r.buffers[name], want[name], `pp 1: "${name}" loaded bit for bit`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
