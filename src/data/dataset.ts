/**
 * Datasets: indexable collections of samples built from typed arrays. A sample's random
 * augmentation depends only on (seed, epoch, index), which the loader passes as a context, so
 * the in-process and the worker paths produce identical samples.
 */
import type { NDArray, TypedArray } from './ndarray.ts';
import { portable } from './portable.ts';
import { CounterRng, Stream } from './rng.ts';

/** One field of a sample: a label, a 1-D typed array or an n-dimensional array. */
export type Field = number | TypedArray | NDArray;

/** A sample: one field, a tuple of fields (`[image, label]`) or a record of fields (`{ x, y }`). */
export type Sample = Field | readonly Field[] | { readonly [key: string]: Field };

/** What the loader tells a dataset about the pass in progress. */
export interface SampleContext {
  /** The loader's seed. */
  seed: number;
  /** The epoch set with `setEpoch` (0 until then). */
  epoch: number;
}

/**
 * A map-style dataset: `length` samples, any of which `get(i)` returns.
 * To be used with `numWorkers > 0`, a dataset must be `portable` (the built-in ones are).
 * @example
 * const squares: Dataset<[Float32Array, number]> = {
 *   length: 100,
 *   get: (i) => [Float32Array.of(i), i * i],
 * };
 */
export interface Dataset<S extends Sample = Sample> {
  readonly length: number;
  get(index: number, ctx?: SampleContext): S;
}

/**
 * A per-sample transform: a pure function of its input and a generator that is seeded by
 * (seed, epoch, sample index). Built-in transforms are portable, so they run in workers.
 */
export type Transform<I = NDArray, O = NDArray> = (input: I, rng: CounterRng) => O;

export const DEFAULT_CONTEXT: SampleContext = { seed: 0, epoch: 0 };

/** The generator a transform of sample `index` draws from. */
export function sampleRng(index: number, ctx: SampleContext = DEFAULT_CONTEXT): CounterRng {
  return new CounterRng(ctx.seed, ctx.epoch, index, Stream.transform);
}

/** Checks an index against a dataset's length; `where` names the dataset in the error. */
export function checkIndex(index: number, length: number, where: string): void {
  if (!Number.isInteger(index) || index < 0 || index >= length) {
    throw new Error(`${where}: index ${index} is out of range for ${length} samples`);
  }
}

/**
 * A dataset whose samples are `fn(base.get(i), rng)`; it can go to workers when `base` and `fn` can.
 * @example
 * const flipped = mapDataset(base, ([img, y], rng) => [RandomHorizontalFlip()(img, rng), y]);
 */
export function mapDataset<S extends Sample, T extends Sample>(base: Dataset<S>, fn: Transform<S, T>): Dataset<T> {
  const ds: Dataset<T> = {
    length: base.length,
    get(index, ctx = DEFAULT_CONTEXT) {
      return fn(base.get(index, ctx), sampleRng(index, ctx));
    },
  };
  return portable(ds, import.meta.url, 'mapDataset', [base, fn]);
}
