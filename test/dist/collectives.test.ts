import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher, segments } from './helpers.ts';

// One job per world size runs every collective x dtype x sync/async (fixtures/collectives.ts).
for (const np of [2, 3, 4, 8]) {
  test(`collectives: every op, dtype and size on ${np} ranks${np === 8 ? ', and a 2x2x2 mesh' : ''}`, async () => {
    const job = `ct${np}x${process.pid}`;
    const r = await runLauncher(['--num_procs', String(np)], 'collectives.ts', [], { timeoutMs: 120_000, env: { MESHTRAIN_JOB_ID: job } });
    expectExit(r, 0, `collectives on ${np} ranks`);
    const passes = r.stdout.match(/^\[rank \d+\] PASS \d+$/gm) ?? [];
    assert.is(passes.length, np, 'every rank passed');
    if (np === 8) assert.match(r.stdout, /\[rank 0\] DeviceMesh pp=2 x dp=2 x tp=2/);
    assert.not.match(r.stderr, /segments? that ranks of this job left/, 'ranks unlinked their segments themselves');
    assert.equal(segments().filter((f) => f.includes(job)), []);
  });
}

test('collectives: a rank killed mid-collective fails the others fast and the launcher names it', async () => {
  const job = `crash${process.pid}`;
  const r = await runLauncher(['--num_procs', '3'], 'crash.ts', ['2'], { timeoutMs: 60_000, env: { MESHTRAIN_JOB_ID: job } });
  expectExit(r, 137, 'crash job');
  assert.match(r.stderr, /meshtrain: rank 2 \(pid \d+\) was killed by SIGKILL; stopping the other 2 ranks/);
  assert.ok(r.ms < 30_000, `done in ${r.ms} ms, well within the 60 s collective timeout`);
  assert.not.match(r.stderr, /segments? that ranks of this job left/);
  assert.equal(segments().filter((f) => f.includes(job)), []);
});

test('collectives: survivors of a killed rank get an error naming it (no launcher to stop them)', async () => {
  // The launcher stops survivors at once; here they run on: the test serves the store itself.
  const { runRanks } = await import('./helpers.ts');
  const job = `crash2${process.pid}`;
  const rs = await runRanks(3, 'crash.ts', ['1'], { timeoutMs: 60_000, env: { MESHTRAIN_JOB_ID: job } });
  assert.is(rs[1].signal, 'SIGKILL');
  for (const k of [0, 2]) {
    assert.is(rs[k].code, 3, rs[k].stdout + rs[k].stderr);
    const m = /FAILED after (\d+) ms: (.*)/.exec(rs[k].stdout);
    assert.ok(m, rs[k].stdout);
    assert.ok(Number(m![1]) < 10_000, `noticed in ${m![1]} ms`);
    assert.match(m![2], /allReduce \(collective #\d+\) on group 'world' \(ranks 0-2\)/);
    assert.match(m![2], /rank 1 \(pid \d+\) died|failed because rank \d failed: .*rank 1 \(pid \d+\) died/);
  }
  assert.equal(segments().filter((f) => f.includes(job)), [], 'no segment left after the crash');
});

test('collectives: timeouts name the collective, the group and the rank that did not arrive (or did not send)', async () => {
  const r = await runLauncher(['--num_procs', '3'], 'timeout.ts', ['1'], { timeoutMs: 60_000 });
  expectExit(r, 3, 'timeout job');
  for (const k of [0, 2]) {
    const m = new RegExp(`\\[rank ${k}\\] FAILED after (\\d+) ms: (.*)`).exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.ok(Number(m![1]) >= 1400 && Number(m![1]) < 8000, `timed out after ${m![1]} ms`);
    assert.match(m![2], /allReduce \(collective #2\) on group 'world' \(ranks 0-2\) timed out after \d+ ms \(the timeout is 1500 ms\): rank 1 of the group did not arrive; rank 1 last entered #1 \(barrier\)/);
  }
  assert.match(r.stdout, /\[rank 0\] RECV FAILED after \d+ ms: recv from rank 1 \(global 2\) on group 'pair' \(global ranks 0,2\) timed out after \d+ ms waiting for rank 1 \(global 2\) to send \(the timeout is 800 ms\)/);
});

test('collectives: a mismatched collective is reported with both ranks (and call sites when checking)', async () => {
  const checked = await runLauncher(['--num_procs', '2'], 'mismatch.ts', [], { timeoutMs: 60_000, env: { MESHTRAIN_CHECK_COLLECTIVES: '1' } });
  expectExit(checked, 0, 'checked mismatch');
  assert.match(checked.stdout, /\[rank 0\] FAILED: collective mismatch on group 'world' \(ranks 0,1\): rank 0 \(this rank\) called allReduce\(sum\) of \[4, 5\] f32 at test\/dist\/fixtures\/mismatch\.ts:9:\d+ \(collective #2 of this group\), but rank 1 called allGather of \[8\] f32 into \[16\] f32 at test\/dist\/fixtures\/mismatch\.ts:10:\d+/);
  assert.match(checked.stdout, /\[rank 1\] FAILED: collective mismatch .* rank 1 \(this rank\) called allGather/);
  const plain = await runLauncher(['--num_procs', '2'], 'mismatch.ts', [], { timeoutMs: 60_000, env: { MESHTRAIN_CHECK_COLLECTIVES: '0' } });
  expectExit(plain, 0, 'unchecked mismatch');
  assert.match(plain.stdout, /\[rank 0\] FAILED: collective mismatch on group 'world' \(ranks 0,1\) at collective #2: rank 0 \(this rank\) called allReduce\(sum\) of 20 f32 elements, but rank 1 called allGather of 8 f32 elements/);
});

test.run();
