/**
 * fp16 dynamic loss scaling kept on the GPU, for the engine's device-decided step
 * (decided_step.ts): the host learns whether a step overflowed only when it settles the step, but
 * the next backward needs the scale the overflow decides. So the scaler's state lives in an f64 [8]
 * on the device, `[curScale, curIter, lastOverflowIter, curHysteresis, curScale/gas, 1/curScale,
 * raised, 0]`: backward multiplies the loss by element 4 (mulByDeviceScalar), the step's decision
 * unscales by element 5, and `cuda.lossScalerUpdate` applies DeepSpeed's rules to the state from the
 * decision (native/tensor/loss_scaler_rule.h, DynamicLossScaler.update rule for rule). The host's
 * DynamicLossScaler is updated the same way when the step settles, so both hold the same numbers;
 * it throws there at the minimum scale. Nothing is read back, so fp16 training waits for nothing and
 * its whole step may be captured in a CUDA graph. A change made to the host scaler itself (a user
 * setting `engine.lossScaler.curScale`, loadStateDict) is seen at the next backward (`followHost`):
 * the host state is compared with the one last known to match the device, and copied in if it moved.
 */
import { native } from '../native.ts';
import { tensor } from '../ops/create.ts';
import { copyInPlace } from '../ops/elementwise.ts';
import { keep } from '../tensor/scope.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { DynamicLossScaler } from './loss_scaler.ts';

/** Whether this addon keeps a loss scale on `device`. */
export function addonScales(device: Device): boolean {
  return device !== 'cpu' && typeof native.cuda?.lossScalerUpdate === 'function';
}

export class DeviceLossScale {
  /** The state, f64 [8] on the device (tag 'other'). */
  readonly state: Tensor;
  /** Element 4: what backward multiplies the loss by. */
  readonly lossFactor: Tensor;
  /** Element 5: what the decision unscales by. */
  readonly unscale: Tensor;
  /** The host scaler's state when it last matched the device's (after a seed, or a settled update). */
  private matched: string;

  /** Made from the host scaler's state now (a copy to the device: make it outside any CUDA graph capture). */
  constructor(
    private readonly scaler: DynamicLossScaler,
    private readonly gas: number,
    device: Device,
  ) {
    this.state = keep(tensor(this.hostState(), { dtype: 'f64', device, tag: 'other' }));
    this.lossFactor = keep(this.state.alias([], [], this.state.offset + 4));
    this.unscale = keep(this.state.alias([1], [1], this.state.offset + 5));
    this.matched = this.hostKey();
  }

  /** Copies the host scaler's state in again (after a host-decided step or a checkpoint load changed it). */
  seed(): void {
    const host = tensor(this.hostState(), { dtype: 'f64' });
    try {
      copyInPlace(this.state, host);
    } finally {
      host.dispose();
    }
    this.matched = this.hostKey();
  }

  /** The host scaler was just updated from a settled decision, as the device was: they match as of that step. */
  hostFollowed(): void {
    this.matched = this.hostKey();
  }

  /**
   * Copies the host scaler's state in if it was changed on the host since it last matched the
   * device (steps still in flight on the device are then overridden by the host's value, as a
   * host-kept scaler would be). Call before queueing work that reads the scale, outside a capture.
   */
  followHost(): void {
    if (this.hostKey() !== this.matched) this.seed();
  }

  /** Queues the scaler's update from a step's decision (element 0: skipped, i.e. overflowed). */
  update(decision: Tensor): void {
    const s = this.scaler;
    native.cuda.lossScalerUpdate(
      this.state.id, this.state.offset, decision.id, decision.offset, s.scaleFactor, s.scaleWindow, s.minScale, s.delayedShift,
      s.consecutiveHysteresis, s.raiseErrorAtMinScale, this.gas,
    );
  }

  dispose(): void {
    this.lossFactor.dispose();
    this.unscale.dispose();
    this.state.dispose();
  }

  private hostKey(): string {
    const s = this.scaler;
    return `${s.curScale} ${s.curIter} ${s.lastOverflowIter} ${s.curHysteresis}`;
  }

  private hostState(): Float64Array {
    const s = this.scaler;
    return Float64Array.from([s.curScale, s.curIter, s.lastOverflowIter, s.curHysteresis, s.curScale / this.gas, 1 / s.curScale, 0, 0]);
  }
}
