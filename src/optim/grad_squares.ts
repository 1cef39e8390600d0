/**
 * The sum of squares of one optimizer step's gradients, shared by its overflow check and its
 * clipping so that the step reads the device once: taken on the gradients' device when first
 * asked (DeviceSums), all-reduced over the given groups as one f64, read with one host read. A
 * non-finite sum is exactly an inf/NaN gradient somewhere (the squares of f32/bf16/f16 values
 * cannot overflow a double), which is the loss scaler's overflow test.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { withDeviceSums } from './device_sums.ts';

/**
 * Σ g² over `grads` (this rank's) and over every rank of `groups`, read lazily and once.
 * @example
 * const sq = new GradSquares(partitionGrads, [dpGroup], 'cuda:0');
 * if (!Number.isFinite(sq.global())) return false;     // overflow on some rank: skip the step
 * const norm = Math.sqrt(sq.global());                  // no second read
 */
export class GradSquares {
  private values: { local: number; global: number } | null = null;
  /** Applied to values read before the gradients were scaled in place (see `scaled`). */
  private factor = 1;

  /** `device`: where the sums live when this rank holds no gradient (every rank must take part in the collective). */
  constructor(
    private readonly grads: Tensor[],
    private readonly groups: (ProcessGroup | null)[],
    private readonly device: Device = grads[0]?.device ?? 'cpu',
  ) {}

  /** Σ g² of this rank's gradients. */
  local(): number {
    return this.read().local * this.factor;
  }

  /** Σ g² summed over the groups. */
  global(): number {
    return this.read().global * this.factor;
  }

  /** The gradients were just multiplied in place by `s`: sums already read follow (times s²); unread ones will see the new values. */
  scaled(s: number): void {
    if (this.values) this.factor *= s * s;
  }

  private read(): { local: number; global: number } {
    if (this.values) return this.values;
    const reduce = this.groups.some((g) => g !== null && g.size > 1);
    const [local, global] = withDeviceSums(this.device, reduce ? 2 : 1, (s) => {
      for (const g of this.grads) if (g.numel > 0) s.add(g, 2);
      if (reduce) {
        s.copySlot(0, 1);            // slot 1 all-reduced, slot 0 kept: both come back in the one read
        s.allReduce(this.groups, 1, 1);
      }
      const v = s.read();
      return [v[0], reduce ? v[1] : v[0]];
    });
    this.values = { local, global };
    return this.values;
  }
}
