/**
 * The piscina pool behind `DataLoader({ numWorkers })`: threads that each hold the dataset
 * (rebuilt from its recipe; SharedArrayBuffers in it are shared, not copied) and answer index
 * lists with collated typed arrays.
 */
import { Piscina } from 'piscina';
import type { BatchArrays } from './collate.ts';
import type { WorkerTask } from './worker.ts';

const entry = new URL('./worker.ts', import.meta.url).href;

export class WorkerPool {
  private readonly pool: Piscina<WorkerTask, BatchArrays>;
  private closing = false;
  private failure: Error | null = null;

  /** `packed` is what `pack()` made of `{ dataset, collate }`. */
  constructor(numWorkers: number, packed: unknown) {
    this.pool = new Piscina({ filename: entry, minThreads: numWorkers, maxThreads: numWorkers, workerData: packed });
    // Errors outside a task (a thread that died; piscina's late-reply notice when a result
    // arrives during shutdown) are emitted, not thrown: keep the first for the next run.
    this.pool.on('error', (e: Error) => {
      if (!this.closing) this.failure ??= e;
    });
  }

  run(task: WorkerTask): Promise<BatchArrays> {
    if (this.failure) return Promise.reject(new Error(`the worker pool failed: ${this.failure.message}`, { cause: this.failure }));
    return this.pool.run(task);
  }

  /** Drops queued tasks, lets running ones finish (their results are ignored) and stops the threads. */
  async destroy(): Promise<void> {
    this.closing = true;
    await this.pool.close({ force: true });
  }
}
