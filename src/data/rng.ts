/**
 * A small counter-based generator for the data pipeline: every draw is a hash of a key
 * (seed, epoch, sample index, stream) and a counter, so a sample's augmentation and an epoch's
 * shuffle are the same on every rank, in every worker and in-process, whatever the order of work.
 * Pure TypeScript (no addon): it runs in worker threads.
 */

/** An integer-avalanche mix of one 32-bit word (Wellons' lowbias32). */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Splits a non-negative safe integer into its low and high 32-bit words. */
function words(n: number): [number, number] {
  return [n >>> 0, Math.floor(n / 2 ** 32) >>> 0];
}

/** Hashes a list of non-negative safe integers to one unsigned 32-bit word. */
export function hash32(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    const [lo, hi] = words(v);
    h = mix32(h ^ mix32(lo + 0x632be5ab));
    h = mix32(h ^ mix32(hi + 0x85157af5));
  }
  return h;
}

/** Stream ids keep the draws of different consumers of one (seed, epoch) apart. */
export const Stream = { shuffle: 1, transform: 2, synthetic: 3 } as const;

/**
 * Uniform draws from a fixed key and a running counter.
 * @example
 * const rng = new CounterRng(seed, epoch, index, Stream.transform);
 * const top = rng.int(9);           // 0..8
 */
export class CounterRng {
  private readonly key: number;
  private counter = 0;

  constructor(...key: number[]) {
    for (const k of key) {
      if (!Number.isSafeInteger(k) || k < 0) throw new Error(`CounterRng: key words must be non-negative safe integers, got ${k}`);
    }
    this.key = hash32(...key);
  }

  /** An unsigned 32-bit integer. */
  uint32(): number {
    return mix32(this.key ^ mix32(this.counter++ + 0x2545f491));
  }

  /** Uniform in [0, 1) with 32 random bits. */
  float(): number {
    return this.uint32() / 2 ** 32;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`CounterRng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.float() * n);
  }

  /** Standard normal (Box-Muller on two draws). */
  normal(): number {
    const u = 1 - this.float();
    const v = this.float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

/**
 * A permutation of 0..n-1 that depends only on (seed, epoch): every rank computes the same one.
 * (Unlike PyTorch's `seed + epoch`, seed 1 epoch 0 and seed 0 epoch 1 give different orders.)
 */
export function permutation(n: number, seed: number, epoch: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  const rng = new CounterRng(seed, epoch, Stream.shuffle);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}
