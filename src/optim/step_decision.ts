/**
 * An optimizer step's decision made on the device (the engine's device-decided step,
 * src/engine/decided_step.ts): the gradients' Σg² go into DeviceSums as GradSquares puts them
 * (same kernels, same order), all-reduced over the groups, and `cuda.stepDecision` turns them into
 * {skip, gradScale, norm} by the host's arithmetic (native/tensor/step_decision.h). Nothing is read.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { native } from '../native.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { DeviceSums } from './device_sums.ts';

export interface StepDecisionInputs {
  grads: readonly Tensor[];
  /** Groups the sum is all-reduced over (none, or groups of one: this rank's sum). */
  groups: readonly ProcessGroup[];
  device: Device;
  /** 1/lossScale (1 in fp32 and bf16). */
  unscale: number;
  /** Where the device holds 1/lossScale instead (fp16's scale on the device: device_loss_scale.ts), read when the decision runs. */
  unscaleFrom?: Tensor | null;
  /** The clip threshold (0: none). */
  maxNorm: number;
  /** Skip on inf/NaN gradients (bf16/fp16), seen in the all-reduced sum. */
  check: boolean;
  /**
   * The norm clipped by: 'local', this rank's sum (stage 0, whose gradients DataParallel already
   * averaged), or 'global', the all-reduced one (ZeRO's partitions: stepScale).
   */
  norm: 'local' | 'global';
  /** Where {skip, gradScale, norm} go: f64 [3] on `device`. */
  decision: Tensor;
}

/** Queues the sums and the decision on the device (capturable); nothing is read back. */
export function queueStepDecision(s: StepDecisionInputs): void {
  const reduce = s.groups.some((g) => g.size > 1);
  // Stage 0 keeps its own sum beside the all-reduced one (slot 0 local, slot 1 global); ZeRO needs only the global.
  const both = reduce && s.norm === 'local';
  const sums = new DeviceSums(s.device, both ? 2 : 1);
  try {
    for (const g of s.grads) if (g.numel > 0) sums.add(g, 2);
    if (both) sums.copySlot(0, 1);
    if (reduce) sums.allReduce([...s.groups], both ? 1 : 0, 1);
    const v = sums.values;
    const d = s.decision;
    const from = s.unscaleFrom ? [s.unscaleFrom.id, s.unscaleFrom.offset] : [];
    native.cuda.stepDecision(v.id, v.offset, both ? 1 : 0, 0, s.unscale, s.maxNorm, s.check, d.id, d.offset, ...from);
  } finally {
    // Back to the cache once queued: the next user of the block is ordered after these launches on the stream.
    sums.dispose();
  }
}
