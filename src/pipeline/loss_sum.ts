/**
 * The last stage's micro-batch losses summed where they are computed: an f64 accumulator on the
 * loss's device, added to in micro-batch order and read once per batch (`take`). Reading each
 * loss (`item()`) made the host wait for every micro-batch's forward before it could queue that
 * micro-batch's backward. Each f32/bf16/f16 loss is exact in f64 and an f64 add rounds once, so
 * the sum has the bits of JS's `sum += loss.item()` in the same order.
 */
import { zeros } from '../ops/create.ts';
import { addInPlace, cast } from '../ops/elementwise.ts';
import { keep } from '../tensor/scope.ts';
import type { Tensor } from '../tensor/tensor.ts';

export class LossSum {
  private acc: Tensor | null = null;

  /** Queues `acc += f64(loss)` on the loss's device (nothing is read). */
  add(loss: Tensor): void {
    const x = cast(loss, 'f64', { track: false }); // off the tape: the loss's own graph is untouched
    try {
      this.acc ??= keep(zeros([...loss.shape], { dtype: 'f64', device: loss.device, tag: 'other' }));
      addInPlace(this.acc, x);
    } finally {
      x.dispose();
    }
  }

  /** The sum (0 when nothing was added): the one read, which waits for the last added loss. Frees the accumulator. */
  take(): number {
    const acc = this.acc;
    if (acc === null) return 0;
    this.acc = null;
    try {
      return acc.item();
    } finally {
      acc.dispose();
    }
  }

  /** Frees the accumulator unread (a batch that failed). */
  dispose(): void {
    this.acc?.dispose();
    this.acc = null;
  }
}
