/**
 * The nccl backend's native plumbing without a GPU: on the emulated-device build
 * (MESHTRAIN_ADDON=<build>/Release/meshtrain.node built with -DMESHTRAIN_CUDA_EMU=ON) a stand-in
 * libnccl (test/helpers/fake_libnccl.c, compiled here) serves a world of one over host memory. A
 * child process runs every collective per dtype and reduce op, sync and async, the barrier,
 * mesh and newGroup sub-groups, and three failures; the stand-in's call log shows the dtype and
 * reduce-op codes, split vs init, and finalize/destroy/abort. The emulator's events are always
 * complete, so stream order and device-side timeouts are the GPU test's job (cuda_nccl); here a
 * stuck enqueue (the trap count 777) is what the watchdog times out. Other builds: one SKIP line.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/index.ts';
import { expectExit, runNode, runRanks } from '../dist/helpers.ts';

const root = path.resolve(import.meta.dirname, '../..');
const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0) ?? null;
const emulated = native.nccl?.emulated === true;

if (!emulated || !cc) {
  test('nccl on the emulated device', () => {
    console.log(`SKIP test/unit/cuda_nccl_emu: ${emulated ? 'no C compiler for the stand-in libnccl' : 'needs the emulated-device build (MESHTRAIN_ADDON, -DMESHTRAIN_CUDA_EMU=ON)'}`);
  });
} else {
  test('every collective, sub-groups and the watchdog through the stand-in libnccl', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mt-fake-nccl-'));
    try {
      execFileSync(cc, ['-shared', '-fPIC', '-O1', '-o', path.join(dir, 'libnccl.so.2'), path.join(root, 'test/helpers/fake_libnccl.c')]);
      const log = path.join(dir, 'calls.log');
      const r = await runNode([path.join(root, 'test/dist/fixtures/nccl_emu.ts')], {
        timeoutMs: 60_000, env: { MESHTRAIN_CUDA_LIB_PATH: dir, FAKE_NCCL_LOG: log },
      });
      const last = r.stdout.trim().split('\n').pop() ?? '';
      assert.ok(r.code === 0 && last.startsWith('{'), `child exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      const out = JSON.parse(last);
      assert.is(out.backend, 'nccl');
      assert.is(out.device, 'cuda:0');
      assert.equal(out.mismatches, []);
      assert.equal(out.meshBackends, ['nccl', 'nccl', 'nccl']);
      assert.is(out.checker.message, 'no error', 'the collective checker (1 KiB of text all-gathered) agrees with itself');
      assert.match(out.selfRecv.message, /^nccl: recv from rank 0 on group 'lonely' \(rank 0 of 1, cuda:0\) failed: NCCL error 5 \(invalid usage/);
      assert.match(out.stuck.message, /allReduce\(sum\) on group 'stuck' \(rank 0 of 1, cuda:0\) timed out after 500 ms/);
      assert.ok(out.stuck.ms >= 450 && out.stuck.ms < 2500, `the stuck all-reduce failed after ${out.stuck.ms} ms`);
      assert.match(out.after.message, /cannot complete: allReduce\(sum\) on group 'stuck' .* timed out/);
      assert.match(out.peer.message, /NCCL reported an asynchronous error on group 'peer' .*NCCL error 6/);
      assert.ok(out.peer.ms < 1000, `the peer's error surfaced after ${out.peer.ms} ms`);
      assert.match(r.stderr, /meshtrain nccl watchdog: allReduce\(sum\) on group 'stuck'/);

      const calls = readFileSync(log, 'utf8');
      // dtype codes: f32 7, f64 8, bf16 9, f16 6, i32 2, i64 4; ops: sum 0, avg 4, max 2, min 3.
      for (const [dt, code] of [['f32', 7], ['f64', 8], ['bf16', 9], ['f16', 6], ['i32', 2], ['i64', 4]] as const) {
        assert.match(calls, new RegExp(`allReduce comm=1 n=101 dt=${code} op=0 inplace=1`), `${dt} sum`);
        assert.match(calls, new RegExp(`reduceScatter comm=1 n=64 dt=${code} op=3`), `${dt} min`);
        assert.match(calls, new RegExp(`reduce comm=1 n=64 dt=${code} op=2 root=0`), `${dt} max`);
      }
      for (const code of [7, 8, 9, 6]) assert.match(calls, new RegExp(`allReduce comm=1 n=101 dt=${code} op=4`));
      assert.not.match(calls, /allReduce comm=1 n=101 dt=[24] op=4/);
      assert.match(calls, /allReduce comm=1 n=1 dt=7 op=0 inplace=1/, 'the barrier');
      assert.match(calls, /allGather comm=6 n=256 dt=2/, 'the checker: 1 KiB as 256 i32 per rank');
      assert.is((calls.match(/^split parent=1 color=0 key=0 comm=\d+$/gm) ?? []).length, 4, 'three mesh axes and newGroup: ncclCommSplit');
      assert.is((calls.match(/^init comm=\d+$/gm) ?? []).length, 4, 'the world and three fresh communicators: ncclCommInitRank');
      assert.match(calls, /^abort comm=\d+$/m);
      assert.match(calls, /\nfinalize comm=1\ndestroy comm=1\n$/, 'the world finalized, then destroyed, after the groups split from it');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('2 real processes: one emulated GPU for both is refused by name; with two, each rank gets its own and reaches ncclCommInitRank', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mt-fake-nccl-'));
    try {
      execFileSync(cc, ['-shared', '-fPIC', '-O1', '-o', path.join(dir, 'libnccl.so.2'), path.join(root, 'test/helpers/fake_libnccl.c')]);
      for (const devices of [1, 2]) {
        const runs = await runRanks(2, 'nccl_init.ts', ['nccl'], {
          timeoutMs: 40_000, env: { MESHTRAIN_CUDA_LIB_PATH: dir, MESHTRAIN_CUDA_EMU_DEVICES: String(devices) },
        });
        for (const [rank, r] of runs.entries()) {
          expectExit(r, 3, `${devices} device(s), rank ${rank}`);
          const { error } = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { error: string };
          if (devices === 1) {
            assert.match(error, /ranks 0 and 1 would share the GPU emu:0 of host .*; NCCL cannot run two ranks on one GPU/);
          } else {
            // The stand-in serves worlds of one: both ranks got past the survey and the unique id.
            assert.match(error, new RegExp(`ncclCommInitRank for group 'world' \\(rank ${rank} of 2, cuda:${rank}\\) failed: NCCL error 4`));
          }
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
