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
 *   takes the same decision. An overflow skips the step; otherwise the gradients are divided by the
 *   scale (in their own dtype) before clipping and the optimizer step. The check is one f64 on the
 *   gradients' device, read once; with clipping it is the clip's own sum of squares (GradSquares),
 *   so a step reads the device once for both.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import { cast, div, mul } from '../ops/elementwise.ts';
import { scaleInPlace } from '../optim/clip_grad.ts';
import type { GradSquares } from '../optim/grad_squares.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { EngineConfig } from './config_types.ts';
import type { LossScaler } from './loss_scaler.ts';
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

  constructor(
    readonly dtype: 'bf16' | 'f16' | null,
    readonly scaler: LossScaler,
    private readonly group: ProcessGroup,
    /** Where the overflow sum lives (the gradients' device). */
    private readonly device: Device = 'cpu',
  ) {}

  /** What backward differentiates: `loss / gas`, times the loss scale (in f32) under fp16. */
  lossForBackward(loss: Tensor, gas: number): Tensor {
    const scale = this.scaler.lossScale;
    if (this.dtype === 'f16' && scale !== 1) return mul(loss.dtype === 'f16' ? cast(loss, 'f32') : loss, scale / gas);
    return gas > 1 ? div(loss, gas) : loss;
  }

  /**
   * At a boundary, on the reduced gradients (a collective: call on every rank): false when any rank
   * saw inf/NaN (skip the step); otherwise unscales them in place and returns true. fp32: true.
   * `squares`, when given, are those gradients' squares over this.group: the decision is their
   * non-finiteness (one read shared with clipping) and they follow the unscaling.
   */
  prepare(grads: Iterable<Tensor | null | undefined>, squares?: GradSquares): boolean {
    if (this.dtype === null) return true;
    const list = [...grads];
    // With the step's gradient squares (the same gradients, summed over this.group) the check reuses their one read.
    const overflow = squares ? !Number.isFinite(squares.global()) : hasOverflowAcross(list, [this.group], this.device);
    if (overflow) return false;
    const scale = this.scaler.lossScale;
    if (scale !== 1) {
      for (const g of list) if (g && !g.disposed) scaleInPlace(g, 1 / scale);
      squares?.scaled(1 / scale);
    }
    return true;
  }

  /** After a boundary: counts a skipped step and updates the scaler (DeepSpeed's update_scale). */
  finish(stepped: boolean): void {
    if (this.dtype === null) return;
    if (!stepped) this.skippedSteps++;
    this.scaler.update(!stepped);
  }
}
