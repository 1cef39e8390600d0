/**
 * The nccl backend's native plumbing without a GPU: on the emulated-device build
 * (MESHTRAIN_ADDON=<build>/Release/meshtrain.node built with -DMESHTRAIN_CUDA_EMU=ON) a stand-in
 * libnccl (test/helpers/fake_libnccl.c, compiled here) serves a world of one over host memory. A
 * child process runs every collective per dtype and reduce op, sync and async, the barrier,
 * mesh and newGroup sub-groups, and three failures; the stand-in's call log shows the dtype and
 * reduce-op codes, split vs init, the non-blocking config, and finalize/destroy/abort. Every
 * communicator is non-blocking, so every call returns ncclInProgress and the stand-in refuses
 * (and logs) any call made before the state was polled back to ncclSuccess: none may appear. The
 * same child against the stand-in built as NCCL 2.13 (no ncclCommInitRankConfig) covers the
 * blocking fallback. The emulator's events are always complete, so stream order and device-side
 * timeouts are the GPU test's job (cuda_nccl); here a stuck operation (the trap count 777) is what
 * the watchdog times out. Creation failures: cuda_nccl_create_emu. Other builds: one SKIP line.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/index.ts';
import { expectExit, runNode, runRanks } from '../dist/helpers.ts';

/** Compiles the stand-in into `dir` (as NCCL 2.13 with `old`). */
function buildFake(dir: string, old = false): void {
  execFileSync(cc!, ['-shared', '-fPIC', '-O1', ...(old ? ['-DFAKE_NCCL_2_13'] : []), '-o', path.join(dir, 'libnccl.so.2'), path.join(root, 'test/helpers/fake_libnccl.c')]);
}

interface Failure {
  message: string;
  ms: number;
}
/** What fixtures/nccl_emu.ts prints. */
interface EmuOut {
  backend: string;
  device: string;
  mismatches: string[];
  meshBackends: string[];
  checker: Failure;
  selfRecv: Failure;
  stuck: Failure;
  after: Failure;
  /** Stuck on the 779 trap (its abort takes 2 s), then another group stuck after it. */
  slow: Failure;
  next: Failure;
  peer: Failure;
  captured: Failure;
}

/** Runs fixtures/nccl_emu.ts against the stand-in in `dir`; returns its JSON, stderr and the call log. */
async function runEmuChild(dir: string): Promise<{ out: EmuOut; stderr: string; calls: string }> {
  const log = path.join(dir, 'calls.log');
  const r = await runNode([path.join(root, 'test/dist/fixtures/nccl_emu.ts')], {
    timeoutMs: 60_000, env: { MESHTRAIN_CUDA_LIB_PATH: dir, FAKE_NCCL_LOG: log, FAKE_NCCL_DIR: dir },
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(r.code === 0 && last.startsWith('{'), `child exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return { out: JSON.parse(last), stderr: r.stderr, calls: readFileSync(log, 'utf8') };
}

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
      buildFake(dir);
      const { out, stderr, calls } = await runEmuChild(dir);
      assert.is(out.backend, 'nccl');
      assert.is(out.device, 'cuda:0');
      assert.equal(out.mismatches, []);
      assert.equal(out.meshBackends, ['nccl', 'nccl', 'nccl']);
      assert.is(out.checker.message, 'no error', 'the collective checker (1 KiB of text all-gathered) agrees with itself');
      assert.match(out.selfRecv.message, /^nccl: recv from rank 0 on group 'lonely' \(rank 0 of 1, cuda:0\) failed: NCCL error 5 \(invalid usage/);
      assert.match(out.stuck.message, /allReduce\(sum\) on group 'stuck' \(rank 0 of 1, cuda:0\) timed out after 500 ms/);
      assert.ok(out.stuck.ms >= 450 && out.stuck.ms < 2500, `the stuck all-reduce failed after ${out.stuck.ms} ms`);
      assert.match(out.after.message, /cannot complete: allReduce\(sum\) on group 'stuck' .* timed out/);
      // An abort that takes 2 s (the stand-in's 779 trap) holds up neither its own caller nor the next group's timeout.
      assert.match(out.slow.message, /allReduce\(sum\) on group 'slow' .* timed out after 500 ms/);
      assert.match(out.next.message, /allReduce\(sum\) on group 'next' .* timed out after 500 ms/);
      for (const c of [out.slow, out.next]) assert.ok(c.ms >= 450 && c.ms < 1500, `a stuck all-reduce failed after ${c.ms} ms (its timeout 500, the other's abort 2000)`);
      // Seen by the watchdog's poll or by the next call's own state poll, whichever came first.
      assert.match(out.peer.message, /(NCCL reported an asynchronous error on group 'peer' |allReduce\(sum\) on group 'peer' .* failed: ).*NCCL error 6/);
      assert.ok(out.peer.ms < 1000, `the peer's error surfaced after ${out.peer.ms} ms`);
      assert.match(stderr, /meshtrain nccl watchdog: allReduce\(sum\) on group 'stuck'/);
      assert.match(out.captured.message, /^captureCudaGraph: the capture failed, nothing was kept: allReduce\(max\) on group 'world' .* inside captureCudaGraph \(capturing cuda:0\): collectives between ranks are not captured/);
      assert.not.match(calls, /allReduce comm=1 n=3 dt=7 op=2/, 'the refused all-reduce never reached NCCL');
      assert.match(calls, /allReduce comm=1 n=3 dt=7 op=0/, 'the world all-reduced after the refused capture');

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
      assert.is((calls.match(/^split parent=1 color=0 key=0 blocking=0 pending$/gm) ?? []).length, 4, 'three mesh axes and newGroup: ncclCommSplit, non-blocking');
      assert.is((calls.match(/^split done parent=1 comm=\d+$/gm) ?? []).length, 4, 'each split completed when polled');
      assert.is((calls.match(/^init comm=\d+ nranks=1 rank=0 blocking=0$/gm) ?? []).length, 6, 'the world and five fresh communicators: ncclCommInitRankConfig');
      // NCCL_CONFIG_INITIALIZER of a 2.18 header with blocking = 0 (48 bytes on x86-64), for every init and split.
      assert.is((calls.match(/^config size=48 version=21800 blocking=0 undef=1$/gm) ?? []).length, 10);
      assert.not.match(calls, /refused/, 'a call on a communicator whose previous call was still in progress');
      assert.match(calls, /^abort comm=\d+$/m);
      assert.match(calls, /\nfinalize comm=1\ndestroy comm=1\n$/, 'the world finalized, then destroyed, after the groups split from it');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the blocking fallback (a libnccl without ncclCommInitRankConfig, NCCL 2.13): ncclCommInitRank, fresh ids for sub-groups, the watchdog', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mt-fake-nccl-'));
    try {
      buildFake(dir, true);
      const { out, calls } = await runEmuChild(dir);
      assert.equal(out.mismatches, []);
      assert.equal(out.meshBackends, ['nccl', 'nccl', 'nccl']);
      assert.match(out.stuck.message, /allReduce\(sum\) on group 'stuck' \(rank 0 of 1, cuda:0\) timed out after 500 ms/);
      assert.match(out.peer.message, /NCCL reported an asynchronous error on group 'peer' .*NCCL error 6/);
      assert.is((calls.match(/^init comm=\d+ nranks=1 rank=0 blocking=1$/gm) ?? []).length, 10, 'world, 3 mesh axes, newGroup, 5 fresh: all ncclCommInitRank');
      // Blocking calls stuck inside NCCL: the 2 s abort of one holds up neither its caller nor the next group's timeout.
      for (const c of [out.slow, out.next]) assert.ok(/timed out after 500 ms/.test(c.message) && c.ms >= 450 && c.ms < 1500, `${c.message} after ${c.ms} ms`);
      assert.not.match(calls, /^(config|split|finalize) /m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('2 real processes: one emulated GPU for both is refused by name; with two, each rank gets its own and builds the world (blocking fallback: named in the error)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mt-fake-nccl-'));
    const old = mkdtempSync(path.join(tmpdir(), 'mt-fake-nccl-213-'));
    try {
      buildFake(dir);
      buildFake(old, true);
      for (const [devices, lib] of [[1, dir], [2, dir], [2, old]] as const) {
        const runs = await runRanks(2, 'nccl_init.ts', ['nccl'], {
          timeoutMs: 40_000, env: { MESHTRAIN_CUDA_LIB_PATH: lib, MESHTRAIN_CUDA_EMU_DEVICES: String(devices), FAKE_NCCL_DIR: lib },
        });
        for (const [rank, r] of runs.entries()) {
          const what = `${devices} device(s), ${lib === old ? 'NCCL 2.13' : 'NCCL 2.27'}, rank ${rank}`;
          const result = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { error?: string; device?: string; sum?: number[] };
          if (devices === 1) {
            expectExit(r, 3, what);
            assert.match(result.error ?? '', /ranks 0 and 1 would share the GPU emu:0 of host .*; NCCL cannot run two ranks on one GPU/);
          } else if (lib === old) {
            // The old stand-in serves worlds of one: both ranks got past the survey and the unique id.
            expectExit(r, 3, what);
            assert.match(result.error ?? '', new RegExp(`ncclCommInitRank \\(blocking: this libnccl has no ncclCommInitRankConfig, NCCL < 2\\.14\\) for group 'world' \\(rank ${rank} of 2, cuda:${rank}\\) failed: NCCL error 4`));
          } else {
            // Non-blocking: both ranks met in the stand-in's rendezvous; its all-reduce is a copy.
            expectExit(r, 0, what);
            assert.equal(result, { backend: 'nccl', device: `cuda:${rank}`, sum: [rank + 1, 10] } as typeof result);
          }
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(old, { recursive: true, force: true });
    }
  });
}

test.run();
