/**
 * Samplers: the order in which a loader visits dataset indices. A sampler that shuffles takes
 * its order from (seed, epoch) only, so every rank computes the same permutation.
 */
import { permutation } from './rng.ts';

/** An ordered list of dataset indices for one epoch. */
export interface Sampler {
  /** How many indices `indices()` returns. */
  readonly length: number;
  /** This epoch's indices, in order. */
  indices(): number[];
  /** Selects the epoch (samplers that shuffle change order with it). */
  setEpoch?(epoch: number): void;
}

export function checkLength(n: number, where: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${where}: the dataset length must be a non-negative integer, got ${n}`);
  return n;
}

export function checkEpoch(epoch: number, where: string): number {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`${where}: epoch must be a non-negative integer, got ${epoch}`);
  return epoch;
}

/**
 * 0, 1, ..., n-1.
 * @example
 * new SequentialSampler(3).indices();   // [0, 1, 2]
 */
export class SequentialSampler implements Sampler {
  readonly length: number;
  constructor(n: number) {
    this.length = checkLength(n, 'SequentialSampler');
  }
  indices(): number[] {
    return Array.from({ length: this.length }, (_, i) => i);
  }
}

/**
 * A permutation of 0..n-1 that depends on (seed, epoch).
 * @example
 * const s = new RandomSampler(10, { seed: 1 });
 * s.setEpoch(2);
 * s.indices();   // the same on every process
 */
export class RandomSampler implements Sampler {
  readonly length: number;
  readonly seed: number;
  private epoch = 0;
  constructor(n: number, opts: { seed?: number } = {}) {
    this.length = checkLength(n, 'RandomSampler');
    this.seed = opts.seed ?? 0;
  }
  setEpoch(epoch: number): void {
    this.epoch = checkEpoch(epoch, 'RandomSampler.setEpoch');
  }
  indices(): number[] {
    return permutation(this.length, this.seed, this.epoch);
  }
}
