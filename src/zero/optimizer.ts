/**
 * The optimizer ZeRO runs on a rank's partition: torch.optim's Adam, AdamW and SGD (momentum,
 * dampening, Nesterov) hyperparameters with their defaults, and one fused native kernel call over
 * the partition's flat (master) parameters, gradient and state.
 */
import { adamMulti } from '../optim/adam_multi.ts';
import { checkBool, checkKeys, checkRange } from '../optim/checks.ts';
import { type AdamScalars, adamStep, type FlatRef, type SgdScalars, type StateRef, sgdStep } from '../optim/fused.ts';
import type { ScalarSlots } from '../optim/graph_step.ts';
import type { Run, RunState } from '../optim/optimizer.ts';
import { sgdMulti } from '../optim/sgd_multi.ts';

/** The optimizer run on each partition, with torch.optim's hyperparameters and defaults. */
export type ZeroOptimizerSpec =
  | { type: 'Adam' | 'AdamW'; lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number }
  | { type: 'SGD'; lr?: number; momentum?: number; dampening?: number; weightDecay?: number; nesterov?: boolean };

/** A spec with every hyperparameter filled in. */
export type ResolvedSpec = Required<ZeroOptimizerSpec>;

/** The f32 state buffers, one partition long each, that the optimizer keeps. */
export function stateNames(h: ResolvedSpec): string[] {
  if (h.type === 'SGD') return h.momentum !== 0 ? ['momentumBuffer'] : [];
  return ['expAvg', 'expAvgSq'];
}

/** A partition's flat ranges: parameters (16-bit ones with an fp32 master), gradient, state. */
export interface PartitionRefs {
  param: FlatRef;
  grad: FlatRef;
  state: (name: string) => StateRef;
  master: StateRef;
  n: number;
}

/** One optimizer step (`step` from 1) over a partition; `gradScale` multiplies the gradient in f32 (OptimizerStepOptions). */
export function partitionStep(h: ResolvedSpec, r: PartitionRefs, step: number, gradScale = 1): void {
  if (h.type === 'SGD') {
    sgdStep(r.param, r.grad, 'f32', r.state('momentumBuffer'), r.master, r.n, sgdScalars(h, gradScale), step === 1);
    return;
  }
  adamStep(r.param, r.grad, 'f32', r.state('expAvg'), r.state('expAvgSq'), r.master, r.n, adamScalars(h, gradScale), step);
}

/**
 * partitionStep through the many-tensor launch (cuda.adamMulti / sgdMulti, one entry) taking its
 * scalars from the next of `slots` (a device-decided step: graph_step.ts launchDecided); the
 * same element update, so the same bits as partitionStep with the decision's gradScale.
 */
export function partitionStepSlotted(h: ResolvedSpec, r: PartitionRefs, step: number, slots: ScalarSlots): void {
  const run: Run & RunState = {
    param: r.param, grad: r.grad, master: r.master, n: r.n, step, stateOffset: 0, dtype: 'f32',
    fresh: () => step === 1, // partitionStep's firstStep: SGD's momentum buffer starts as the gradient
    ref: r.state,
  };
  if (h.type === 'SGD') sgdMulti([{ run, state: run }], sgdScalars(h, 1), slots);
  else adamMulti([{ run, state: run }], adamScalars(h, 1), slots);
}

function sgdScalars(h: ResolvedSpec & { type: 'SGD' }, gradScale: number): SgdScalars {
  return { lr: h.lr, momentum: h.momentum, dampening: h.dampening, weightDecay: h.weightDecay, nesterov: h.nesterov, maximize: false, gradScale };
}

function adamScalars(h: ResolvedSpec & { type: 'Adam' | 'AdamW' }, gradScale: number): AdamScalars {
  return { lr: h.lr, beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay: h.weightDecay, decoupled: h.type === 'AdamW', maximize: false, gradScale };
}

/** The spec with torch.optim's defaults filled in, checked. */
export function resolveSpec(spec: ZeroOptimizerSpec): ResolvedSpec {
  const where = `ZeRO optimizer ${spec?.type}`;
  if (spec?.type === 'SGD') {
    checkKeys(spec, ['type', 'lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'], where);
    const h = { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...spec };
    checkRange(h.lr, 'lr', where, 0);
    checkRange(h.momentum, 'momentum', where, 0);
    checkRange(h.weightDecay, 'weightDecay', where, 0);
    checkBool(h.nesterov, 'nesterov', where);
    return h;
  }
  if (spec?.type === 'Adam' || spec?.type === 'AdamW') {
    checkKeys(spec, ['type', 'lr', 'betas', 'eps', 'weightDecay'], where);
    const h = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: spec.type === 'AdamW' ? 1e-2 : 0, ...spec };
    checkRange(h.lr, 'lr', where, 0);
    checkRange(h.betas[0], 'betas[0]', where, 0, 1, true);
    checkRange(h.betas[1], 'betas[1]', where, 0, 1, true);
    checkRange(h.eps, 'eps', where, 0);
    checkRange(h.weightDecay, 'weightDecay', where, 0);
    return h;
  }
  throw new Error(`ZeRO: optimizer type must be 'Adam', 'AdamW' or 'SGD', got ${JSON.stringify(spec?.type)}`);
}
