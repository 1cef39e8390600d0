/**
 * Activation gradients applied by the consumer. An activation node (GELU after linear's fused
 * product) can say its backward is only "times the activation's derivative at its saved input".
 * When the node consuming its output is the only one delivering a gradient to it in a pass, the
 * engine offers that consumer the saved input; a consumer whose product can apply the derivative
 * in its epilogue (cuBLASLt's DGELU) returns, for that input, the gradient of the activation's
 * input instead and calls `take()`. The engine then hands that gradient to the activation's own
 * input without running the activation's backward: one element-wise pass over the activation
 * (read the gradient and the input, write the result) fewer.
 */
import type { Tensor } from '../tensor/tensor.ts';

/** What an activation node's backward is (Node.activationGrad). */
export interface ActivationGrad {
  readonly kind: 'gelu';
  /** The activation's input as the node saved it. */
  readonly input: Tensor;
}

/** Offered to a consumer for one input (its producer's ActivationGrad). */
export interface ActivationOffer extends ActivationGrad {
  /** The consumer returns the gradient of the activation's input for this input. */
  take(): void;
}

let enabled = true;
let applied = 0;

/**
 * Turns these offers on (the default) or off; off, every activation runs its own backward (the
 * reference path of the tests). Returns the previous setting.
 * @example
 * const prev = setActivationGradOffers(false);
 * try { loss.backward(); } finally { setActivationGradOffers(prev); }
 */
export function setActivationGradOffers(on: boolean): boolean {
  if (typeof on !== 'boolean') throw new Error(`setActivationGradOffers: expected a boolean, got ${typeof on}`);
  const prev = enabled;
  enabled = on;
  return prev;
}

export function activationGradOffersEnabled(): boolean {
  return enabled;
}

/** Activation backwards a consumer applied (an offer taken) so far in this process (tests, benchmarks). */
export function activationGradsApplied(): number {
  return applied;
}

/** The engine counts each offer taken. */
export function countActivationGradApplied(): void {
  applied++;
}
