/**
 * Notes which gradient-requiring leaves the ops of a region read, even when nothing is
 * recorded. checkpoint() runs its segment under noGrad; the leaves it reads by closure (the
 * parameters) become hidden inputs of its node, so the engine counts them like ordinary edges
 * and a parameter's gradient-ready hooks fire only once every use has delivered its gradient.
 */
import type { Tensor } from '../tensor/tensor.ts';

let active: Set<Tensor> | null = null;

/** Called by every op with its inputs; cheap when no region is being tracked. */
export function noteInputs(inputs: readonly (Tensor | null | undefined)[]): void {
  if (active === null) return;
  for (const t of inputs) if (t?.requiresGrad && t.gradFn === null) active.add(t);
}

/** Runs fn and returns its result with the set of gradient-requiring leaves its ops read. */
export function trackLeaves<T>(fn: () => T): { result: T; leaves: Set<Tensor> } {
  const prev = active;
  const leaves = new Set<Tensor>();
  active = leaves;
  try {
    return { result: fn(), leaves };
  } finally {
    active = prev;
    if (prev) for (const t of leaves) prev.add(t);
  }
}
