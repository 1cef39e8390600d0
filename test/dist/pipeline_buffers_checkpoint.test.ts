// Pipeline checkpoints keep module buffers (fixtures/pipeline_buffers_checkpoint.ts): a conv +
// BatchNorm net on a 2-stage pipeline, the plain optimizer and ZeRO-1. 2 steps + save + load + 2
// steps equal 4 uninterrupted steps bit for bit: losses, weights AND running statistics
// (running_mean, running_var, num_batches_tracked). Each buffer is written once, by the stage that
// holds it (dp rank 0; tp: pipeline_buffers_checkpoint_tp.test.ts). The pp 2 checkpoint loads at pp 1, at another stage split and at dp 2:
// every buffer equals the saved one bit for bit, and re-saving gives the same checkpoint. A corrupt
// buffer slice is refused on every rank, naming it; a checkpoint without buffers (BatchNorm saved
// without running statistics) is refused naming the missing buffers, and loads with
// loadModuleStrict: false (the buffers keep their values), as DeepSpeed's load_module_strict.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { BUFFERS, buffersOnce, errors, launch, type Mesh, results, savedBuffers } from './buffers_checkpoint_runs.ts';
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

test('a corrupt buffer slice is refused on every rank; a checkpoint without buffers is refused by name, and loads with loadModuleStrict: false', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-buffers-'));
  try {
    await launch({ dp: 1, pp: 2 }, dir, 'save');
    const ck = path.join(dir, 'ck');
    const { tensors } = openCheckpoint(ck, 'global_step2');
    const slice = tensors.get('4.running_var')?.slices[0];
    assert.ok(slice, 'the buffer is saved');
    const fd = fs.openSync(slice.file, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, slice.entry.byteOffset);
    byte[0] ^= 0x40;
    fs.writeSync(fd, byte, 0, 1, slice.entry.byteOffset);
    fs.closeSync(fd);
    let errs = errors(await launch({ dp: 1, pp: 2 }, dir, 'refuse'));
    assert.is(errs.length, 2);
    assert.ok(errs.every((e) => e !== 'none'), `refused on every rank: ${errs}`);
    assert.ok(errs.some((e) => /checksum mismatch .* for tensor "4\.running_var"/.test(e)), `an error names the buffer: ${errs}`);

    // An old checkpoint: the same net with BatchNorm keeping no running statistics (no buffers).
    fs.rmSync(ck, { recursive: true, force: true });
    await launch({ dp: 1, pp: 2 }, dir, 'save', ['nostats']);
    errs = errors(await launch({ dp: 1, pp: 2 }, dir, 'refuse'));
    assert.is(errs.length, 2);
    for (const stage of [1, 4]) {
      assert.ok(errs.some((e) => e.includes(`has no module buffer "${stage}.running_mean", "${stage}.running_var", "${stage}.num_batches_tracked"`) && e.includes('loadModuleStrict: false')), `names layer ${stage}'s buffers: ${errs}`);
    }
    assert.ok(errs.every((e) => e !== 'none'), `refused on every rank: ${errs}`);
    const rs = results(await launch({ dp: 1, pp: 2 }, dir, 'reload', ['lax']));
    assert.is(rs.length, 2);
    for (const r of rs) {
      const b = r.buffers as Record<string, number[]>;
      const layer = r.rank === 0 ? 1 : 4;
      assert.ok(b[`${layer}.running_mean`].every((v) => v === 0) && b[`${layer}.running_var`].every((v) => v === 1), `rank ${r.rank}: fresh statistics kept`);
      assert.equal(b[`${layer}.num_batches_tracked`], [0]);
      assert.ok(r.losses.every(Number.isFinite) && r.globalSteps === 4, `rank ${r.rank}: trains on`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
