/**
 * Runtime calls per device op, counted by the emulated CUDA runtime (native.cudaEmuApiCounts,
 * emulation build only): after its warm-up steps a bf16 GPT engine step (2 layers, T 16, batch 2,
 * width 64 in one head: head dim 64 so attention takes cuDNN, by default, AdamW at ZeRO 0) makes no runtime call
 * that is constant across steps: no cudaGetDevice/cudaSetDevice (cudaUseDevice keeps a per-thread
 * copy), no cudaFuncSetAttribute (set once per device and kernel), no event made or destroyed, no
 * cudaMalloc; one launch per kernel the census counts, at most one cudaGetLastError per launch, at
 * most one cudaEventQuery (the device-decided step's check that the last decision has come back).
 * Also: streamWaitStream reuses one event per stream. Anywhere else: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptEngineStep } from '../../bench/gpu_census_gpt.ts';
import { censusTotals, cudaCensus, cudaIsAvailable, cudaSynchronize, destroyDistributed, initDistributed, native } from '../../src/index.ts';

type Counts = Record<string, number>;
const apiCounts = (native as unknown as { cudaEmuApiCounts?: (reset?: boolean) => Counts }).cudaEmuApiCounts;

/** Calls per entry point made by fn. */
function countCalls(count: (reset?: boolean) => Counts, fn: () => void): Counts {
  count(true);
  fn();
  return Object.fromEntries(Object.entries(count()).filter(([, n]) => n > 0));
}

if (!apiCounts || !cudaIsAvailable()) {
  test('runtime calls per op', () => {
    console.log('SKIP test/unit/cuda_api_calls: needs the emulation build (native.cudaEmuApiCounts; cuda_emu.test.ts runs it so)');
  });
} else {
  test.before(async () => {
    await initDistributed({ timeoutMs: 30_000 });
  });
  test.after(async () => {
    await destroyDistributed();
  });

  test('a GPT engine step makes no per-op runtime call that could be made once', async () => {
    const s = await gptEngineStep({ layers: 2, seq: 16, nEmbd: 64, nHead: 1 });
    try {
      for (let k = 0; k < 2; k++) s.step(); // optimizer state, plans, kernel attributes
      cudaSynchronize(s.device);
      let totals = censusTotals([]);
      const calls = countCalls(apiCounts, () => {
        totals = censusTotals(cudaCensus(() => s.step()).entries);
      });
      const show = JSON.stringify(calls);
      assert.ok(totals.kernel + totals.library > 50, `the step launched ${totals.kernel} kernels and ${totals.library} library calls`);
      assert.is(calls.cudaLaunchKernel, totals.kernel, `one launch per kernel the census counts: ${show}`);
      for (const fn of [
        'cudaGetDevice', 'cudaSetDevice', 'cudaFuncSetAttribute', 'cudaEventCreate', 'cudaEventCreateWithFlags', 'cudaEventDestroy',
        'cudaStreamCreateWithFlags', 'cudaMalloc', 'cudaFree', 'cudaStreamQuery', 'cudaDeviceSynchronize',
      ]) {
        assert.is(calls[fn] ?? 0, 0, `${fn} in a warm step: ${show}`);
      }
      // One per step, not per op: the device-decided step asks whether the last step's decision has come back (readLaterTake).
      assert.ok((calls.cudaEventQuery ?? 0) <= 1, `cudaEventQuery in a warm step: ${show}`);
      assert.ok((calls.cudaGetLastError ?? 0) <= totals.kernel, `at most one cudaGetLastError per launch: ${show}`);
    } finally {
      s.dispose();
    }
  });

  test('streamWaitStream reuses one event per stream', () => {
    const hostBench = (native as unknown as { cuda: { hostBench: { loop(dev: number, name: string, n: number): number } } }).cuda.hostBench;
    hostBench.loop(0, 'streamWaitStream', 1); // the first wait on the stream makes its event
    const calls = countCalls(apiCounts, () => hostBench.loop(0, 'streamWaitStream', 5));
    const show = JSON.stringify(calls);
    assert.is(calls.cudaEventRecord, 5, show);
    assert.is(calls.cudaStreamWaitEvent, 5, show);
    assert.is(calls.cudaEventCreateWithFlags ?? 0, 0, show);
    assert.is(calls.cudaEventDestroy ?? 0, 0, show);
  });
}

test.run();
