/**
 * The LR scheduler base (DeepSpeed's protocol: `step()` after each optimizer step sets every
 * group's lr for the next batch) and the checking of a schedule's `params` object.
 */
import { graphCaptureDevice, onEachReplay } from '../../tensor/capture_state.ts';
import { checkKeys } from '../checks.ts';

/** What a schedule drives: the optimizer's groups (`lr`, and `betas` for OneCycle's momentum). */
export interface SchedulableOptimizer {
  paramGroups: { lr: number; betas?: [number, number] }[];
}

/** A scheduler's saved state (plain data). */
export interface LRSchedulerState {
  lastBatchIteration: number;
  [extra: string]: unknown;
}

export abstract class LRScheduler {
  /** The index of the last batch (-1 before the first `step()`), as DeepSpeed's last_batch_iteration. */
  lastBatchIteration: number;
  private lastLr: number[];

  protected constructor(
    readonly optimizer: SchedulableOptimizer,
    lastBatchIteration: number,
  ) {
    if (!optimizer || !Array.isArray(optimizer.paramGroups) || optimizer.paramGroups.length === 0) {
      throw new Error(`${new.target.name}: expected an optimizer with paramGroups`);
    }
    this.lastBatchIteration = lastBatchIteration;
    this.lastLr = optimizer.paramGroups.map((g) => g.lr);
  }

  /** The learning rate of each group at `lastBatchIteration`. */
  abstract getLr(): number[];

  /**
   * Advances to `batchIteration` (default: the next one) and sets each group's lr. Inside
   * captureCudaGraph it advances nothing then and instead runs at each replay, after the work of
   * what was captured before it (a captured `opt.step()` uses the lr it had, as eagerly): the host
   * code of a captured function runs once, at the capture, so the schedule would otherwise stop.
   */
  step(batchIteration?: number): void {
    if (graphCaptureDevice() !== null) {
      if (batchIteration !== undefined) {
        throw new Error(`${this.constructor.name}.step(${batchIteration}) inside captureCudaGraph: each replay advances to the next batch; pass no batchIteration`);
      }
      onEachReplay(() => () => this.step());
      return;
    }
    const next = batchIteration ?? this.lastBatchIteration + 1;
    if (!Number.isInteger(next) || next < -1) throw new Error(`${this.constructor.name}.step: batchIteration must be an integer >= -1, got ${next}`);
    this.advanceTo(next);
  }

  /** Moves to batch `next` and sets what the schedule drives (subclasses add to it). */
  protected advanceTo(next: number): void {
    this.lastBatchIteration = next;
    this.applyLr(this.getLr());
  }

  /** The learning rates last set on the groups. */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  /**
   * A function that puts the schedule back where it is now, the groups' lr and betas included
   * (the engine steps the schedule before it knows whether a device-decided step was skipped).
   */
  snapshot(): () => void {
    const at = this.lastBatchIteration;
    const last = [...this.lastLr];
    const groups = this.optimizer.paramGroups.map((g) => ({ lr: g.lr, betas: g.betas ? ([...g.betas] as [number, number]) : undefined }));
    return () => {
      this.lastBatchIteration = at;
      this.lastLr = [...last];
      this.optimizer.paramGroups.forEach((g, i) => {
        g.lr = groups[i].lr;
        const b = groups[i].betas;
        if (b) g.betas = [...b];
      });
    };
  }

  stateDict(): LRSchedulerState {
    return { lastBatchIteration: this.lastBatchIteration };
  }

  /** Restores the position (as DeepSpeed, the groups' lr comes back with the optimizer's state). */
  loadStateDict(sd: LRSchedulerState): void {
    if (!sd || !Number.isInteger(sd.lastBatchIteration) || sd.lastBatchIteration < -1) {
      throw new Error(`${this.constructor.name}.loadStateDict: lastBatchIteration must be an integer >= -1, got ${sd?.lastBatchIteration}`);
    }
    this.lastBatchIteration = sd.lastBatchIteration;
  }

  protected applyLr(lrs: number[]): void {
    this.optimizer.paramGroups.forEach((g, i) => {
      g.lr = lrs[i];
    });
    this.lastLr = [...lrs];
  }
}

/** How one key of a schedule's `params` is checked. */
export type ParamSpec =
  | { kind: 'number'; min?: number; max?: number; perGroup?: boolean; required?: boolean; default?: number }
  | { kind: 'int'; min: number; required?: boolean; nullable?: boolean; default?: number | null }
  | { kind: 'bool'; default: boolean }
  | { kind: 'enum'; values: readonly string[]; default: string };

type Parsed = Record<string, number | number[] | boolean | string | null>;

/**
 * Checks `params` against `specs` (unknown keys, types, finiteness, ranges) and fills defaults.
 * Per-group numbers may be lists with one value per optimizer group.
 */
export function parseParams(params: unknown, specs: Record<string, ParamSpec>, where: string, groups: number): Parsed {
  if (params === undefined) params = {};
  if (params === null || typeof params !== 'object' || Array.isArray(params)) throw new Error(`${where}: params must be an object`);
  checkKeys(params, Object.keys(specs), `${where} params`);
  const given = params as Record<string, unknown>;
  const out: Parsed = {};
  for (const [key, spec] of Object.entries(specs)) {
    const v = given[key];
    const at = `${where}: ${key}`;
    if (v === undefined) {
      if ('required' in spec && spec.required) throw new Error(`${at} is required`);
      out[key] = spec.default ?? null;
      continue;
    }
    switch (spec.kind) {
      case 'number': {
        const one = (x: unknown) => checkNumber(x, at, spec.min, spec.max);
        if (Array.isArray(v) && spec.perGroup) {
          if (v.length !== groups) throw new Error(`${at} has ${v.length} values; the optimizer has ${groups} param groups`);
          out[key] = v.map(one);
        } else out[key] = one(v);
        break;
      }
      case 'int':
        if (v === null && spec.nullable) out[key] = null;
        else if (typeof v !== 'number' || !Number.isInteger(v) || v < spec.min) throw new Error(`${at} must be an integer >= ${spec.min}, got ${fmtValue(v)}`);
        else out[key] = v;
        break;
      case 'bool':
        if (typeof v !== 'boolean') throw new Error(`${at} must be true or false, got ${fmtValue(v)}`);
        out[key] = v;
        break;
      case 'enum':
        if (typeof v !== 'string' || !spec.values.includes(v)) throw new Error(`${at} must be one of ${spec.values.map((s) => `"${s}"`).join(', ')}, got ${fmtValue(v)}`);
        out[key] = v;
        break;
    }
  }
  return out;
}

function checkNumber(v: unknown, at: string, min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${at} must be a finite number, got ${fmtValue(v)}`);
  if (v < min || v > max) {
    const range = max === Number.POSITIVE_INFINITY ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new Error(`${at} must be ${range}, got ${v}`);
  }
  return v;
}

function fmtValue(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** One value per group from a number or a per-group list. */
export function perGroup(v: number | number[], groups: number): number[] {
  return Array.isArray(v) ? [...v] : new Array<number>(groups).fill(v);
}

export const LAST_BATCH_ITERATION: ParamSpec = { kind: 'int', min: -1, default: -1 };
