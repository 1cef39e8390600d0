/** OneCycle with DeepSpeed's semantics (deepspeed/runtime/lr_schedules.py). */
import { LAST_BATCH_ITERATION, LRScheduler, type ParamSpec, parseParams, type SchedulableOptimizer } from './base.ts';

/** DeepSpeed's OneCycle params (snake_case, as in a DeepSpeed JSON config). */
export interface OneCycleParams {
  cycle_min_lr: number;
  cycle_max_lr: number;
  /** Post-cycle decay: lr = cycle_min_lr / (1 + decay_lr_rate * k / decay_step_size) (default 0). */
  decay_lr_rate?: number;
  /** Steps of the rising half (default 2000). */
  cycle_first_step_size?: number;
  /** Steps of the falling half (default: cycle_first_step_size). */
  cycle_second_step_size?: number | null;
  /** Accepted as DeepSpeed does; like DeepSpeed, the cycle stays continuous (a warning says so). */
  cycle_first_stair_count?: number;
  cycle_second_stair_count?: number | null;
  /** Post-cycle decay interval (default 0: no decay). */
  decay_step_size?: number;
  /** Cycle the first beta inversely to the lr (default true; needs an optimizer with betas). */
  cycle_momentum?: boolean;
  cycle_min_mom?: number;
  cycle_max_mom?: number;
  /** Post-cycle momentum growth: beta1 = cycle_max_mom * (1 + decay_mom_rate * k / decay_step_size). */
  decay_mom_rate?: number;
  last_batch_iteration?: number;
}

const SPECS: Record<string, ParamSpec> = {
  cycle_min_lr: { kind: 'number', min: 0, required: true },
  cycle_max_lr: { kind: 'number', min: 0, required: true },
  decay_lr_rate: { kind: 'number', min: 0, default: 0 },
  cycle_first_step_size: { kind: 'int', min: 1, default: 2000 },
  cycle_second_step_size: { kind: 'int', min: 1, nullable: true, default: null },
  cycle_first_stair_count: { kind: 'int', min: 0, default: 0 },
  cycle_second_stair_count: { kind: 'int', min: 0, nullable: true, default: null },
  decay_step_size: { kind: 'int', min: 0, default: 0 },
  cycle_momentum: { kind: 'bool', default: true },
  cycle_min_mom: { kind: 'number', min: 0, max: 1, default: 0.8 },
  cycle_max_mom: { kind: 'number', min: 0, max: 1, default: 0.9 },
  decay_mom_rate: { kind: 'number', min: 0, default: 0 },
  last_batch_iteration: LAST_BATCH_ITERATION,
};

/** DeepSpeed's OneCycle sets the second beta to this while it cycles the first. */
const SECOND_BETA = 0.99;

/**
 * One triangular cycle of the lr between `cycle_min_lr` and `cycle_max_lr` (rising over
 * `cycle_first_step_size` steps, falling over `cycle_second_step_size`), then an optional decay.
 * With `cycle_momentum` the first beta of Adam-style optimizers cycles inversely between
 * `cycle_max_mom` and `cycle_min_mom`; as DeepSpeed, the second beta is then set to 0.99.
 * Optimizers without betas (SGD) get no momentum cycling and a warning, as in DeepSpeed.
 * At construction the lr is `cycle_min_lr` (and beta1 `cycle_min_mom`).
 * @example
 * const sched = new OneCycle(opt, { cycle_min_lr: 1e-4, cycle_max_lr: 1e-3, cycle_first_step_size: 1000 });
 */
export class OneCycle extends LRScheduler {
  readonly minLr: number;
  readonly maxLr: number;
  readonly totalSize: number;
  readonly stepRatio: number;
  readonly decayStepSize: number;
  readonly decayLrRate: number;
  readonly cycleMomentum: boolean;
  readonly minMom: number;
  readonly maxMom: number;
  readonly decayMomRate: number;
  private readonly skipLrDecay: boolean;
  private readonly skipMomDecay: boolean;

  constructor(optimizer: SchedulableOptimizer, params: OneCycleParams) {
    const p = parseParams(params, SPECS, 'OneCycle', optimizer?.paramGroups?.length ?? 0);
    super(optimizer, p.last_batch_iteration as number);
    const first = p.cycle_first_step_size as number;
    const second = (p.cycle_second_step_size as number | null) ?? first;
    this.totalSize = first + second;
    this.stepRatio = first / this.totalSize;
    this.minLr = p.cycle_min_lr as number;
    this.maxLr = p.cycle_max_lr as number;
    this.decayStepSize = p.decay_step_size as number;
    this.decayLrRate = p.decay_lr_rate as number;
    this.minMom = p.cycle_min_mom as number;
    this.maxMom = p.cycle_max_mom as number;
    this.decayMomRate = p.decay_mom_rate as number;
    this.skipLrDecay = this.decayStepSize === 0 || this.decayLrRate === 0;
    this.skipMomDecay = this.decayStepSize === 0 || this.decayMomRate === 0;
    for (const key of ['cycle_first_stair_count', 'cycle_second_stair_count'] as const) {
      if (((p[key] as number | null) ?? 0) > 0) {
        process.emitWarning(`OneCycle: ${key} has no effect: the cycle is continuous (as in DeepSpeed, which ignores it too)`);
      }
    }
    let cycleMomentum = p.cycle_momentum as boolean;
    if (cycleMomentum && !optimizer.paramGroups.every((g) => Array.isArray(g.betas))) {
      process.emitWarning('OneCycle: cycle_momentum is disabled because the optimizer has no betas (as in DeepSpeed)');
      cycleMomentum = false;
    }
    this.cycleMomentum = cycleMomentum;
    if (this.lastBatchIteration === -1) {
      this.applyLr(optimizer.paramGroups.map(() => this.minLr));
      if (cycleMomentum) this.applyMom(this.minMom);
    }
  }

  /** Position in the cycle: rises 0 → 1 over the first part, falls 1 → 0 over the second. */
  private scaleFactor(): number {
    const b = this.lastBatchIteration + 1;
    const cycle = Math.floor(1 + b / this.totalSize);
    const x = 1 + b / this.totalSize - cycle;
    return x <= this.stepRatio ? x / this.stepRatio : (x - 1) / (this.stepRatio - 1);
  }

  getLr(): number[] {
    let lr: number;
    if (this.lastBatchIteration < this.totalSize) {
      lr = this.minLr + (this.maxLr - this.minLr) * this.scaleFactor();
    } else if (this.skipLrDecay) {
      lr = this.minLr;
    } else {
      const interval = (this.lastBatchIteration - this.totalSize + 1) / this.decayStepSize;
      lr = this.minLr / (1 + this.decayLrRate * interval);
    }
    return this.optimizer.paramGroups.map(() => lr);
  }

  /** The first beta at lastBatchIteration, or null without momentum cycling. */
  getMom(): number | null {
    if (!this.cycleMomentum) return null;
    if (this.lastBatchIteration < this.totalSize) return this.maxMom - (this.maxMom - this.minMom) * this.scaleFactor();
    if (this.skipMomDecay) return this.maxMom;
    const interval = (this.lastBatchIteration - this.totalSize + 1) / this.decayStepSize;
    return this.maxMom * (1 + this.decayMomRate * interval);
  }

  protected override advanceTo(next: number): void {
    super.advanceTo(next);
    const mom = this.getMom();
    if (mom !== null) this.applyMom(mom);
  }

  private applyMom(beta1: number): void {
    for (const g of this.optimizer.paramGroups) g.betas = [beta1, SECOND_BETA];
  }
}
