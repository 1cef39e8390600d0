// Pipeline checkpoints and module buffers, refusals (fixtures/pipeline_buffers_checkpoint.ts, pp 2): a
// corrupt buffer slice is refused on every rank, naming it; a checkpoint without buffers (the net
// saved with BatchNorm keeping no running statistics) is refused on every rank naming each missing
// buffer, and loads with loadModuleStrict: false (the buffers keep their values; training goes on),
// as DeepSpeed's load_module_strict.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { errors, launch, results } from './buffers_checkpoint_runs.ts';

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
