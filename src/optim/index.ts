/** Fused optimizers over flat buffers, gradient clipping and DeepSpeed's LR schedules. */

export { Adam, type AdamOptions, AdamW } from './adam.ts';
export { type ClipGradNormOptions, clipGradNorm } from './clip_grad.ts';
export { clipGradNormOnDevice } from './clip_grad_on_device.ts';
export type { StateDType } from './group_state.ts';
export * from './lr_schedules/index.ts';
export { Optimizer, type ParamGroup, type ParamsInput, type Run, type RunState } from './optimizer.ts';
export { SGD, type SGDOptions } from './sgd.ts';
export type { OptimizerStateDict, ParamState, StateValue } from './state_dict.ts';
