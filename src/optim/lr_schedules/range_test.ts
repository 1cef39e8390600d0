/** LRRangeTest with DeepSpeed's semantics (deepspeed/runtime/lr_schedules.py). */
import { LAST_BATCH_ITERATION, LRScheduler, type ParamSpec, parseParams, perGroup, type SchedulableOptimizer } from './base.ts';

/** DeepSpeed's LRRangeTest params (snake_case, as in a DeepSpeed JSON config). */
export interface LRRangeTestParams {
  /** Starting lr, or one per group (default 0.001). */
  lr_range_test_min_lr?: number | number[];
  /** Steps per interval (default 2000). */
  lr_range_test_step_size?: number;
  /** lr growth per interval, as a multiple of the starting lr (default 1). */
  lr_range_test_step_rate?: number;
  /** Grow in whole intervals rather than continuously (default false). */
  lr_range_test_staircase?: boolean;
  last_batch_iteration?: number;
}

const SPECS: Record<string, ParamSpec> = {
  lr_range_test_min_lr: { kind: 'number', min: 0, perGroup: true, default: 0.001 },
  lr_range_test_step_size: { kind: 'int', min: 1, default: 2000 },
  lr_range_test_step_rate: { kind: 'number', min: 0, default: 1 },
  lr_range_test_staircase: { kind: 'bool', default: false },
  last_batch_iteration: LAST_BATCH_ITERATION,
};

/**
 * The learning-rate range test: lr = min_lr * (1 + step_rate * i), where i = (t + 1) / step_size
 * (floored with `lr_range_test_staircase`), to find the largest lr that still trains.
 * @example
 * const sched = new LRRangeTest(opt, { lr_range_test_min_lr: 1e-5, lr_range_test_step_size: 100 });
 */
export class LRRangeTest extends LRScheduler {
  readonly minLrs: number[];
  readonly stepSize: number;
  readonly stepRate: number;
  readonly staircase: boolean;

  constructor(optimizer: SchedulableOptimizer, params: LRRangeTestParams = {}) {
    const groups = optimizer?.paramGroups?.length ?? 0;
    const p = parseParams(params, SPECS, 'LRRangeTest', groups);
    super(optimizer, p.last_batch_iteration as number);
    this.minLrs = perGroup(p.lr_range_test_min_lr as number | number[], groups);
    this.stepSize = p.lr_range_test_step_size as number;
    this.stepRate = p.lr_range_test_step_rate as number;
    this.staircase = p.lr_range_test_staircase as boolean;
    if (this.lastBatchIteration === -1) this.applyLr([...this.minLrs]);
  }

  getLr(): number[] {
    const raw = (this.lastBatchIteration + 1) / this.stepSize;
    const increase = 1 + this.stepRate * (this.staircase ? Math.floor(raw) : raw);
    return this.minLrs.map((lr) => lr * increase);
  }
}
