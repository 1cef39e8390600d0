/**
 * fp16 loss scaling under a pipeline: the last stage seeds backward with loss · scale / m (in
 * f32, as DeepSpeed), every stage's gradients carry the scale, and the step is skipped on every
 * rank when any stage of any replica overflowed — one decision over the whole model.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { LossScaler } from '../engine/loss_scaler.ts';
import { hasOverflowAcross } from '../engine/overflow.ts';
import { cast, div, mul } from '../ops/elementwise.ts';
import { scaleInPlace } from '../optim/clip_grad.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** What the last stage differentiates for one of m micro-batches. */
export function scaledLoss(loss: Tensor, m: number, scaler: LossScaler | null): Tensor {
  const scale = scaler?.lossScale ?? 1;
  if (scale === 1) return div(loss, m);
  return mul(loss.dtype === 'f32' || loss.dtype === 'f64' ? loss : cast(loss, 'f32'), scale / m);
}

/**
 * On every rank, with this rank's (dp-reduced) gradients: false when any rank of `groups` saw
 * inf/NaN (skip the step); otherwise divides the gradients by the scale in place. The check is one
 * f64 on the gradients' device, all-reduced and read once; a caller that already read that
 * answer (its clipping sums, see grad_sync.ts) passes it as `overflow` and nothing is read.
 */
export function unscaleOrSkip(
  grads: (Tensor | null | undefined)[], scaler: LossScaler, groups: (ProcessGroup | null)[], overflow?: boolean, device?: Device,
): boolean {
  if (overflow ?? hasOverflowAcross(grads, groups, device)) return false;
  const scale = scaler.lossScale;
  if (scale !== 1) for (const g of grads) if (g && !g.disposed) scaleInPlace(g, 1 / scale);
  return true;
}
