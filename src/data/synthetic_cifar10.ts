/**
 * A deterministic stand-in for CIFAR-10 when no data directory is given: 32x32 RGB uint8
 * images whose class decides the mean colour, plus per-pixel noise, all from a counter-based
 * generator of (seed, index). Learnable (a small network separates the classes quickly), free to
 * create (samples are computed on demand) and identical in every process and worker.
 */

import type { Cifar10Sample } from './cifar10.ts';
import { checkIndex, type Dataset, DEFAULT_CONTEXT, sampleRng, type Transform } from './dataset.ts';
import type { NDArray } from './ndarray.ts';
import { portable } from './portable.ts';
import { CounterRng, Stream } from './rng.ts';
import { ToTensor } from './transforms.ts';

/** One mean colour per class, far apart in RGB. */
const PALETTE: readonly (readonly [number, number, number])[] = [
  [200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [200, 60, 200],
  [60, 200, 200], [128, 128, 128], [230, 150, 40], [40, 110, 160], [150, 40, 110],
];

export interface SyntheticCifar10Options {
  /** Samples; default 50,000 (CIFAR-10's training set). */
  length?: number;
  /** Default 0; use another seed for a held-out set. */
  seed?: number;
  /** Uniform noise amplitude around the class colour, in 0..255 units; default 48. */
  noise?: number;
  /** Applied to each uint8 HWC image; default `ToTensor()`; null keeps the raw bytes. */
  transform?: Transform | null;
}

/**
 * @example
 * const train = syntheticCifar10({ length: 5000, seed: 0 });
 * const [img, label] = train.get(7);   // f32 [3, 32, 32], 0..9
 */
export function syntheticCifar10(opts: SyntheticCifar10Options = {}): Dataset<Cifar10Sample> {
  const length = opts.length ?? 50000;
  const seed = opts.seed ?? 0;
  const noise = opts.noise ?? 48;
  const transform = opts.transform === undefined ? ToTensor() : opts.transform;
  if (!Number.isSafeInteger(length) || length < 0) throw new Error(`syntheticCifar10: length must be a non-negative integer, got ${length}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`syntheticCifar10: seed must be a non-negative integer, got ${seed}`);
  const ds: Dataset<Cifar10Sample> = {
    length,
    get(index, ctx = DEFAULT_CONTEXT) {
      checkIndex(index, length, 'syntheticCifar10');
      const rng = new CounterRng(seed, index, Stream.synthetic);
      const label = rng.int(10);
      const colour = PALETTE[label];
      const hwc = new Uint8Array(32 * 32 * 3);
      for (let i = 0; i < hwc.length; i++) {
        const v = colour[i % 3] + noise * (2 * rng.float() - 1);
        hwc[i] = Math.max(0, Math.min(255, Math.round(v)));
      }
      const img: NDArray = { data: hwc, shape: [32, 32, 3] };
      return [transform ? transform(img, sampleRng(index, ctx)) : img, label];
    },
  };
  return portable(ds, import.meta.url, 'syntheticCifar10', [{ length, seed, noise, transform }]);
}
