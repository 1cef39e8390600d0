/** WarmupLR and WarmupDecayLR with DeepSpeed's semantics (deepspeed/runtime/lr_schedules.py). */
import { LAST_BATCH_ITERATION, LRScheduler, type ParamSpec, parseParams, perGroup, type SchedulableOptimizer } from './base.ts';

export type WarmupType = 'log' | 'linear';

/** DeepSpeed's WarmupLR params (snake_case, as in a DeepSpeed JSON config). */
export interface WarmupLRParams {
  /** Starting lr, or one per group (default 0). */
  warmup_min_lr?: number | number[];
  /** lr after warmup, or one per group (default 0.001). */
  warmup_max_lr?: number | number[];
  /** Warmup length in steps (default 1000; at least 2 are used). */
  warmup_num_steps?: number;
  /** 'log' (default) or 'linear' increase during warmup. */
  warmup_type?: WarmupType;
  /** Resume position (default -1: start, and set the groups' lr now). */
  last_batch_iteration?: number;
}

/** WarmupDecayLR adds the step where the linear decay reaches 0. */
export interface WarmupDecayLRParams extends WarmupLRParams {
  total_num_steps: number;
}

const WARMUP_SPECS: Record<string, ParamSpec> = {
  warmup_min_lr: { kind: 'number', min: 0, perGroup: true, default: 0 },
  warmup_max_lr: { kind: 'number', min: 0, perGroup: true, default: 0.001 },
  warmup_num_steps: { kind: 'int', min: 0, default: 1000 },
  warmup_type: { kind: 'enum', values: ['log', 'linear'], default: 'log' },
  last_batch_iteration: LAST_BATCH_ITERATION,
};
const DECAY_SPECS: Record<string, ParamSpec> = { total_num_steps: { kind: 'int', min: 1, required: true }, ...WARMUP_SPECS };

/**
 * Raises each group's lr from `warmup_min_lr` to `warmup_max_lr` over `warmup_num_steps`
 * steps, then holds it. At batch t (= lastBatchIteration) during warmup the fraction is
 * `log(t + 1) / log(warmup_num_steps)` ('log') or `t / warmup_num_steps` ('linear'). Before the
 * first `step()` the lr is `warmup_min_lr`. Unknown keys and values out of range throw (DeepSpeed
 * falls back to 'log' for an unknown warmup_type; this rejects it).
 * @example
 * const sched = new WarmupLR(opt, { warmup_min_lr: 0, warmup_max_lr: 1e-3, warmup_num_steps: 100, warmup_type: 'linear' });
 * for (const batch of loader) { train(batch); opt.step(); sched.step(); }
 */
export class WarmupLR extends LRScheduler {
  readonly minLrs: number[];
  readonly maxLrs: number[];
  /** The warmup length in use: max(2, warmup_num_steps), as DeepSpeed. */
  readonly warmupNumSteps: number;
  readonly warmupType: WarmupType;

  constructor(optimizer: SchedulableOptimizer, params: WarmupLRParams = {}) {
    const decay = new.target === WarmupDecayLR;
    const groups = optimizer?.paramGroups?.length ?? 0;
    const p = parseParams(params, decay ? DECAY_SPECS : WARMUP_SPECS, new.target.name, groups);
    const total = p.total_num_steps as number;
    if (decay && total < Math.max(2, p.warmup_num_steps as number)) {
      throw new Error(
        `WarmupDecayLR: total_num_steps (${total}) is less than warmup_num_steps (${Math.max(2, p.warmup_num_steps as number)}; at least 2 are used)`,
      );
    }
    super(optimizer, p.last_batch_iteration as number);
    this.minLrs = perGroup(p.warmup_min_lr as number | number[], groups);
    this.maxLrs = perGroup(p.warmup_max_lr as number | number[], groups);
    this.warmupNumSteps = Math.max(2, p.warmup_num_steps as number);
    this.warmupType = p.warmup_type as WarmupType;
    if (this.lastBatchIteration === -1) this.applyLr(this.getLr());
  }

  getLr(): number[] {
    if (this.lastBatchIteration < 0) return [...this.minLrs];
    const gamma = this.gamma();
    return this.minLrs.map((lo, i) => lo + (this.maxLrs[i] - lo) * gamma);
  }

  /** The warmup fraction at lastBatchIteration, 1 after warmup. */
  protected gamma(): number {
    const t = this.lastBatchIteration;
    if (t < this.warmupNumSteps) {
      return this.warmupType === 'log' ? Math.log(t + 1) / Math.log(this.warmupNumSteps) : t / this.warmupNumSteps;
    }
    return 1;
  }
}

/**
 * WarmupLR's warmup, then a linear decay to 0 at `total_num_steps`: after warmup the fraction is
 * `max(0, (total_num_steps - t) / max(1, total_num_steps - warmup_num_steps))`.
 * @example
 * const sched = new WarmupDecayLR(opt, { total_num_steps: 10000, warmup_max_lr: 3e-4, warmup_num_steps: 500 });
 */
export class WarmupDecayLR extends WarmupLR {
  readonly totalNumSteps: number;

  constructor(optimizer: SchedulableOptimizer, params: WarmupDecayLRParams) {
    super(optimizer, params); // checks params against DECAY_SPECS
    this.totalNumSteps = params.total_num_steps;
  }

  protected override gamma(): number {
    const t = this.lastBatchIteration;
    if (t < this.warmupNumSteps) return super.gamma();
    return Math.max(0, (this.totalNumSteps - t) / Math.max(1, this.totalNumSteps - this.warmupNumSteps));
  }
}
