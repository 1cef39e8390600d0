/**
 * Activation checkpointing: run a segment without saving its activations, and recompute it
 * (replaying the generator, so dropout masks match) when its gradient is needed.
 */
import { getRngState, type RngState, setRngState } from '../tensor/random.ts';
import { tidy } from '../tensor/scope.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import { withTag } from '../tensor/tag_context.ts';
import { Tensor } from '../tensor/tensor.ts';
import { backward } from './engine.ts';
import { enableGrad, isGradEnabled, noGrad } from './grad_mode.ts';
import { trackLeaves } from './leaf_tracker.ts';
import { Node } from './node.ts';

type Segment = (...inputs: Tensor[]) => Tensor;

/**
 * Runs `fn(...inputs)` keeping only the inputs for backward; backward re-runs fn with grad
 * enabled and backpropagates through the recomputed graph. Gradients reach the inputs and
 * any parameters fn uses by closure. With grad enabled the result always requires grad,
 * since fn's closure parameters cannot be seen before the recomputation.
 * The parameters fn reads are noted during the first run, so their gradient-ready hooks fire
 * only after every use (inside and outside the segment) has delivered its gradient.
 * @example
 * for (const block of blocks) x = checkpoint((h) => block.forward(h), x);
 */
export function checkpoint(fn: Segment, ...inputs: Tensor[]): Tensor {
  if (typeof fn !== 'function') throw new Error(`checkpoint: fn must be a function, got ${typeof fn}`);
  inputs.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new Error(`checkpoint: input ${i} must be a Tensor, got ${t === null ? 'null' : typeof t}`);
  });
  if (!isGradEnabled()) return checkOutput(fn(...inputs));
  const rng = getRngState();
  // tidy: the segment's intermediates are freed as soon as it returns.
  const { result, leaves } = trackLeaves(() => tidy(() => noGrad(() => fn(...inputs))));
  let out = checkOutput(result);
  // fn returned an existing tensor (an input, a captured parameter): hang the node on a new handle.
  if (out.requiresGrad || out.kept || out.gradFn || inputs.includes(out)) out = out.alias();
  const node = new Node('checkpoint', inputs);
  for (const t of inputs) leaves.delete(t);
  node.hiddenLeaves = [...leaves];
  const saved = inputs.map((t) => node.save(t));
  const wants = inputs.map((t) => t.requiresGrad);
  node.backwardFn = (g) => recompute(fn, saved, wants, rng, g);
  node.retain();
  out.gradFn = node;
  out.requiresGrad = true;
  return out;
}

function checkOutput(out: unknown): Tensor {
  if (!(out instanceof Tensor)) throw new Error(`checkpoint: fn must return one Tensor, got ${out === null ? 'null' : typeof out}`);
  return out;
}

/** Re-runs the segment on detached copies of its inputs and backpropagates `g` through it. */
function recompute(fn: Segment, saved: Tensor[], wants: boolean[], rng: RngState, g: Tensor): (Tensor | null)[] {
  const leaves = saved.map((t, i) => {
    const d = t.detach();
    d.requiresGrad = wants[i];
    return d;
  });
  const resume = getRngState();
  setRngState(rng);
  let out: Tensor;
  try {
    // The engine runs backward functions under noGrad with the 'grad' tag; the recomputed
    // activations are activations.
    out = checkOutput(enableGrad(() => withTag('activation', () => fn(...leaves))));
  } finally {
    setRngState(resume);
  }
  if (!sameShape(out.shape, g.shape)) {
    throw new Error(`checkpoint: the recomputed output has shape ${fmt(out.shape)}, the first run gave ${fmt(g.shape)} (is fn deterministic?)`);
  }
  // Accumulates into the inputs' stand-ins and into parameters captured by fn.
  if (out.requiresGrad) backward(out, g, { nested: true });
  return leaves.map((d) => {
    const grad = d.grad;
    d.grad = null;
    if (grad) grad.kept = false;
    return grad;
  });
}
