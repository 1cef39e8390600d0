/** Builds a schedule from a DeepSpeed config's "scheduler" section. */
import { checkKeys, suggestion } from '../checks.ts';
import type { LRScheduler, SchedulableOptimizer } from './base.ts';
import { OneCycle, type OneCycleParams } from './one_cycle.ts';
import { LRRangeTest } from './range_test.ts';
import { WarmupDecayLR, type WarmupDecayLRParams, WarmupLR } from './warmup.ts';
import { WarmupCosineLR, type WarmupCosineLRParams } from './warmup_cosine.ts';

/** A DeepSpeed config's "scheduler" section: `{ "type": "WarmupLR", "params": { ... } }`. */
export interface SchedulerConfig {
  type: string;
  params?: Record<string, unknown>;
}

const FACTORIES: Record<string, (opt: SchedulableOptimizer, params: Record<string, unknown>) => LRScheduler> = {
  WarmupLR: (o, p) => new WarmupLR(o, p),
  WarmupDecayLR: (o, p) => new WarmupDecayLR(o, p as unknown as WarmupDecayLRParams),
  WarmupCosineLR: (o, p) => new WarmupCosineLR(o, p as unknown as WarmupCosineLRParams),
  OneCycle: (o, p) => new OneCycle(o, p as unknown as OneCycleParams),
  LRRangeTest: (o, p) => new LRRangeTest(o, p),
};

/** The schedule types a config may name (DeepSpeed's). */
export const LR_SCHEDULE_TYPES: readonly string[] = Object.keys(FACTORIES);

/**
 * The schedule a DeepSpeed "scheduler" section describes. Unknown types and keys are rejected
 * with the closest valid name suggested; values must be finite and in range.
 * @example
 * const sched = createLrScheduler(opt, { type: 'WarmupDecayLR', params: { total_num_steps: 1000, warmup_max_lr: 1e-3 } });
 */
export function createLrScheduler(optimizer: SchedulableOptimizer, config: SchedulerConfig): LRScheduler {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new Error('scheduler: the section must be an object { type, params }');
  checkKeys(config, ['type', 'params'], 'scheduler');
  const { type } = config;
  if (typeof type !== 'string') throw new Error(`scheduler: "type" must be one of ${LR_SCHEDULE_TYPES.join(', ')}, got ${String(type)}`);
  const make = Object.hasOwn(FACTORIES, type) ? FACTORIES[type] : undefined;
  if (!make) throw new Error(`scheduler: unknown type "${type}"${suggestion(type, LR_SCHEDULE_TYPES)}`);
  return make(optimizer, (config.params ?? {}) as Record<string, unknown>);
}
