/** WarmupCosineLR with DeepSpeed's semantics (deepspeed/runtime/lr_schedules.py). */
import { LAST_BATCH_ITERATION, LRScheduler, type LRSchedulerState, type ParamSpec, parseParams, type SchedulableOptimizer } from './base.ts';
import type { WarmupType } from './warmup.ts';

/** DeepSpeed's WarmupCosineLR params (snake_case, as in a DeepSpeed JSON config). */
export interface WarmupCosineLRParams {
  /** The step where the cosine reaches `cos_min_ratio`. */
  total_num_steps: number;
  /** Starting ratio of the optimizer's lr (default 0). */
  warmup_min_ratio?: number;
  /** Warmup length in steps (default 1000; at least 2 are used). */
  warmup_num_steps?: number;
  /** Final ratio of the optimizer's lr (default 0.0001). */
  cos_min_ratio?: number;
  /** 'log' (default) or 'linear' increase during warmup. */
  warmup_type?: WarmupType;
  last_batch_iteration?: number;
}

const SPECS: Record<string, ParamSpec> = {
  total_num_steps: { kind: 'int', min: 1, required: true },
  warmup_min_ratio: { kind: 'number', min: 0, max: 1, default: 0 },
  warmup_num_steps: { kind: 'int', min: 0, default: 1000 },
  cos_min_ratio: { kind: 'number', min: 0, max: 1, default: 0.0001 },
  warmup_type: { kind: 'enum', values: ['log', 'linear'], default: 'log' },
  last_batch_iteration: LAST_BATCH_ITERATION,
};

/**
 * Scales each group's lr as given to the optimizer (read at construction) by a ratio: during
 * warmup `warmup_min_ratio + f * (1 - warmup_min_ratio)` with f as WarmupLR's; then
 * `max(0, cos_min_ratio + (1 - cos_min_ratio) * (1 + cos(π (t - w + 1) / (T - w))) / 2)` with
 * w the warmup length and T total_num_steps. As DeepSpeed, the lr is 0 before the first `step()`
 * (so the first optimizer step runs with lr 0), and past T the cosine rises again.
 * @example
 * const opt = new AdamW(params, { lr: 6e-4 });
 * const sched = new WarmupCosineLR(opt, { total_num_steps: 5000, warmup_num_steps: 200, warmup_type: 'linear' });
 */
export class WarmupCosineLR extends LRScheduler {
  /** The lr of each group when the schedule was made: the ratio's reference. */
  baseLrs: number[];
  readonly totalNumSteps: number;
  readonly warmupMinRatio: number;
  readonly warmupNumSteps: number;
  readonly cosMinRatio: number;
  readonly warmupType: WarmupType;

  constructor(optimizer: SchedulableOptimizer, params: WarmupCosineLRParams) {
    const p = parseParams(params, SPECS, 'WarmupCosineLR', optimizer?.paramGroups?.length ?? 0);
    super(optimizer, p.last_batch_iteration as number);
    this.totalNumSteps = p.total_num_steps as number;
    this.warmupMinRatio = p.warmup_min_ratio as number;
    this.warmupNumSteps = Math.max(2, p.warmup_num_steps as number);
    this.cosMinRatio = p.cos_min_ratio as number;
    this.warmupType = p.warmup_type as WarmupType;
    if (this.totalNumSteps <= this.warmupNumSteps) {
      throw new Error(
        `WarmupCosineLR: total_num_steps (${this.totalNumSteps}) must exceed warmup_num_steps (${this.warmupNumSteps}; at least 2 are used)`,
      );
    }
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
    if (this.lastBatchIteration === -1) this.applyLr(this.getLr());
  }

  /** The ratio of the base lr at lastBatchIteration. */
  getLrRatio(): number {
    const t = this.lastBatchIteration;
    if (t < 0) return 0;
    const w = this.warmupNumSteps;
    if (t < w) {
      const f = this.warmupType === 'log' ? Math.log(t + 1) / Math.log(w) : t / w;
      return this.warmupMinRatio + f * (1 - this.warmupMinRatio);
    }
    const cosine = (1 + Math.cos((Math.PI * (t - w + 1)) / (this.totalNumSteps - w))) / 2;
    return Math.max(0, this.cosMinRatio + (1 - this.cosMinRatio) * cosine);
  }

  getLr(): number[] {
    const r = this.getLrRatio();
    return this.baseLrs.map((lr) => lr * r);
  }

  override stateDict(): LRSchedulerState {
    return { lastBatchIteration: this.lastBatchIteration, baseLrs: [...this.baseLrs] };
  }

  override loadStateDict(sd: LRSchedulerState): void {
    const base = sd?.baseLrs;
    if (base !== undefined) {
      if (!Array.isArray(base) || base.length !== this.baseLrs.length || !base.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        throw new Error(`WarmupCosineLR.loadStateDict: baseLrs must be ${this.baseLrs.length} finite numbers, got ${JSON.stringify(base)}`);
      }
    }
    super.loadStateDict(sd);
    if (base !== undefined) this.baseLrs = [...(base as number[])];
  }
}
