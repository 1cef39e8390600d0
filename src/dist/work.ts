/**
 * Work: the handle of a collective or point-to-point operation. The tensors it touches are kept
 * alive until it completes; `wait()` blocks, `done` resolves without blocking the event loop.
 */
import type { Storage } from '../tensor/storage.ts';
import type { PendingOp } from './communicator.ts';

export class Work {
  private finished: boolean;
  private error: Error | null = null;
  private promise: Promise<void> | null = null;

  constructor(
    private readonly op: PendingOp | null,
    private storages: Storage[],
    /** e.g. "allReduce(sum) on group 'world'" */
    readonly description: string,
  ) {
    this.finished = op === null;
    if (this.finished) this.release();
  }

  /** Blocks until the operation has completed; throws its error (a timeout, a dead peer, ...). */
  wait(): void {
    this.collect();
    if (this.error) throw this.error;
  }

  /** Whether the operation has completed, without blocking. */
  isCompleted(): boolean {
    if (!this.finished && this.op && this.op.test()) this.collect();
    return this.finished;
  }

  /** Resolves when complete (polling; the event loop keeps running), rejects with its error. */
  get done(): Promise<void> {
    this.promise ??= new Promise<void>((resolve, reject) => {
      let delay = 0;
      const poll = () => {
        if (!this.isCompleted()) {
          delay = Math.min(10, delay + 1);
          setTimeout(poll, delay);
          return;
        }
        if (this.error) reject(this.error);
        else resolve();
      };
      poll();
    });
    return this.promise;
  }

  private collect(): void {
    if (this.finished) return;
    try {
      this.op?.wait();
    } catch (e) {
      this.error = e as Error;
    }
    this.finished = true;
    this.release();
  }

  private release(): void {
    for (const s of this.storages) s.release();
    this.storages = [];
  }
}
