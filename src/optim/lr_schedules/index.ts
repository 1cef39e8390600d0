/** Learning-rate schedules with DeepSpeed's names, config keys and formulas. */
export { LRScheduler, type LRSchedulerState, type SchedulableOptimizer } from './base.ts';
export { createLrScheduler, LR_SCHEDULE_TYPES, type SchedulerConfig } from './create.ts';
export { OneCycle, type OneCycleParams } from './one_cycle.ts';
export { LRRangeTest, type LRRangeTestParams } from './range_test.ts';
export { WarmupDecayLR, type WarmupDecayLRParams, WarmupLR, type WarmupLRParams, type WarmupType } from './warmup.ts';
export { WarmupCosineLR, type WarmupCosineLRParams } from './warmup_cosine.ts';
