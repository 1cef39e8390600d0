/**
 * The order modules run in, recorded on one pass (forward, or backward) and checked on the
 * next ones: ZeRO stage 3 prefetches the parameters of the modules that come next only while
 * a pass follows the recorded order. A pass that departs from it (other control flow, eval vs
 * train) stops prefetching there, and the next pass records afresh.
 */
import type { Module } from '../nn/module.ts';

export class ModuleTrace {
  /** The recorded order (null: none yet, or the last pass departed from it). */
  order: Module[] | null = null;
  private recording: Module[] | null = null;
  private cursor = 0;

  /** A pass begins: check against the recorded order, or record one. */
  begin(): void {
    this.cursor = 0;
    this.recording = this.order ? null : [];
  }

  /** Notes that `m` runs; returns its position in the recorded order, or -1 while recording or after a departure. */
  step(m: Module): number {
    if (this.recording) {
      this.recording.push(m);
      return -1;
    }
    if (!this.order) return -1;
    if (this.order[this.cursor] === m) return this.cursor++;
    this.order = null;
    return -1;
  }

  /** The pass ended: a recording becomes the order; a pass that stopped short invalidates it. */
  end(): void {
    if (this.recording) {
      this.order = this.recording;
      this.recording = null;
    } else if (this.order && this.cursor !== this.order.length) {
      this.order = null;
    }
  }

  /** Forget the order (the modules or their parameters changed). */
  reset(): void {
    this.order = null;
    this.recording = null;
  }
}
