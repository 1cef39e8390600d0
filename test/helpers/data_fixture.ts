/**
 * A user-style dataset and transform in their own TypeScript module, for the loader's worker
 * tests: workers rebuild them from their recipes (this file is loaded in worker threads, so it
 * imports only the addon-free data modules).
 */
import { type Dataset, sampleRng, type Transform } from '../../src/data/dataset.ts';
import type { NDArray } from '../../src/data/ndarray.ts';
import { portable } from '../../src/data/portable.ts';

/** Adds a random offset in [0, scale) to every value (a TypeScript transform run by workers). */
export function Jitter(scale: number): Transform<Float32Array, Float32Array> {
  const t: Transform<Float32Array, Float32Array> = (x, rng) => {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] + scale * rng.float();
    return out;
  };
  return portable(t, import.meta.url, 'Jitter', [scale]);
}

/** Record samples { x: f32 [4], img: f32 [2, 2, 2], y: label }; `failAt` makes get() throw there. */
export function recordDataset(opts: { length: number; jitter: Transform<Float32Array, Float32Array>; failAt?: number }): Dataset {
  const ds: Dataset = {
    length: opts.length,
    get(i, ctx) {
      if (i === opts.failAt) throw new Error(`corrupt record ${i}`);
      const x = opts.jitter(Float32Array.from([i, 2 * i, 3 * i, 4 * i]), sampleRng(i, ctx));
      const img: NDArray = { data: Float32Array.from({ length: 8 }, (_, k) => i + k / 8), shape: [2, 2, 2] };
      return { x, img, y: i % 3 };
    },
  };
  return portable(ds, import.meta.url, 'recordDataset', [opts]);
}

/** Samples [i] that count every read in `counter[0]` (shared memory, so reads in workers count too). */
export function countingDataset(length: number, counter: SharedArrayBuffer): Dataset {
  const count = new Int32Array(counter);
  const ds: Dataset = {
    length,
    get(i) {
      Atomics.add(count, 0, 1);
      return [i];
    },
  };
  return portable(ds, import.meta.url, 'countingDataset', [length, counter]);
}
