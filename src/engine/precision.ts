/**
 * Mixed precision for the Engine (DeepSpeed's bf16 / fp16 modes), ZeRO stages 0, 1 and 2.
 *
 * - The model is built in the 16-bit dtype by the user (e.g. GPT's `dtype: 'bf16'`); initialize()
 *   checks it (`checkModelDtype`). The optimizer (stage 0) or ZeroStage12 keeps fp32 masters of
 *   16-bit parameters, so gradients are 16-bit and the update is computed in fp32.
 * - fp16: the loss is cast to f32 and multiplied by the loss scale before backward (DeepSpeed's
 *   `loss.float() * cur_scale`); bf16 uses a static scale of 1.
 * - At an accumulation boundary, on the reduced gradients (stage 0: every parameter's; stages 1/2:
 *   this rank's partition), the overflow flag is all-reduced over the dp group so that every rank
 *   takes the same decision. An overflow skips the step; otherwise the gradients stay scaled in
 *   their 16-bit dtype and the optimizer kernel multiplies them by 1/scale × the clip factor in
 *   fp32 as it reads them (DeepSpeed's combined scale): unscaling in f16 would flush gradients
 *   below 2^-24 × scale to zero. The check is one f64 on the
 *   gradients' device, read once; with clipping it is the clip's own sum of squares (GradSquares),
 *   so a step reads the device once for both.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { cast, div, mul } from '../ops/elementwise.ts';
import { mulByDeviceScalar } from '../ops/mul_by_device_scalar.ts';
import type { GradSquares } from '../optim/grad_squares.ts';
import { refuseInCapture } from '../tensor/capture_state.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { EngineConfig } from './config_types.ts';
import { addonScales, DeviceLossScale } from './device_loss_scale.ts';
import { DynamicLossScaler, type LossScaler } from './loss_scaler.ts';
import { hasOverflowAcross } from './overflow.ts';

/** The 16-bit training dtype a config asks for, or null for fp32. */
export function mixedDtype(cfg: EngineConfig): 'bf16' | 'f16' | null {
  if (cfg.bf16.enabled) return 'bf16';
  return cfg.fp16.enabled ? 'f16' : null;
}

/** Every floating-point parameter must already be in the training dtype (the user builds the model in it). */
export function checkModelDtype(named: [string, Tensor][], dtype: 'bf16' | 'f16' | null): void {
  if (dtype === null) return;
  const key = dtype === 'bf16' ? 'bf16.enabled' : 'fp16.enabled';
  const bad = named.find(([, p]) => p.dtype !== dtype && ['f32', 'f64', 'bf16', 'f16'].includes(p.dtype));
  if (bad) {
    throw new Error(`initialize: ${key} = true needs the model's parameters in ${dtype} (build the model with dtype '${dtype}'); parameter "${bad[0]}" is ${bad[1].dtype}`);
  }
}

export class Precision {
  /** Boundaries whose step was skipped because the gradients overflowed. */
  skippedSteps = 0;
  /** fp16's dynamic scale on the device, once `useDeviceScale` made it. */
  deviceScale: DeviceLossScale | null = null;

  constructor(
    readonly dtype: 'bf16' | 'f16' | null,
    readonly scaler: LossScaler,
    private readonly group: ProcessGroup,
    /** Where the overflow sum lives (the gradients' device). */
    private readonly device: Device = 'cpu',
  ) {}

  /**
   * What backward differentiates: `loss / gas`, times the loss scale (in f32) under fp16. With the
   * scale on the device (`useDeviceScale`) the loss is multiplied by its copy there: the same bits,
   * and nothing to wait for.
   */
  lossForBackward(loss: Tensor, gas: number): Tensor {
    const f32 = () => (loss.dtype === 'f16' ? cast(loss, 'f32') : loss);
    if (this.deviceScale) {
      this.deviceScale.followHost();
      return mulByDeviceScalar(f32(), this.deviceScale.lossFactor);
    }
    const scale = this.scaler.lossScale;
    // A dynamic scale multiplies even at 1, as its device copy does.
    if (this.dtype === 'f16' && (scale !== 1 || this.scaler.dynamic)) {
      if (this.scaler.dynamic) refuseInCapture('fp16 dynamic loss scaling', 'the graph would keep this loss scale while the scaler changes it; use bf16 or a static loss_scale');
      return mul(f32(), scale / gas);
    }
    return gas > 1 ? div(loss, gas) : loss;
  }

  /**
   * fp16 with a dynamic scale on a GPU: keeps the scale on `device` from now on (device_loss_scale.ts),
   * made from the host scaler's state. Call outside a CUDA graph capture; false where it does not apply.
   */
  useDeviceScale(device: Device, gas: number): boolean {
    if (this.deviceScale) return true;
    if (this.dtype !== 'f16' || !(this.scaler instanceof DynamicLossScaler) || !addonScales(device)) return false;
    this.deviceScale = new DeviceLossScale(this.scaler, gas, device);
    return true;
  }

  /** The host scaler changed without the device's update (a host-decided step, a checkpoint load): its copy follows. */
  reseedDeviceScale(): void {
    this.deviceScale?.seed();
  }

  dispose(): void {
    this.deviceScale?.dispose();
    this.deviceScale = null;
  }

  /**
   * At a boundary, on the reduced gradients (a collective: call on every rank): false when any rank
   * saw inf/NaN (skip the step); otherwise the factor that unscales them (1/lossScale; fp32 and
   * bf16: 1), for the optimizer's `gradScale`: the gradients themselves are left scaled.
   * `squares`, when given, are those gradients' squares over this.group: the decision is their
   * non-finiteness (one read shared with clipping); they stay those of the scaled gradients.
   */
  prepare(grads: Iterable<Tensor | null | undefined>, squares?: GradSquares): false | number {
    if (this.dtype === null) return 1;
    const list = [...grads];
    // With the step's gradient squares (the same gradients, summed over this.group) the check reuses their one read.
    const overflow = squares ? !Number.isFinite(squares.global()) : hasOverflowAcross(list, [this.group], this.device);
    if (overflow) return false;
    return this.unscale();
  }

  /** What unscales the gradients of a step that is not skipped: 1/lossScale (fp32 and bf16: 1). */
  unscale(): number {
    return this.dtype === null ? 1 : 1 / this.scaler.lossScale;
  }

  /** After a boundary: counts a skipped step and updates the scaler (DeepSpeed's update_scale). */
  finish(stepped: boolean): void {
    if (this.dtype === null) return;
    if (!stepped) this.skippedSteps++;
    this.scaler.update(!stepped);
    this.deviceScale?.hostFollowed();
  }
}
