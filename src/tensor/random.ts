/**
 * The global counter-based generator. A random op of n elements takes the counter range
 * [offset, offset + n) and advances the offset by n; element i of the result depends only on
 * (seed, offset + i), so a shard can generate exactly its slice of a full tensor's values.
 */
import { refuseInCapture } from './capture_state.ts';

export interface RngState {
  seed: number;
  offset: number;
}

const state: RngState = { seed: 0, offset: 0 };

/**
 * Seeds the generator; the same seed gives the same weights, whatever the parallel layout.
 * @example
 * manualSeed(1234);
 */
export function manualSeed(seed: number): void {
  refuseInCapture('manualSeed', 'the seed would be set once, at capture, not at each replay; seed before capturing');
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`manualSeed: seed must be a non-negative integer, got ${seed}`);
  state.seed = seed;
  state.offset = 0;
}

export function getRngState(): RngState {
  return { ...state };
}

export function setRngState(s: RngState): void {
  if (!Number.isSafeInteger(s.seed) || !Number.isSafeInteger(s.offset)) throw new Error('setRngState: seed and offset must be integers');
  state.seed = s.seed;
  state.offset = s.offset;
}

/**
 * Reserves `n` counters and returns (seed, first counter). Refused inside a CUDA graph capture:
 * random ops on the captured device take theirs from takeDeviceCounters (graph_rng.ts).
 */
export function takeCounters(n: number): { seed: number; offset: number } {
  refuseInCapture(
    'a random op (dropout, rand, randn)',
    "it would draw its numbers once, not at each replay; only dropout and rand on the captured CUDA device are replayed with fresh numbers (normal samples and CPU random ops are drawn on the host): run it before the capture",
  );
  const out = { seed: state.seed, offset: state.offset };
  state.offset += n;
  return out;
}
