/**
 * The collectives data parallelism uses: one broadcast of the starting state from rank 0, and
 * one asynchronous all-reduce ('avg') per gradient bucket, launched strictly in bucket order so
 * every rank issues the same sequence whatever order its hooks fired in.
 */
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { ProcessGroup } from './process_group.ts';
import type { Work } from './work.ts';

/** Copies rank 0's parameters (and buffers, when asked) to every rank of the group, in place. */
export function broadcastState(module: Module, group: ProcessGroup, buffers: boolean): void {
  if (group.size === 1) return;
  const tensors = [...module.parameters(), ...(buffers ? module.buffers() : [])];
  for (const t of tensors) group.broadcast(t, 0);
}

/** When a bucket's all-reduce was launched and finished, in ms since its backward pass began. */
export interface BucketLaunch {
  bucket: number;
  /** Launched from a gradient-ready hook, i.e. while backward was still running. */
  duringBackward: boolean;
  launchedMs: number;
  /** When its wait() returned (set by finish). */
  doneMs: number;
}

/** The reductions of one synchronizing backward pass: launched in order, waited in order. */
export class BucketReducer {
  readonly launches: BucketLaunch[] = [];
  private readonly works: Work[] = [];
  private next = 0;

  constructor(
    private readonly group: ProcessGroup,
    private readonly flats: readonly Tensor[],
    private readonly t0: number,
  ) {}

  /** Buckets launched so far (the next one to launch). */
  get launched(): number {
    return this.next;
  }

  /** Launches every bucket from the next one on while `ready(i)` holds. */
  launchWhile(ready: (bucket: number) => boolean, duringBackward: boolean): void {
    while (this.next < this.flats.length && ready(this.next)) {
      const i = this.next++;
      this.works.push(this.group.allReduce(this.flats[i], 'avg', { async: true }));
      this.launches.push({ bucket: i, duringBackward, launchedMs: performance.now() - this.t0, doneMs: -1 });
    }
  }

  /** Launches what is left, then waits for every bucket in order; the first error is thrown after all were waited. */
  finish(): void {
    this.launchWhile(() => true, false);
    let error: unknown = null;
    this.works.forEach((w, i) => {
      try {
        w.wait();
      } catch (e) {
        error ??= e;
      }
      this.launches[i].doneMs = performance.now() - this.t0;
    });
    if (error) throw error;
  }

  /** Waits for whatever was launched, ignoring errors (after a failed backward). */
  drain(): void {
    for (const w of this.works) {
      try {
        w.wait();
      } catch {
        // the backward error is the one reported
      }
    }
  }
}
