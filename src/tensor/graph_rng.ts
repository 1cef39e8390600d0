/**
 * Random ops inside CUDA graphs. A random kernel's (seed, counter) are host values; baked into a
 * captured launch, every replay would draw the same numbers. So, as PyTorch's graph-safe Philox
 * does, each CUDA device has a generator base in device memory ({seed, offset}, two u64): a random
 * op queued during a capture passes the base and its counter relative to where the capture began,
 * and each replay first queues one tiny kernel writing the host generator's state into the base,
 * then advances the host generator by what the captured step consumed. Replays thus draw exactly
 * what eager steps would, and random ops after them continue the same sequence.
 *
 * The capture itself consumes nothing (nothing runs): the host generator is back where it was.
 * Inside a capture the generator may move within the capture's own sequence (checkpoint's
 * recomputation rewinds it), but not to another seed (tensor-parallel or pipeline dropout
 * streams): such a random op is refused, naming it.
 */
import { native } from '../native.ts';
import { graphCaptureDevice, type ReplayPrologue, refuseInCapture } from './capture_state.ts';
import { getRngState, setRngState, takeCounters } from './random.ts';
import { keep } from './scope.ts';
import type { Device } from './storage.ts';
import { Tensor } from './tensor.ts';

/** Counters for one random op: `base` set means `offset` is relative to the device's generator base. */
export interface DeviceCounters {
  seed: number;
  offset: number;
  base: Tensor | null;
}

interface Capture {
  device: Device;
  seed: number;
  start: number;
  base: Tensor;
}

const bases = new Map<Device, Tensor>();
let capture: Capture | null = null;

/** Test hook: when true, replays skip writing the base (they would repeat the previous replay's numbers). */
export const graphRngTesting = { skipBaseWrite: false };

/** The device's generator base: 2 x i64 tagged 'other', made once, outside any capture (never a graph pool's block). */
function baseOf(device: Device): Tensor {
  let b = bases.get(device);
  if (b === undefined || b.disposed) {
    b = keep(Tensor.empty([2], { dtype: 'i64', device, tag: 'other', zero: true }));
    bases.set(device, b);
  }
  return b;
}

/**
 * Reserves `n` counters for a random op writing on `device`. Outside a capture: the host
 * generator's (seed, offset), as takeCounters. Inside one, on its device: the offset relative to
 * the capture's start and the base the kernel adds it to. Elsewhere (the CPU, another device):
 * refused, as takeCounters refuses.
 */
export function takeDeviceCounters(n: number, device: Device): DeviceCounters {
  const capturing = graphCaptureDevice();
  if (capturing === null || device === 'cpu' || capture === null) return { ...takeCounters(n), base: null };
  if (typeof native.cuda?.randomSetBase !== 'function') {
    throw new Error(`a random op inside captureCudaGraph (capturing ${capturing}): this addon predates random ops in graphs (no cuda.randomSetBase); rebuild it (npm run build)`);
  }
  if (device !== capturing) {
    throw new Error(`a random op on ${device} inside captureCudaGraph (capturing ${capturing}): only the captured device's random ops are replayed`);
  }
  const s = getRngState();
  if (s.seed !== capture.seed || s.offset < capture.start) {
    throw new Error(
      `a random op inside captureCudaGraph (capturing ${capturing}) under generator state {seed ${s.seed}, offset ${s.offset}}, not the capture's sequence (seed ${capture.seed} from offset ${capture.start}): tensor-parallel and pipeline dropout streams are not replayed; run them eagerly`,
    );
  }
  setRngState({ seed: s.seed, offset: s.offset + n });
  return { seed: s.seed, offset: s.offset - capture.start, base: capture.base };
}

/** Internal (cuda_graph.ts): before cudaGraphBegin — notes the generator state and makes the device's base. */
export function beginGraphRng(device: Device): void {
  if (capture !== null) throw new Error(`captureCudaGraph: a capture on ${capture.device} is still open`);
  refuseInCapture('captureCudaGraph', 'captures do not nest');
  const base = baseOf(device);
  const s = getRngState();
  capture = { device, seed: s.seed, start: s.offset, base };
}

/**
 * Internal (cuda_graph.ts): at the capture's end — the counters one replay consumes. The host
 * generator returns to the capture's start (nothing ran); throws when it left the capture's sequence.
 */
export function endGraphRng(): number {
  const c = capture;
  if (c === null) throw new Error('captureCudaGraph: no capture is open');
  capture = null;
  const s = getRngState();
  setRngState({ seed: c.seed, offset: c.start });
  if (s.seed !== c.seed || s.offset < c.start) {
    throw new Error(
      `the generator ended the capture at {seed ${s.seed}, offset ${s.offset}}, outside the capture's sequence (seed ${c.seed} from offset ${c.start}); restore it inside the captured function`,
    );
  }
  return s.offset - c.start;
}

/** Internal (cuda_graph.ts): a failed capture; the host generator returns to where it was. */
export function abortGraphRng(): void {
  const c = capture;
  capture = null;
  if (c !== null) setRngState({ seed: c.seed, offset: c.start });
}

/**
 * Internal (cuda_graph.ts): the replay prologue (capture_state.ts) of a graph whose random ops
 * consume `consumed` counters: it checks the device's base, then queues the host generator's
 * state into it and advances the generator by `consumed`, as the eager step would have.
 */
export function rngReplayPrologue(device: Device, consumed: number): ReplayPrologue {
  return () => {
    const base = bases.get(device);
    if (base === undefined || base.disposed) throw new Error(`CudaGraph.replay: ${device}'s generator base, which the graph's random ops read, was disposed`);
    return () => {
      const s = getRngState();
      if (!graphRngTesting.skipBaseWrite) native.cuda.randomSetBase(base.id, base.offset, s.seed, s.offset);
      takeCounters(consumed);
    };
  };
}
