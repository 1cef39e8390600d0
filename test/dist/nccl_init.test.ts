/**
 * The nccl backend where NCCL cannot run (here: no GPU, no libnccl): initDistributed fails on
 * every rank at once with a message naming the ranks and what is missing, and no process is left
 * waiting; 'auto' falls back to shm; the launcher's --backend reaches the ranks. On a machine
 * where NCCL works (a GPU per rank) the failing cases print one SKIP line instead.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { initDistributed, isInitialized, ncclUnavailableReason } from '../../src/index.ts';
import { expectExit, runLauncher, runRanks } from './helpers.ts';

const why = ncclUnavailableReason();
const REASON = /no CUDA device|built without CUDA|missing libnccl|emulation build|predates the nccl backend/;

function lastJson(out: string): Record<string, unknown> {
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

if (why) {
  test('nccl: initDistributed fails on both of 2 real processes, naming the ranks and what is missing, without hanging', async () => {
    assert.match(why, REASON);
    const runs = await runRanks(2, 'nccl_init.ts', ['nccl'], { timeoutMs: 40_000 });
    for (const [rank, r] of runs.entries()) {
      expectExit(r, 3, `rank ${rank}`);
      const { error, ms } = lastJson(r.stdout) as { error: string; ms: number };
      assert.match(error, /^initDistributed\(\{ backend: 'nccl' \}\): NCCL cannot be used \(ranks 0,1: /);
      assert.match(error, REASON);
      assert.ok(ms < 15_000, `rank ${rank} took ${ms} ms to fail`);
    }
  });

  test('nccl: a world of one rejects initDistributed and leaves nothing initialized', async () => {
    let message = '';
    try {
      await initDistributed({ backend: 'nccl', rank: 0, worldSize: 1 });
    } catch (e) {
      message = (e as Error).message;
    }
    assert.match(message, /NCCL cannot be used \(rank 0: /);
    assert.is(isInitialized(), false);
  });

  test("auto: falls back to shm on CPU tensors (2 processes), and the launcher's --backend reaches the ranks", async () => {
    const runs = await runRanks(2, 'nccl_init.ts', ['auto'], { timeoutMs: 40_000 });
    for (const [rank, r] of runs.entries()) {
      expectExit(r, 0, `auto rank ${rank}`);
      assert.equal(lastJson(r.stdout), { backend: 'shm', device: 'cpu', sum: [3, 20] });
    }
    const viaLauncher = await runLauncher(['--num_procs', '2', '--backend', 'nccl'], 'nccl_init.ts', ['env'], { timeoutMs: 40_000 });
    assert.ok(viaLauncher.code !== 0 && !viaLauncher.timedOut, `launcher exit ${viaLauncher.code}\n${viaLauncher.stdout}\n${viaLauncher.stderr}`);
    assert.match(viaLauncher.stdout, /NCCL cannot be used/);
  });
} else {
  test('nccl set-up errors', () => {
    console.log('SKIP test/dist/nccl_init: NCCL is usable here (the failure paths need a machine without it)');
  });
}

test.run();
