/**
 * Device time of one op's kernels with the host's cost hidden: a spin kernel holds the compute
 * stream while the host queues a round of back-to-back calls, and the CUDA events around the
 * round start only when the spin ends, so they time the kernels (and the device's gaps between
 * them), not how fast the host issued them. A round whose issue outlasted the spin is reported
 * (`hostBoundRounds`) and the next round spins longer. Without a spin kernel (the emulated device,
 * older addons) the events simply follow the host.
 */
import { cudaSynchronize, native } from '../src/index.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { median } from './timing.ts';

type Spin = (dev: number, microseconds: number) => void;

/** nccl.spin (native/cuda/spin.cu) of a real CUDA build; undefined on the emulated device. */
function spinKernel(): Spin | undefined {
  const s = (native.nccl as { spin?: Spin } | undefined)?.spin;
  return typeof s === 'function' ? s : undefined;
}

export interface KernelTime {
  /** Median device seconds per call. */
  seconds: number;
  /** Host microseconds per call, as queued (median of the rounds). */
  hostUs: number;
  /** Rounds whose queuing outlasted their spin (their device time may include host gaps). */
  hostBoundRounds: number;
  /** Whether a spin kernel hid the host's cost at all. */
  spun: boolean;
}

/** Median over `rounds` of the device seconds per call of `iters` back-to-back calls of fn, after `warmup` calls. */
export function timeKernels(fn: () => void, o: { iters: number; rounds: number; warmup: number }): KernelTime {
  let warmUs = 200;
  for (let w = 0; w < o.warmup; w++) {
    const t0 = performance.now();
    fn();
    warmUs = Math.min(w === 0 ? Number.POSITIVE_INFINITY : warmUs, (performance.now() - t0) * 1e3);
  }
  cudaSynchronize(DEV);
  const spin = spinKernel();
  // Each spin covers twice the host's time for a round (from the fastest warm-up call first, then as
  // measured), at most 0.2 s: a round that still outlasts it is flagged.
  const cap = 200_000;
  let spinUs = Math.min(cap, 2 * warmUs * o.iters + 500);
  const dev: number[] = [];
  const host: number[] = [];
  let hostBoundRounds = 0;
  for (let r = 0; r < o.rounds; r++) {
    spin?.(0, spinUs);
    let hostSec = 0;
    dev.push(
      deviceSeconds(() => {
        const t0 = performance.now();
        for (let k = 0; k < o.iters; k++) fn();
        hostSec = (performance.now() - t0) / 1000;
      }) / o.iters,
    );
    host.push((hostSec * 1e6) / o.iters);
    if (spin && hostSec * 1e6 > spinUs) hostBoundRounds++;
    spinUs = Math.min(cap, Math.max(spinUs, 2 * hostSec * 1e6 + 200));
  }
  return { seconds: median(dev), hostUs: median(host), hostBoundRounds, spun: spin !== undefined };
}
