/**
 * The emulated device's thread schedules (MESHTRAIN_CUDA_EMU_SCHEDULE, native/cuda/emu/fibers.cc).
 * The default round robin moves a block's warps in lockstep from one warp collective to the next,
 * so it hides a buffer refilled with no barrier after another warp read it (refillRace: every
 * thread still reads the old value); `warps` and `warps-reverse` run one warp at a time up to its
 * next barrier and show it (a whole warp reads the refill). Refilled by cp.async
 * (asyncRefillRace), it shows under `warps-reverse`, where the refilling warp runs first and its
 * copies land when issued. An unknown schedule is a launch error naming the variable. Then the fused attention kernels give bit-identical outputs and gradients
 * under all three schedules: fa2 (attention_fa2*.cu, never run on a GPU yet) at GPT-2's instance
 * (bf16, head dim 64, causal, qkv thirds) and f16 at head dim 128, WMMA at GPT-2's; T 70, two
 * streamed tiles both ways, so every double buffer is refilled. Emulation build only (else one
 * SKIP line).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type AttnCase, caseName, type Family, familyValues } from '../../bench/attention_instances.ts';
import { native } from '../../src/index.ts';
import { withEnv } from '../helpers/env.ts';

const checks = (native as unknown as { cudaEmuChecks?: { run(name: string): string | number[] } }).cudaEmuChecks;
const SCHEDULES = ['threads', 'warps', 'warps-reverse'];

/** `fn` with MESHTRAIN_CUDA_EMU_SCHEDULE set (read at every launch), restored after. */
function withSchedule<R>(schedule: string, fn: () => R): R {
  return withEnv({ MESHTRAIN_CUDA_EMU_SCHEDULE: schedule }, fn);
}

if (!checks) {
  test('emulated thread schedules', () => {
    console.log('SKIP test/unit/cuda_emu_schedule: not the emulation build (MESHTRAIN_ADDON=build-emu/Release/meshtrain.node)');
  });
} else {
  /** The threads that read the refill (2) in a race scenario run under `schedule`. */
  const lateReaders = (scenario: string, schedule: string): number[] => {
    let got: string | number[];
    try {
      got = withSchedule(schedule, () => checks.run(scenario));
    } catch (e) {
      throw new Error(`${e}: an emulation build older than MESHTRAIN_CUDA_EMU_SCHEDULE? Rebuild build-emu (docs/gpu.md, "Emulated device")`);
    }
    assert.ok(Array.isArray(got) && got.length === 64, `${scenario} under ${schedule}: ${got}`);
    return (got as number[]).flatMap((x, t) => (x === 2 ? [t] : []));
  };
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

  test('a refill without a barrier: hidden by the default schedule, shown by warps and warps-reverse', () => {
    assert.equal(lateReaders('refillRace', 'threads'), [], 'the default schedule (lockstep warps) hides the race');
    assert.equal(lateReaders('refillRace', 'warps'), range(0, 32), 'warp 0 reads after warp 1 ran ahead and refilled');
    assert.equal(lateReaders('refillRace', 'warps-reverse'), range(32, 64), 'warp 1 reads after warp 0 ran ahead and refilled');
    // By cp.async: landing at the wait hides it (default); landing when issued shows it where warp 0 runs first.
    assert.equal(lateReaders('asyncRefillRace', 'threads'), []);
    assert.equal(lateReaders('asyncRefillRace', 'warps'), []);
    assert.equal(lateReaders('asyncRefillRace', 'warps-reverse'), range(32, 64));
    const bad = withSchedule('sideways', () => checks.run('refillRace'));
    assert.match(String(bad), /cudaErrorLaunchFailure.*MESHTRAIN_CUDA_EMU_SCHEDULE: unknown schedule 'sideways'/);
  });

  const CASES: AttnCase[] = [
    { layout: 'qkv', dtype: 'bf16', dim: 64, heads: 1, tq: 70, tk: 70, causal: true },
    { layout: 'dense', dtype: 'f16', dim: 128, heads: 1, tq: 70, tk: 70, causal: false },
  ];
  test('fa2 and WMMA attention, forward and backward: bit for bit under every schedule', () => {
    const started = performance.now();
    for (const [i, c] of CASES.entries()) {
      // WMMA (the default, already run on a GPU) at GPT-2's instance only: the emulated time budget.
      for (const family of (i === 0 ? ['fa2', 'tc'] : ['fa2']) as Family[]) {
        const [base, ...others] = SCHEDULES.map((s) => withSchedule(s, () => familyValues(c, family, i)));
        others.forEach((got, n) => {
          got.forEach((a, j) => {
            const k = a.findIndex((x, e) => !Object.is(x, base[j][e]));
            assert.is(k, -1, `${caseName(c)} ${family}, array ${j} (output, then input gradients): [${k}] is ${a[k]} under ${SCHEDULES[n + 1]}, ${base[j][k]} under threads`);
          });
        });
        assert.ok(base.every((a) => a.every(Number.isFinite)), `${caseName(c)} ${family}: not finite`);
      }
    }
    console.log(`  3 case/family pairs x ${SCHEDULES.length} schedules in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  });
}

test.run();
