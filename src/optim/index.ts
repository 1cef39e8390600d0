/** Fused optimizers over flat buffers, gradient clipping and DeepSpeed's LR schedules. */
export { Optimizer, type ParamGroup, type ParamsInput, type Run, type RunState } from './optimizer.ts';
export type { OptimizerStateDict, ParamState, StateValue } from './state_dict.ts';
export type { StateDType } from './group_state.ts';
export { SGD, type SGDOptions } from './sgd.ts';
export { Adam, AdamW, type AdamOptions } from './adam.ts';
export { clipGradNorm, type ClipGradNormOptions } from './clip_grad.ts';
export * from './lr_schedules/index.ts';
