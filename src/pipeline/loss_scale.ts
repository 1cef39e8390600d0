/**
 * fp16 loss scaling under a pipeline: the last stage seeds backward with loss · scale / m (in
 * f32, as DeepSpeed), every stage's gradients carry the scale (removed in f32 by the optimizer
 * kernel), and the step is skipped on every rank when any stage of any replica overflowed — one
 * decision over the whole model.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { DeviceLossScale } from '../engine/device_loss_scale.ts';
import type { LossScaler } from '../engine/loss_scaler.ts';
import { hasOverflowAcross } from '../engine/overflow.ts';
import { cast, div, mul } from '../ops/elementwise.ts';
import { mulByDeviceScalar } from '../ops/mul_by_device_scalar.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

/**
 * What the last stage differentiates for one of m micro-batches. With the dynamic scale kept on the
 * device (`onDevice`, made with gas = m) the loss is multiplied by its scale / m there: the same
 * bits as the host's, nothing read. A dynamic scale multiplies even at 1, as its device copy does.
 */
export function scaledLoss(loss: Tensor, m: number, scaler: LossScaler | null, onDevice: DeviceLossScale | null = null): Tensor {
  const f32 = (): Tensor => (loss.dtype === 'f32' || loss.dtype === 'f64' ? loss : cast(loss, 'f32'));
  if (onDevice) return mulByDeviceScalar(f32(), onDevice.lossFactor);
  const scale = scaler?.lossScale ?? 1;
  if (scale === 1 && !scaler?.dynamic) return div(loss, m);
  return mul(f32(), scale / m);
}

/**
 * On every rank, with this rank's (dp-reduced) gradients: false when any rank of `groups` saw
 * inf/NaN (skip the step); otherwise the factor that unscales them (1/scale), which the optimizer
 * applies in f32 as its `gradScale`: the 16-bit gradients stay scaled (unscaling them in f16 would
 * flush tiny ones to zero). The check is one f64 on the gradients' device, all-reduced and read
 * once; a caller that already read that answer (its clipping sums, see grad_sync.ts) passes it as
 * `overflow` and nothing is read.
 */
export function unscaleOrSkip(
  grads: (Tensor | null | undefined)[], scaler: LossScaler, groups: (ProcessGroup | null)[], overflow?: boolean, device?: Device,
): false | number {
  if (overflow ?? hasOverflowAcross(grads, groups, device)) return false;
  return 1 / scaler.lossScale;
}
