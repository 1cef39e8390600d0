/**
 * DataLoader: batches of a dataset as tensors, in sampler order.
 *
 * - `numWorkers: 0` (default): samples are read and collated on the calling thread; iterate with
 *   `for (const [x, y] of loader)` (or `for await`).
 * - `numWorkers > 0`: a piscina pool reads, transforms and collates batches in worker threads,
 *   `prefetch` batches ahead, and sends back typed arrays (transferred); the main thread only
 *   copies them into tensors. Results arrive as messages, so this path is asynchronous: iterate
 *   with `for await (const [x, y] of loader)`. Leaving the loop (end, `break`, an exception)
 *   stops the pool, unless `persistentWorkers` keeps it for the next pass (then `close()` it).
 *
 * Both paths run the same code on the same (seed, epoch, index) and give identical batches.
 * The loader owns the tensors it yields: a batch is disposed when the loop asks for the next one
 * or ends. `keep(t)` a tensor to take it over (then dispose it yourself).
 */
import { native } from '../native.ts';
import { Tensor } from '../tensor/tensor.ts';
import { type BatchArray, type BatchArrays, type Collate, defaultCollate, fetchBatch, isBatchArray } from './collate.ts';
import type { Dataset, SampleContext } from './dataset.ts';
import { pack, recipeOf } from './portable.ts';
import { checkEpoch, RandomSampler, type Sampler, SequentialSampler } from './sampler.ts';
import { WorkerPool } from './worker_pool.ts';

export interface DataLoaderOptions {
  /** Samples per batch; default 1. */
  batchSize?: number;
  /** Visit the dataset in a permutation of (seed, epoch); default false. Not with `sampler`. */
  shuffle?: boolean;
  /** Seeds the shuffle and every sample's transforms; default 0. */
  seed?: number;
  /** Drop a last batch that is smaller than `batchSize`; default false. */
  dropLast?: boolean;
  /** The index order (e.g. a DistributedSampler); overrides `shuffle`. */
  sampler?: Sampler;
  /** Worker threads that load batches; default 0 (the calling thread). */
  numWorkers?: number;
  /** Batches in flight with workers; default 2 per worker. */
  prefetch?: number;
  /** Keep the worker pool between passes until `close()`; default false. */
  persistentWorkers?: boolean;
  /** Samples → typed arrays; default `defaultCollate`. Must be `portable` with workers. */
  collate?: Collate;
}

/** A batch of tensors, shaped like the samples. */
export type Batch = Tensor | Tensor[] | { [key: string]: Tensor };

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new Error(`DataLoader: ${name} must be a positive integer, got ${v}`);
  return v;
}

/** Copies one collated array into a new tensor (the only place batches meet the addon). */
function toTensor(a: BatchArray): Tensor {
  const t = Tensor.empty(a.shape, { dtype: a.dtype });
  if (a.data.length > 0) native.write(t.id, 0, a.data);
  return t;
}

function toTensors(arrays: BatchArrays): Batch {
  if (Array.isArray(arrays)) return arrays.map(toTensor);
  if (isBatchArray(arrays)) return toTensor(arrays);
  return Object.fromEntries(Object.entries(arrays).map(([k, a]) => [k, toTensor(a)]));
}

function release(batch: Batch | null): void {
  if (batch === null) return;
  const list = batch instanceof Tensor ? [batch] : Array.isArray(batch) ? batch : Object.values(batch);
  for (const t of list) if (!t.kept) t.dispose();
}

/**
 * @example
 * const loader = new DataLoader(cifar10Train, { batchSize: 32, shuffle: true, seed: 0, numWorkers: 2 });
 * for (let epoch = 0; epoch < 3; epoch++) {
 *   loader.setEpoch(epoch);
 *   for await (const [x, y] of loader) tidy(() => step(x, y));   // x f32 [32, 3, 32, 32], y i64 [32]
 * }
 */
export class DataLoader<B extends Batch = Tensor[]> implements Iterable<B>, AsyncIterable<B> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly dropLast: boolean;
  readonly sampler: Sampler;
  readonly seed: number;
  readonly numWorkers: number;
  readonly prefetch: number;
  readonly persistentWorkers: boolean;
  readonly collate: Collate;
  private _epoch = 0;
  private pool: WorkerPool | null = null;

  constructor(dataset: Dataset, opts: DataLoaderOptions = {}) {
    if (!Number.isSafeInteger(dataset?.length) || dataset.length < 0 || typeof dataset.get !== 'function') {
      throw new Error('DataLoader: the dataset must have an integer length and a get(index) method');
    }
    if (opts.sampler && opts.shuffle) throw new Error('DataLoader: give either shuffle or a sampler (the sampler decides the order)');
    this.dataset = dataset;
    this.batchSize = positiveInt(opts.batchSize ?? 1, 'batchSize');
    this.dropLast = opts.dropLast ?? false;
    this.seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw new Error(`DataLoader: seed must be a non-negative integer, got ${this.seed}`);
    this.sampler = opts.sampler ?? (opts.shuffle ? new RandomSampler(dataset.length, { seed: this.seed }) : new SequentialSampler(dataset.length));
    this.numWorkers = opts.numWorkers ?? 0;
    if (!Number.isInteger(this.numWorkers) || this.numWorkers < 0) {
      throw new Error(`DataLoader: numWorkers must be a non-negative integer, got ${this.numWorkers}`);
    }
    this.prefetch = positiveInt(opts.prefetch ?? 2 * Math.max(1, this.numWorkers), 'prefetch');
    this.persistentWorkers = opts.persistentWorkers ?? false;
    this.collate = opts.collate ?? defaultCollate;
    if (this.numWorkers > 0 && !recipeOf(dataset)) {
      throw new Error(
        'DataLoader: numWorkers > 0 needs a dataset that workers can rebuild (the built-in datasets can; mark your own with portable()), or use numWorkers: 0',
      );
    }
  }

  /** Batches per pass. */
  get length(): number {
    const n = this.sampler.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  get epoch(): number {
    return this._epoch;
  }

  /**
   * Selects the epoch for the next pass: it reseeds the shuffle (and the sampler's) and every
   * sample's transforms. Call it before each epoch; without it every pass repeats epoch 0.
   */
  setEpoch(epoch: number): void {
    this._epoch = checkEpoch(epoch, 'DataLoader.setEpoch');
    this.sampler.setEpoch?.(epoch);
  }

  /** The dataset indices of each batch of the current epoch. */
  batchIndices(): number[][] {
    const order = this.sampler.indices();
    const out: number[][] = [];
    for (let i = 0; i < order.length; i += this.batchSize) {
      const b = order.slice(i, i + this.batchSize);
      if (b.length < this.batchSize && this.dropLast) break;
      out.push(b);
    }
    return out;
  }

  private context(): SampleContext {
    return { seed: this.seed, epoch: this._epoch };
  }

  *[Symbol.iterator](): Generator<B, void, undefined> {
    if (this.numWorkers > 0) {
      throw new Error('DataLoader: with numWorkers > 0 batches arrive asynchronously; iterate with `for await (const batch of loader)`');
    }
    const ctx = this.context();
    let current: Batch | null = null;
    try {
      for (const [b, indices] of this.batchIndices().entries()) {
        let arrays: BatchArrays;
        try {
          arrays = fetchBatch(this.dataset, indices, ctx, this.collate);
        } catch (e) {
          throw new Error(`DataLoader: batch ${b}: ${(e as Error).message}`, { cause: e });
        }
        release(current);
        current = null;
        current = toTensors(arrays);
        yield current as B;
      }
    } finally {
      release(current);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<B, void, undefined> {
    if (this.numWorkers === 0) {
      yield* this[Symbol.iterator](); // not `yield* this`, which would pick the async iterator again
      return;
    }
    const ctx = this.context();
    const batches = this.batchIndices();
    const pool = this.pool ?? new WorkerPool(this.numWorkers, pack({ dataset: this.dataset, collate: this.collate }, 'DataLoader'));
    if (this.persistentWorkers) this.pool = pool;
    const inFlight: Promise<BatchArrays>[] = [];
    let launched = 0;
    const launch = () => {
      while (inFlight.length < this.prefetch && launched < batches.length) {
        const p = pool.run({ indices: batches[launched++], seed: ctx.seed, epoch: ctx.epoch });
        p.catch(() => {}); // awaited in order below; this only keeps an abandoned one from being "unhandled"
        inFlight.push(p);
      }
    };
    let current: Batch | null = null;
    try {
      for (let b = 0; b < batches.length; b++) {
        launch();
        let arrays: BatchArrays;
        try {
          arrays = await (inFlight.shift() as Promise<BatchArrays>);
        } catch (e) {
          throw new Error(`DataLoader: batch ${b}: ${(e as Error).message}`, { cause: e });
        }
        launch(); // keep the workers busy while the caller trains on this batch
        release(current);
        current = null;
        current = toTensors(arrays);
        yield current as B;
      }
    } finally {
      release(current);
      if (!this.persistentWorkers) await pool.destroy();
    }
  }

  /** Stops a persistent worker pool (a no-op otherwise). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (pool) await pool.destroy();
  }
}
