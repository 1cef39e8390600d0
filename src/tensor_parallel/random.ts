/**
 * Dropout randomness across the tp group (Megatron's model-parallel RNG tracker). Inside a
 * tensor-parallel region each rank holds different values (its heads, its sequence slice), so
 * their dropout masks must differ; outside, the ranks hold the same values and must draw the
 * same masks. The global generator is identical on every tp rank, so "outside" needs nothing;
 * `withTensorParallelRng` runs a region on a per-rank stream.
 *
 * The per-rank stream is derived from the global state rather than kept beside it: the region
 * uses seed `seed + 2718 + tpRank` (Megatron's offset) at the global counter offset, and the
 * global offset then advances past what the region drew. Every tp rank draws the same number
 * of counters, so the global streams stay in step; and `checkpoint()`, which replays the global
 * state, replays the region's masks too.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { getRngState, setRngState } from '../tensor/random.ts';

/** Added to the seed, with the tp rank, for the per-rank stream (Megatron's 2718). */
export const TENSOR_PARALLEL_SEED_OFFSET = 2718;

let depth = 0;

/** The seed rank `tpRank` uses inside tensor-parallel regions when the global seed is `seed`. */
export function tensorParallelSeed(seed: number, tpRank: number): number {
  return seed + TENSOR_PARALLEL_SEED_OFFSET + tpRank;
}

/**
 * Runs `fn` with random ops drawing from this tp rank's stream; nested calls run on the
 * enclosing region's stream. Returns fn's result.
 * @example
 * const probs = withTensorParallelRng(tp, () => dropout(attnProbs, 0.1));   // heads differ per rank
 */
export function withTensorParallelRng<T>(group: ProcessGroup, fn: () => T): T {
  if (depth > 0 || group.size === 1) return fn();
  const base = getRngState();
  setRngState({ seed: tensorParallelSeed(base.seed, group.rank), offset: base.offset });
  depth++;
  try {
    return fn();
  } finally {
    depth--;
    setRngState({ seed: base.seed, offset: getRngState().offset });
  }
}
