/**
 * Communicator creation never hangs (issue 8): on the emulated-device build, 2 real processes
 * build nccl communicators through the stand-in libnccl (test/helpers/fake_libnccl.c), whose
 * knobs make ncclCommInitRankConfig or ncclCommSplit stay in progress forever, fail, or lose a
 * rank mid-call. Every rank must stop with an error naming the call, the group and its rank:
 * within the group's timeout (1.5 s) when NCCL hangs, at once when a peer process died (named by
 * rank and pid). Other builds: one SKIP line.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/index.ts';
import { type Run, runNode, runRanks } from '../dist/helpers.ts';

const root = path.resolve(import.meta.dirname, '../..');
const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0) ?? null;
const emulated = native.nccl?.emulated === true;
const TIMEOUT_MS = 1500;

interface Outcome {
  ok?: boolean;
  error?: string;
  phase: string;
  ms: number;
}

function outcome(r: Run, what: string): Outcome {
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (!last.startsWith('{')) throw new Error(`${what}: no result line (exit ${r.code}${r.timedOut ? ', timed out' : ''})\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(last) as Outcome;
}

/** Runs 2 ranks of fixtures/nccl_create.ts with the stand-in's knobs; returns each rank's run. */
async function ranks(mode: 'world' | 'split', knobs: Record<string, string>, timeoutMs = TIMEOUT_MS): Promise<Run[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mt-nccl-create-'));
  try {
    execFileSync(cc!, ['-shared', '-fPIC', '-O1', '-o', path.join(dir, 'libnccl.so.2'), path.join(root, 'test/helpers/fake_libnccl.c')]);
    return await runRanks(2, 'nccl_create.ts', [mode, String(timeoutMs)], {
      timeoutMs: 40_000,
      env: { MESHTRAIN_CUDA_LIB_PATH: dir, MESHTRAIN_CUDA_EMU_DEVICES: '2', FAKE_NCCL_DIR: dir, ...knobs },
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Both ranks failed (exit 3, not killed) in `phase`, each naming `call` and the group with its own rank. */
function bothFail(runs: Run[], phase: string, call: RegExp, within: number): Outcome[] {
  return runs.map((r, rank) => {
    const o = outcome(r, `rank ${rank}`);
    assert.is(r.timedOut, false, `rank ${rank} was killed at the test's timeout: it hung`);
    assert.is(r.code, 3, `rank ${rank}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.is(o.phase, phase);
    assert.match(o.error ?? '', call, `rank ${rank}: ${o.error}`);
    assert.ok(o.ms < within, `rank ${rank} failed after ${o.ms} ms (limit ${within})`);
    return o;
  });
}

if (!emulated || !cc) {
  test('nccl communicator creation on the emulated device', () => {
    console.log(`SKIP test/unit/cuda_nccl_create_emu: ${emulated ? 'no C compiler for the stand-in libnccl' : 'needs the emulated-device build (MESHTRAIN_ADDON, -DMESHTRAIN_CUDA_EMU=ON)'}`);
  });
} else {
  test('normal path: 2 ranks build the world non-blocking (InProgress, then polled to success) and split it', async () => {
    const runs = await ranks('split', {});
    for (const [rank, r] of runs.entries()) {
      assert.equal({ ...outcome(r, `rank ${rank}`), ms: 0 }, { ok: true, phase: 'split', ms: 0 }, r.stderr);
    }
  });

  test('one process in a group of 2 whose rank 1 never comes: fails at the timeout naming the missing rank, and the world still works', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mt-nccl-create-'));
    try {
      execFileSync(cc!, ['-shared', '-fPIC', '-O1', '-o', path.join(dir, 'libnccl.so.2'), path.join(root, 'test/helpers/fake_libnccl.c')]);
      const r = await runNode([path.join(root, 'test/dist/fixtures/nccl_init_abort.ts')], { timeoutMs: 30_000, env: { MESHTRAIN_CUDA_LIB_PATH: dir, FAKE_NCCL_DIR: dir } });
      const o = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { message: string; ms: number; after: number[] };
      assert.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.is(o.message, "nccl: ncclCommInitRankConfig for group 'pair' (rank 0 of 2, cuda:0) did not complete within 2000 ms: rank 1 never reached ncclCommInitRankConfig; the communicator was aborted");
      assert.ok(o.ms >= 2000 && o.ms < 3500, `failed after ${o.ms} ms`);
      assert.equal(o.after, [1, 2, 3]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('ncclCommInitRankConfig that never completes, or fails: every rank errors within the timeout (at once for a failure), naming the call and the group', async () => {
    // Both jobs at once (4 processes): the times asserted are measured inside each rank.
    const [runs, failing] = await Promise.all([ranks('world', { FAKE_NCCL_INIT: 'hang' }), ranks('world', { FAKE_NCCL_INIT: 'fail' })]);
    const outs = bothFail(runs, 'world', /^nccl: ncclCommInitRankConfig for group 'world' \(rank [01] of 2, cuda:[01]\) /, TIMEOUT_MS + 1500);
    for (const [rank, o] of outs.entries()) {
      assert.match(o.error ?? '', new RegExp(`group 'world' \\(rank ${rank} of 2, cuda:${rank}\\)`));
      // Its own deadline, or the peer's published failure, whichever came first.
      const why = /(did not complete within 1500 ms: every rank reached ncclCommInitRankConfig|cannot complete: rank [01] failed: .*did not complete)/;
      assert.ok(why.test(o.error ?? ''), `rank ${rank}: ${why} not in ${JSON.stringify(o.error)} (after ${o.ms} ms)`);
      assert.match(o.error ?? '', /the communicator was aborted$/);
    }
    const failed = bothFail(failing, 'world', /^nccl: ncclCommInitRankConfig for group 'world' \(rank [01] of 2, cuda:[01]\) /, TIMEOUT_MS);
    for (const o of failed) assert.match(o.error ?? '', /(failed: NCCL error 6 \(remote process exited|cannot complete: rank [01] failed: .*NCCL error 6)/);
  });

  test('a rank whose process dies inside ncclCommInitRankConfig: the other fails at once naming it, long before the timeout', async () => {
    const runs = await ranks('world', { FAKE_NCCL_EXIT_RANK: '1', FAKE_NCCL_EXIT_AT: 'init' }, 20_000);
    assert.is(runs[1].code, 9, `rank 1 should have died in the call (exit ${runs[1].code})\n${runs[1].stderr}`);
    const o = outcome(runs[0], 'rank 0');
    assert.is(runs[0].code, 3, runs[0].stderr);
    assert.match(o.error ?? '', /^nccl: ncclCommInitRankConfig for group 'world' \(rank 0 of 2, cuda:0\) cannot complete: rank 1 \(pid \d+\) died; the communicator was aborted$/);
    assert.ok(o.ms < 5000, `noticed after ${o.ms} ms (the timeout is 20 s)`);
  });

  test('ncclCommSplit that never completes, and one whose peer dies inside it: errors naming the split, the parent and the new group', async () => {
    const [hang, dead] = await Promise.all([
      ranks('split', { FAKE_NCCL_SPLIT: 'hang' }),
      ranks('split', { FAKE_NCCL_EXIT_RANK: '1', FAKE_NCCL_EXIT_AT: 'split' }, 20_000),
    ]);
    for (const o of bothFail(hang, 'split', /^nccl: ncclCommSplit of group 'world' \(rank [01] of 2, cuda:[01]\) into group 'half' /, TIMEOUT_MS + 1500)) {
      assert.match(o.error ?? '', /(did not complete within 1500 ms|cannot complete: rank [01] failed)/);
      assert.match(o.error ?? '', /the parent communicator was aborted$/);
    }
    assert.is(dead[1].code, 9, dead[1].stderr);
    const o = outcome(dead[0], 'rank 0');
    assert.match(o.error ?? '', /^nccl: ncclCommSplit of group 'world' \(rank 0 of 2, cuda:0\) into group 'half' cannot complete: rank 1 \(pid \d+\) died/);
    assert.ok(o.ms < 5000, `noticed after ${o.ms} ms (the timeout is 20 s)`);
  });
}

test.run();
