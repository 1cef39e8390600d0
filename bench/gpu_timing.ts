/**
 * Device timing for the GPU benchmarks: CUDA events recorded on the compute stream around a
 * group of calls (the device's time for the work queued between them), medians over rounds.
 * Falls back to a synchronized host clock where the addon has no event timer (older builds).
 */
import { cudaSynchronize, native } from '../src/index.ts';
import { median } from './timing.ts';

export const DEV = 'cuda:0';

/** Seconds the device spent on what `fn` queued, measured with events (or a synchronized host clock). */
export function deviceSeconds(fn: () => void): number {
  if (typeof native.cudaTimerStart !== 'function') {
    cudaSynchronize(DEV);
    const t0 = performance.now();
    fn();
    cudaSynchronize(DEV);
    return (performance.now() - t0) / 1000;
  }
  native.cudaTimerStart(0);
  fn();
  return native.cudaTimerStop(0) as number;
}

/** Median seconds per call of fn(i) over `rounds` groups of `iters` back-to-back calls, after `warmup` calls. */
export function timeDevice(iters: number, rounds: number, fn: (i: number) => void, warmup = 3): number {
  let i = 0;
  for (let w = 0; w < warmup; w++) fn(i++);
  cudaSynchronize(DEV);
  const t: number[] = [];
  for (let r = 0; r < rounds; r++) {
    t.push(
      deviceSeconds(() => {
        for (let k = 0; k < iters; k++) fn(i++);
      }) / iters,
    );
  }
  return median(t);
}

/** What the benchmark's parts report for the summary printed last. */
export interface BenchRow {
  part: string;
  status: 'ok' | 'skipped' | 'failed';
  /** The one number to read first (e.g. "ratio 0.97", "MFU 41.2%"), or the reason for a skip. */
  key: string;
}

/** Runs one part; a missing CUDA kernel or library makes it 'skipped' with the reason, other errors 'failed'. */
export function guarded(part: string, fn: () => string): BenchRow {
  try {
    return { part, status: 'ok', key: fn() };
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0].replace(/^skipped: /, '');
    const skip = /no CUDA kernel yet|built without CUDA|missing lib|not present|skipped:/.test(e instanceof Error ? e.message : String(e));
    console.log(`${part}: ${skip ? 'skipped' : 'FAILED'}: ${msg}`);
    if (!skip && e instanceof Error && e.stack) console.log(e.stack.split('\n').slice(1, 6).join('\n'));
    return { part, status: skip ? 'skipped' : 'failed', key: msg.slice(0, 100) };
  }
}
