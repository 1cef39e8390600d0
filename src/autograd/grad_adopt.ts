/**
 * Adopting a leaf's first gradient: when a leaf has no live `.grad` (set-to-none zero-grad, ZeRO
 * 2/3 handing gradients to buckets, a plain `backward()`), the tensor a node returned becomes the
 * `.grad` itself instead of being copied into a new one, when nothing else can read or write it
 * (PyTorch steals a gradient only the engine holds). Saves, per such leaf and pass, one allocation
 * and one full copy (a device op on CUDA).
 */
import { itemSize } from '../tensor/dtype.ts';
import { contiguousStrides, isDense, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

let enabled = true;
let adopted = 0;

/**
 * Turns adoption on (the default) or off; off, a leaf's first gradient is always copied (the
 * reference path of the tests). Returns the previous setting.
 * @example
 * const prev = setGradAdopt(false);
 * try { loss.backward(); } finally { setGradAdopt(prev); }
 */
export function setGradAdopt(on: boolean): boolean {
  if (typeof on !== 'boolean') throw new Error(`setGradAdopt: expected a boolean, got ${typeof on}`);
  const prev = enabled;
  enabled = on;
  return prev;
}

/** Gradients adopted as a leaf's `.grad` so far in this process (tests, benchmarks). */
export function gradsAdopted(): number {
  return adopted;
}

/**
 * True when `g` may become `leaf.grad` as it is. The engine has already ruled out what only it
 * can see (a gradient pending for another node, returned for another input too); here: `g` is the
 * only handle on its memory (no alias: not the seed's caller tensor, not saved, not held by a
 * deferred job), a plain result (not kept, no graph), the whole of its storage, tagged 'grad',
 * and has the leaf's dtype, device, shape and the layout a copy would get (`emptyLike(leaf)`).
 */
export function canAdopt(leaf: Tensor, g: Tensor): boolean {
  if (!enabled || g.disposed || g.kept || g.requiresGrad || g.gradFn !== null || g === leaf) return false;
  const s = g.storage;
  if (s.holders !== 1 || s.tag !== 'grad' || g.offset !== 0 || s.nbytes !== g.numel * itemSize(g.dtype)) return false;
  if (g.dtype !== leaf.dtype || g.device !== leaf.device || !sameShape(g.shape, leaf.shape)) return false;
  const strides = leaf.isContiguous || !isDense(leaf.shape, leaf.strides) ? contiguousStrides(leaf.shape) : leaf.strides;
  return g.strides.every((st, i) => st === strides[i]);
}

/** The engine counts each adoption. */
export function countAdopted(): void {
  adopted++;
}
