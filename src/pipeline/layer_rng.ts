/**
 * Dropout randomness in a pipeline that does not depend on the partition. Each stage runs on its
 * own process with its own generator, and micro-batches reach a layer in a schedule-dependent
 * order, so drawing from the running global generator gives masks that change with the layout.
 * Instead, layer i of micro-batch mb in batch k draws from a stream fixed by (seed, k, mb, i):
 * key seed + (k + 1)·2³², counters from (mb·layers + i)·2³². Any partition, schedule or
 * recomputation therefore draws the same masks, and a resumed run (globalSteps restored) draws
 * what the uninterrupted one would have. The keys lie above the ones a plain seed uses, so these
 * streams overlap neither the global generator's nor the tensor-parallel region's (seed + 2718 +
 * tp rank), which is derived from them.
 */
import type { RngState } from '../tensor/random.ts';

/** Counters one layer may draw for one micro-batch. */
export const LAYER_RNG_STRIDE = 2 ** 32;

/** Maps a layer's global index to the generator state its forward starts from. */
export type LayerRng = (layer: number) => RngState;

/**
 * The per-layer generator states of micro-batch `microbatch` in batch `batch`, for a model of
 * `layers` layers and `microbatches` micro-batches per batch, under the global seed `seed`.
 * @example
 * const rng = pipelineLayerRng(getRngState().seed, engine.globalSteps, 8)(mb, 12);
 * setRngState(rng(3));  // layer 3 of micro-batch mb draws the same mask on any partition
 */
export function pipelineLayerRng(seed: number, batch: number, microbatches: number): (microbatch: number, layers: number) => LayerRng {
  const key = seed + (batch + 1) * LAYER_RNG_STRIDE;
  if (!Number.isSafeInteger(key)) {
    throw new Error(`pipeline dropout: seed ${seed} with batch ${batch} gives generator key ${key}, beyond 2^53; use a seed below 2^32`);
  }
  return (microbatch, layers) => {
    if (microbatches * layers * LAYER_RNG_STRIDE > Number.MAX_SAFE_INTEGER) {
      throw new Error(`pipeline dropout: ${microbatches} micro-batches × ${layers} layers × 2^32 counters exceed 2^53`);
    }
    return (layer) => ({ seed: key, offset: (microbatch * layers + layer) * LAYER_RNG_STRIDE });
  };
}
