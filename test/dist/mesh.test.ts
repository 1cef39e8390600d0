import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  cleanupStaleSegments, DeviceMesh, destroyDistributed, formatMesh, getRank, getWorldSize, initDistributed, memoryStats, tensor, zeros,
} from '../../src/index.ts';

test('mesh: the rank grid is drawn with tp fastest, then dp, then pp', () => {
  assert.is(formatMesh({ pp: 2, dp: 2, tp: 2 }, 5), [
    'DeviceMesh pp=2 x dp=2 x tp=2 (8 ranks; tp varies fastest, then dp, then pp)',
    'pp 0:     tp0 tp1',
    '  dp 0      0   1',
    '  dp 1      2   3',
    'pp 1:     tp0 tp1',
    '  dp 0      4  *5',
    '  dp 1      6   7',
  ].join('\n'));
  assert.match(formatMesh({ pp: 1, dp: 2, tp: 4 }), /dp 1 {6}4 {3}5 {3}6 {3}7$/m);
});

test('mesh and groups: a world of one process needs no launcher; sizes are checked', async () => {
  const world = await initDistributed({ timeoutMs: 5000 });
  try {
    assert.equal([getRank(), getWorldSize(), world.size, world.toString()], [0, 1, 1, "group 'world' (ranks 0)"]);
    const mesh = await DeviceMesh.init({});
    assert.equal(mesh.coords(0), { pp: 0, dp: 0, tp: 0 });
    const t = tensor([1, 2, 3]);
    mesh.group('tp').allReduce(t, 'avg');
    assert.equal(t.toList(), [1, 2, 3]);
    const out = zeros([3]);
    world.allGather(out, t, { async: true }).wait();
    assert.equal(out.toList(), [1, 2, 3]);
    await assert.throws(() => world.allGather(zeros([4]), t), /allGather on group 'world' \(ranks 0\): the output must have 1 \(ranks\) x 3 \(input elements\) = 3 elements, got 4/);
    let msg = '';
    await DeviceMesh.init({ dp: 2, tp: 2 }).catch((e: Error) => (msg = e.message));
    assert.match(msg, /pp 1 x dp 2 x tp 2 = 4, but the world has 1 ranks/);
    assert.ok(memoryStats().cpu.comm.current > 0, 'staging is counted under the comm tag');
    mesh.destroy();
  } finally {
    await destroyDistributed();
  }
});

test('shm: segments of dead processes are removed at start-up, live ones are kept', () => {
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;      // a pid that has exited
  const stale = `/dev/shm/mtshm.testjob.c0.0.${dead}`;
  const live = `/dev/shm/mtshm.testjob.c0.1.${process.pid}`;
  fs.writeFileSync(stale, 'x');
  fs.writeFileSync(live, 'x');
  try {
    assert.ok(cleanupStaleSegments() >= 1);
    assert.not.ok(fs.existsSync(stale), 'the dead process\'s segment is gone');
    assert.ok(fs.existsSync(live), 'a live process\'s segment stays');
  } finally {
    fs.rmSync(stale, { force: true });
    fs.rmSync(live, { force: true });
  }
});

test.run();
