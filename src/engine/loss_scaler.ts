/**
 * Loss scaling for fp16 training with DeepSpeed's exact rules (deepspeed/runtime/fp16/loss_scaler.py):
 * the loss is multiplied by the scale before backward; a step whose gradients overflow is skipped
 * and the scale halved (after `delayedShift` overflows: hysteresis), and doubled again after
 * `scaleWindow` iterations without an overflow.
 */
import { checkBool, checkKeys, checkRange } from '../optim/checks.ts';
import type { LossScalerSpec } from './config.ts';

/** A scaler's saved state (plain data, for checkpoints). */
export interface LossScalerState {
  curScale: number;
  curIter: number;
  lastOverflowIter: number;
  curHysteresis: number;
}

export interface LossScaler {
  /** Multiply the loss by this before backward; divide the gradients by it before the step. */
  readonly lossScale: number;
  readonly dynamic: boolean;
  /** Call once per optimizer step with whether the gradients overflowed (the step is then skipped). */
  update(overflow: boolean): void;
  stateDict(): LossScalerState;
  loadStateDict(state: LossScalerState): void;
}

/** A fixed scale (fp16 with loss_scale > 0, or 1 for bf16 and fp32): update() changes nothing. */
export class StaticLossScaler implements LossScaler {
  readonly dynamic = false;
  private scale: number;

  constructor(scale = 1) {
    this.scale = checkRange(scale, 'scale', 'StaticLossScaler', Number.MIN_VALUE);
  }

  get lossScale(): number {
    return this.scale;
  }

  update(_overflow: boolean): void {}

  stateDict(): LossScalerState {
    return { curScale: this.scale, curIter: 0, lastOverflowIter: -1, curHysteresis: 1 };
  }

  loadStateDict(state: LossScalerState): void {
    this.scale = checkRange(state?.curScale, 'curScale', 'StaticLossScaler.loadStateDict', Number.MIN_VALUE);
  }
}

/** DeepSpeed's DynamicLossScaler arguments, its defaults in brackets. */
export interface DynamicLossScalerOptions {
  /** Starting scale [2^32]. */
  initScale?: number;
  /** Factor of each decrease and increase [2]. */
  scaleFactor?: number;
  /** Iterations without overflow before the scale grows [1000]. */
  scaleWindow?: number;
  /** The scale never falls below this [1]. */
  minScale?: number;
  /** Overflows tolerated before a decrease: DeepSpeed's hysteresis [1]. */
  delayedShift?: number;
  /** Refill the hysteresis on every iteration without overflow [false]. */
  consecutiveHysteresis?: boolean;
  /** Throw on an overflow when the scale is already at minScale [true]. */
  raiseErrorAtMinScale?: boolean;
}

const OPTION_KEYS = ['initScale', 'scaleFactor', 'scaleWindow', 'minScale', 'delayedShift', 'consecutiveHysteresis', 'raiseErrorAtMinScale'];

/**
 * @example
 * const scaler = new DynamicLossScaler({ initScale: 2 ** 16, delayedShift: 2 });
 * loss.mul(scaler.lossScale).backward();
 * const overflow = hasOverflow(grads);
 * if (!overflow) { unscale(grads, scaler.lossScale); optimizer.step(); }
 * scaler.update(overflow);
 */
export class DynamicLossScaler implements LossScaler {
  readonly dynamic = true;
  curScale: number;
  curIter = 0;
  lastOverflowIter = -1;
  curHysteresis: number;
  readonly scaleFactor: number;
  readonly scaleWindow: number;
  readonly minScale: number;
  readonly delayedShift: number;
  readonly consecutiveHysteresis: boolean;
  readonly raiseErrorAtMinScale: boolean;

  constructor(opts: DynamicLossScalerOptions = {}) {
    const where = 'DynamicLossScaler';
    checkKeys(opts, OPTION_KEYS, where);
    this.curScale = checkRange(opts.initScale ?? 2 ** 32, 'initScale', where, Number.MIN_VALUE);
    this.scaleFactor = checkRange(opts.scaleFactor ?? 2, 'scaleFactor', where, 1);
    this.scaleWindow = checkRange(opts.scaleWindow ?? 1000, 'scaleWindow', where, 1);
    this.minScale = checkRange(opts.minScale ?? 1, 'minScale', where, Number.MIN_VALUE);
    this.delayedShift = checkRange(opts.delayedShift ?? 1, 'delayedShift', where, 1);
    if (!Number.isInteger(this.scaleWindow) || !Number.isInteger(this.delayedShift)) {
      throw new Error(`${where}: scaleWindow and delayedShift must be integers, got ${this.scaleWindow} and ${this.delayedShift}`);
    }
    this.consecutiveHysteresis = checkBool(opts.consecutiveHysteresis ?? false, 'consecutiveHysteresis', where);
    this.raiseErrorAtMinScale = checkBool(opts.raiseErrorAtMinScale ?? true, 'raiseErrorAtMinScale', where);
    this.curHysteresis = this.delayedShift;
  }

  get lossScale(): number {
    return this.curScale;
  }

  /** DeepSpeed's update_scale, rule for rule. */
  update(overflow: boolean): void {
    if (overflow) {
      if (this.delayedShift === 1 || this.curHysteresis === 1) {
        if (this.curScale === this.minScale && this.raiseErrorAtMinScale) {
          throw new Error(`DynamicLossScaler: gradients overflowed at the minimum loss scale ${this.minScale}; it cannot decrease any further`);
        }
        this.curScale = Math.max(this.curScale / this.scaleFactor, this.minScale);
      } else {
        this.curHysteresis -= 1;
      }
      this.lastOverflowIter = this.curIter;
    } else {
      if (this.consecutiveHysteresis) this.curHysteresis = this.delayedShift;
      if ((this.curIter - this.lastOverflowIter) % this.scaleWindow === 0) {
        if (!this.consecutiveHysteresis) this.curHysteresis = this.delayedShift;
        this.curScale *= this.scaleFactor;
      }
    }
    this.curIter += 1;
  }

  stateDict(): LossScalerState {
    return { curScale: this.curScale, curIter: this.curIter, lastOverflowIter: this.lastOverflowIter, curHysteresis: this.curHysteresis };
  }

  loadStateDict(state: LossScalerState): void {
    const where = 'DynamicLossScaler.loadStateDict';
    if (!state || typeof state !== 'object') throw new Error(`${where}: expected {curScale, curIter, lastOverflowIter, curHysteresis}`);
    this.curScale = checkRange(state.curScale, 'curScale', where, Number.MIN_VALUE);
    this.curIter = checkRange(state.curIter, 'curIter', where, 0);
    this.lastOverflowIter = checkRange(state.lastOverflowIter, 'lastOverflowIter', where, -1);
    this.curHysteresis = checkRange(state.curHysteresis, 'curHysteresis', where, 0);
  }
}

/**
 * The scaler a resolved config asks for (`cfg.lossScaler`): dynamic, static, or scale 1 for bf16/fp32.
 * @example
 * const scaler = createLossScaler(loadConfig('ds_config.json').lossScaler);
 */
export function createLossScaler(spec: LossScalerSpec): LossScaler {
  switch (spec.kind) {
    case 'none':
      return new StaticLossScaler(1);
    case 'static':
      return new StaticLossScaler(spec.scale);
    case 'dynamic':
      return new DynamicLossScaler({
        initScale: spec.initScale, scaleWindow: spec.scaleWindow, minScale: spec.minScale, delayedShift: spec.delayedShift,
        consecutiveHysteresis: spec.consecutiveHysteresis,
      });
  }
}
