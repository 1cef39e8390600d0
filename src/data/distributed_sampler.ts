/**
 * DistributedSampler: each data-parallel rank's share of a dataset, with PyTorch's semantics.
 * Pass the rank and size of the data-parallel axis (not the global rank: under pipeline or
 * tensor parallelism the two differ).
 */
import { permutation } from './rng.ts';
import { checkEpoch, checkLength, type Sampler } from './sampler.ts';

export interface DistributedSamplerOptions {
  /** Ranks sharing the dataset (the size of the data-parallel axis). */
  numReplicas: number;
  /** This process's rank among them. */
  rank: number;
  /** Shuffle with a permutation of (seed, epoch) before sharding; default true. */
  shuffle?: boolean;
  /** Default 0; must be the same on every rank. */
  seed?: number;
  /** Drop the tail so that the dataset divides evenly instead of padding it; default false. */
  dropLast?: boolean;
}

/**
 * Every rank gets `length` indices: `ceil(n / numReplicas)`, the list padded by repeating its
 * head (as PyTorch), or `floor(n / numReplicas)` with `dropLast`. Rank r takes positions
 * r, r + numReplicas, ... of the (shuffled, padded) list. Call `setEpoch` before each epoch.
 * @example
 * const sampler = new DistributedSampler(dataset.length, { numReplicas: 4, rank: 1, seed: 0 });
 * const loader = new DataLoader(dataset, { batchSize: 32, sampler });
 * for (let epoch = 0; epoch < 10; epoch++) { loader.setEpoch(epoch); for (const b of loader) ...; }
 */
export class DistributedSampler implements Sampler {
  readonly datasetLength: number;
  readonly numReplicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  /** Samples per rank. */
  readonly length: number;
  /** Samples over all ranks (padded or cut). */
  readonly totalSize: number;
  private epoch = 0;

  constructor(dataset: number | { readonly length: number }, opts: DistributedSamplerOptions) {
    const n = checkLength(typeof dataset === 'number' ? dataset : dataset.length, 'DistributedSampler');
    const { numReplicas, rank } = opts;
    if (!Number.isInteger(numReplicas) || numReplicas < 1) {
      throw new Error(`DistributedSampler: numReplicas must be a positive integer, got ${numReplicas}`);
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= numReplicas) {
      throw new Error(`DistributedSampler: rank ${rank} is out of range [0, ${numReplicas - 1}]`);
    }
    this.datasetLength = n;
    this.numReplicas = numReplicas;
    this.rank = rank;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
    this.length = this.dropLast ? Math.floor(n / numReplicas) : Math.ceil(n / numReplicas);
    this.totalSize = this.length * numReplicas;
  }

  setEpoch(epoch: number): void {
    this.epoch = checkEpoch(epoch, 'DistributedSampler.setEpoch');
  }

  /** This rank's indices for the current epoch. */
  indices(): number[] {
    const n = this.datasetLength;
    const all = this.shuffle ? permutation(n, this.seed, this.epoch) : Array.from({ length: n }, (_, i) => i);
    if (this.dropLast) all.length = this.totalSize;
    // Padding repeats the list from its start as many times as needed (n may be < numReplicas).
    for (let i = n; i < this.totalSize; i++) all.push(all[i % n]);
    const mine: number[] = [];
    for (let i = this.rank; i < this.totalSize; i += this.numReplicas) mine.push(all[i]);
    return mine;
  }
}
