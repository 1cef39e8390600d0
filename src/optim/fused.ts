/**
 * Thin calls of the fused optimizer kernels (native/cpu/optim.cc). Each updates one flat range
 * of `n` elements: a parameter, a run of adjacent parameters of one flat storage, or a rank's
 * partition of flat buffers (ZeRO calls these with its own ids and offsets).
 */
import { native } from '../native.ts';
import { storageKernels } from '../tensor/backend.ts';
import { type DType, dtypeCode } from '../tensor/dtype.ts';

/** A flat range's start: element `off` of storage `id`, holding `dtype` values. */
export interface FlatRef {
  dtype: DType;
  id: number;
  off: number;
}

/** A state range (f32 or f64); `id` -1 means absent. */
export interface StateRef {
  id: number;
  off: number;
}

export const NONE: StateRef = { id: -1, off: 0 };

export interface SgdScalars {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  maximize: boolean;
  /**
   * Multiplies every gradient element, in the state dtype (f32/f64) as it is read, before anything
   * else (default 1). Mixed precision passes 1/lossScale × the clip factor here, so 16-bit
   * gradients are never unscaled in their own dtype (where tiny values would flush to zero).
   */
  gradScale?: number;
}

/**
 * SGD as torch.optim.SGD over `n` elements. `buf` is the momentum buffer (NONE when momentum is
 * 0); `firstStep` initializes it to the gradient; `master` is an fp32/f64 copy of a 16-bit param.
 */
export function sgdStep(
  param: FlatRef, grad: FlatRef, stateDtype: 'f32' | 'f64', buf: StateRef, master: StateRef, n: number,
  h: SgdScalars, firstStep: boolean,
): void {
  storageKernels(param.id).sgdStep(
    dtypeCode(param.dtype), param.id, param.off, dtypeCode(grad.dtype), grad.id, grad.off, dtypeCode(stateDtype),
    buf.id, buf.off, master.id, master.off, n, h.lr, h.momentum, h.dampening, h.weightDecay, h.nesterov, h.maximize, firstStep, gradScaleOf(h),
  );
}

export interface AdamScalars {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** AdamW (decay applied to the weight) rather than Adam (decay added to the gradient). */
  decoupled: boolean;
  maximize: boolean;
  /**
   * Multiplies every gradient element, in the state dtype (f32/f64) as it is read, before anything
   * else (default 1). Mixed precision passes 1/lossScale × the clip factor here, so 16-bit
   * gradients are never unscaled in their own dtype (where tiny values would flush to zero).
   */
  gradScale?: number;
}

/** Adam / AdamW as torch.optim over `n` elements; `step` (from 1) drives the bias corrections. */
export function adamStep(
  param: FlatRef, grad: FlatRef, stateDtype: 'f32' | 'f64', expAvg: StateRef, expAvgSq: StateRef, master: StateRef,
  n: number, h: AdamScalars, step: number,
): void {
  storageKernels(param.id).adamStep(
    dtypeCode(param.dtype), param.id, param.off, dtypeCode(grad.dtype), grad.id, grad.off, dtypeCode(stateDtype),
    expAvg.id, expAvg.off, expAvgSq.id, expAvgSq.off, master.id, master.off, n,
    h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, step, h.decoupled, h.maximize, gradScaleOf(h),
  );
}

/** A scalars' gradScale (1 when absent), checked: the kernels would spread a NaN into every parameter. */
export function gradScaleOf(h: { gradScale?: number }): number {
  const s = h.gradScale ?? 1;
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`optimizer step: gradScale must be a finite number, got ${String(s)}`);
  // An addon built before gradScale would silently ignore it (fp16 steps on scaled gradients).
  if (s !== 1 && native.optimGradScale !== true) {
    throw new Error('optimizer step: the native addon predates gradScale (fp16 unscaling in the optimizer); rebuild it (npm run build)');
  }
  return s;
}

/** sum |x|^p over a flat range (p = Infinity: max |x|), accumulated in double. */
export function normPow(x: FlatRef, n: number, p: number): number {
  return storageKernels(x.id).normPow(dtypeCode(x.dtype), x.id, x.off, n, p);
}

/**
 * `acc` (one f64 at element `acc.off` of storage `acc.id`, on `x`'s device) += sum |x|^p over a
 * flat range; p = Infinity: acc = max(acc, max |x|). NaN propagates. Nothing is read back: on a
 * GPU the host does not wait (read the accumulator once, after every range was added).
 */
export function normPowInto(x: FlatRef, n: number, p: number, acc: StateRef): void {
  storageKernels(acc.id).normPowInto(dtypeCode(x.dtype), x.id, x.off, n, p, acc.id, acc.off);
}
